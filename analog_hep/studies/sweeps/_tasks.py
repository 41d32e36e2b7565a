"""Plan a sweep: the unfinished points of a :class:`~analog_hep.studies.Sweep` become *tasks*.

Gradcheck points with the same static signature (chip structure and static config, method,
N, batch, start, random or given inputs) form one group, cut into chunks of at most
``max_group`` points in expansion order; each chunk is one vmapped, compiled call
(:func:`~analog_hep.studies.gradcheck_batch`). Training points, and gradcheck points of a
sweep with ``vectorise: false``, are one task each. Chunking depends only on the sweep and
the finished points, never on the executor, so serial and Dask runs compute the same calls.

Also here: what a task sends back (:class:`TaskResult`), and each point's chip and inputs,
cached per process (:func:`point_chip`, :func:`point_inputs`).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np

from ...emulator import Chip, ChipConfig, fabricate
from ...errors import SpecError
from ..gradients._gradcheck import random_batch
from ._sweep_spec import GradcheckPoint, Point, Sweep
from ._vectorised import with_noise_flags

__all__ = ["Task", "TaskResult", "plan_tasks", "point_chip", "point_inputs"]


@dataclass(frozen=True)
class Task:
    """Points computed together: a vectorised group (``vectorised``) or a single point."""

    id: int
    points: tuple[Point, ...]
    vectorised: bool
    size: int = 0
    """Vectorised tasks: the points of the compiled program (the chunks of a group are padded
    to one size, so that they share one compilation)."""
    parts: int = 1
    """Vectorised tasks: slices the program runs on (``size`` is a multiple), so that a
    process can run slices on several CPU cores at once."""
    runs_dir: str | None = None
    """Training points: the folder of their run records (``KEY.h5``, checkpointed every
    epoch), so that a killed sweep continues an unfinished run from its last epoch."""


@dataclass
class TaskResult:
    """What a task sends back: finished rows, training tables by point key, per-point
    errors ``(key, message)``, traces of the vectorised core in the worker, seconds."""

    task: int
    rows: list[dict[str, Any]] = field(default_factory=list)
    runs: dict[str, dict[str, dict[str, np.ndarray]]] = field(default_factory=dict)
    errors: list[tuple[str, str]] = field(default_factory=list)
    compiles: int = 0
    seconds: float = 0.0


# -- chips and data, cached per process ---------------------------------------------------------

_CHIPS: OrderedDict[str, Chip] = OrderedDict()
_CHIP_CACHE_SIZE = 16


def _chip_key(point: Point) -> str:
    spec = point.spec.model_copy(
        update={"neuron": point.spec.neuron.model_copy(update={"noise_std": 0.0})}
    )
    devices = {n: c.model_dump(mode="json") for n, c in point.devices}
    return json.dumps([spec.model_dump(mode="json"), devices], sort_keys=True)


def point_chip(point: Point) -> Chip:
    """The point's fabricated chip (cached per process by everything but the noise std, which
    is a leaf set here), with the static noise switches as the spec says."""
    key = _chip_key(point)
    chip = _CHIPS.get(key)
    if chip is None:
        chip, _ = fabricate(
            point.spec,
            dict(point.devices),
            point.spec.seed,
            fast_devices=point.circuit().fast_devices,
        )
        _CHIPS[key] = chip
        while len(_CHIPS) > _CHIP_CACHE_SIZE:
            _CHIPS.popitem(last=False)
    noise = float(point.spec.neuron.noise_std)
    chip = dataclasses.replace(chip, noise_std=jnp.asarray(noise, jnp.float32))
    return with_noise_flags(chip, neuron=noise > 0, read=point.spec.periphery.read_noise_std > 0)


@lru_cache(maxsize=4)
def _dataset(spec: str) -> Any:
    from ...data import load_dataset

    return load_dataset(spec)


def point_inputs(point: Point) -> tuple[np.ndarray, np.ndarray]:
    """``(x (B, n_0), one-hot y (B, classes))`` of a gradcheck point, as ``gradcheck`` uses
    them: the first batch of its dataset in the order of ``seed``, or random inputs drawn from
    ``PRNGKey(seed)``."""
    p = point.params
    assert isinstance(p, GradcheckPoint)
    spec = point.spec
    if p.dataset is None:
        k_data = jr.split(jr.PRNGKey(p.seed), 3)[0]
        x, y = random_batch(spec.layers[0], spec.readout.classes, p.batch, key=k_data)
        return np.asarray(x), np.asarray(y)
    ds = _dataset(p.dataset)
    if ds.n_features != spec.layers[0] or ds.n_classes != spec.readout.classes:
        raise SpecError(
            f"dataset {p.dataset!r} ({ds.n_features} features, {ds.n_classes} classes) does not "
            f"fit circuit {spec.name!r} ({spec.layers[0]} inputs, {spec.readout.classes} classes)"
        )
    x, y = next(ds.batches("train", p.batch, seed=p.seed, epoch=0))
    return np.asarray(x, np.float32), ds.one_hot(y)


# -- planning ---------------------------------------------------------------------------------


def _chip_signature(point: Point) -> tuple[Any, ...]:
    """What decides the structure and static settings of the point's chip, from its spec.

    The chip's static config (noise switches normalised to on) and, per crossbar, the
    static fields of :class:`~analog_hep.emulator.Crossbar` (``g_unit_S``, ``has_bias``,
    ``read_noise_rel``): chips of different cards with the same conductance range share a
    compiled call. A group that still holds chips of different structure is split again when
    it runs (:func:`_run_group`), so this needs only to be fine enough to be useful.
    """
    spec = point.spec
    cfg = dataclasses.replace(ChipConfig.from_spec(spec), neuron_noise=True, read_noise=True)
    xbars = []
    for name, card in point.devices:
        xb = spec.crossbar(name)
        assert xb.mapping is not None
        g = card.conductance
        g_unit = (g.g_max_S - g.g_min_S) / xb.mapping.w_max
        xbars.append((name, g_unit, bool(xb.bias), float(card.read_noise_rel)))
    return (cfg, tuple(xbars))


def _signature(point: Point) -> tuple[Any, ...]:
    """What a point shares with every member of its vectorised group."""
    p = point.params
    assert isinstance(p, GradcheckPoint)
    return (
        *_chip_signature(point),
        p.method,
        p.n_points,
        p.batch,
        p.start,
        p.dataset is None,
    )


def plan_tasks(sweep: Sweep, points: Sequence[Point]) -> list[Task]:
    """Cut ``points`` (a subset of ``sweep.points``) into tasks; see the module docstring."""
    if sweep.spec.kind == "train" or not sweep.spec.vectorise:
        return [Task(i, (p,), False) for i, p in enumerate(points)]
    groups: dict[tuple[Any, ...], list[Point]] = {}
    for p in points:
        groups.setdefault(_signature(p), []).append(p)
    tasks: list[Task] = []
    size = sweep.spec.max_group
    for members in groups.values():
        n_chunks = math.ceil(len(members) / size)
        per = math.ceil(len(members) / n_chunks)
        parts = _parts(per)
        padded = math.ceil(per / parts) * parts
        for c in range(n_chunks):
            chunk = tuple(members[c * per : (c + 1) * per])
            tasks.append(Task(len(tasks), chunk, True, size=padded, parts=parts))
    return tasks


_MIN_PART = 8


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS, Windows
        return os.cpu_count() or 1


def _parts(points: int) -> int:
    """Slices of a vectorised chunk: one per CPU core (at least 8 points each) on a CPU
    backend, where XLA runs one program on one core; one on an accelerator."""
    if jax.default_backend() != "cpu":
        return 1
    return max(1, min(_cpus(), points // _MIN_PART))
