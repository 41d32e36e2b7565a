"""Sweep files: a grid or list of points over circuit, device and method fields, validated.

A sweep file is YAML (see ``docs/studies.md``)::

    kind: gradcheck            # or train
    circuit: toy               # a circuit name or path (relative to this file first)
    base:   {method: hep, points: 8, beta: 0.1, batch: 10, seed: 0}
    grid:   {noise: [0.0, 0.01], beta: [0.05, 0.1, 0.2]}          # cartesian product
    list:   [{method: hep, points: 15}, {method: classic, points: 8}]  # zipped items
    exclude: [{noise: 0.0, beta: 0.2}]  # points matching every key of an entry are left out
    max_group: 64              # points per vectorised (vmapped) call, at most
    vectorise: true            # false: one plain gradcheck per point (the reference path)

Every point is ``base``, updated by one combination of ``grid``, updated by one item of
``list`` (grid x list: each item is combined with every grid combination), less the points
that match every key of an ``exclude`` entry (as in a CI matrix; an entry that matches no
point is an error, so a typo cannot pass silently). Keys are either
*point parameters* (``method``, ``beta``, ``noise``, ...; see :data:`GRADCHECK_PARAMS` and
:data:`TRAIN_PARAMS`) or ``set.<path>``: a field of the circuit, e.g.
``set.neuron.gain_mismatch_rel``, ``set.crossbars.default.device``, ``set.seed`` (the chip's
fabrication seed), ``set.dynamics.free_time_s``. A grid of a ``.device`` field may be the
string ``"*"``: every device card that ``analog-hep`` finds (``devices/*.yaml``).

Everything is checked before any point runs; a problem is one
``FILE:LINE: FIELD: message`` :class:`~analog_hep.errors.SpecError`. Each point gets a *key*,
a hash of its effective circuit (after ``set.``, noise and settle overrides), device cards and
parameters: a restarted sweep skips the keys its output file holds.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, model_validator

from ..._hep_settings import Guard, HepSchedule, LrSchedule, Method, UpdatePath, UpdateScheme
from ...spec import (
    AccumulatorBits,
    Circuit,
    CircuitSpec,
    DeviceCard,
    FieldError,
    KeyPath,
    Seed,
    SpecModel,
)

__all__ = [
    "GRADCHECK_PARAMS",
    "TRAIN_PARAMS",
    "GradcheckPoint",
    "Point",
    "Sweep",
    "SweepSpec",
    "TrainPoint",
]


KEY_VERSION = 1
"""Bumped when the meaning of a point's parameters changes (old keys then never match)."""

Scalar = int | float | str | bool | None
PosInt = Annotated[int, Field(ge=1)]
NonNegInt = Annotated[int, Field(ge=0)]
Pos = Annotated[float, Field(gt=0.0)]
NonNeg = Annotated[float, Field(ge=0.0)]


class GradcheckPoint(SpecModel):
    """Parameters of one gradcheck point (:func:`analog_hep.studies.gradcheck`).

    ``method``: ``hep`` (``points`` >= 2 on a circle of radius ``beta``), ``symmetric``
    (hEP with 2 points) or ``classic`` (one real ``beta``; ``points`` repeated nudged settles
    averaged, the paper's fair comparison under noise). ``beta`` is ``|beta|``
    (dimensionless); ``batch`` samples; ``seed`` the seed of the inputs and of the noise;
    ``noise`` neuron noise std per step (``null``: the circuit's); ``free_steps``/
    ``nudge_steps`` settle lengths (``null``: the circuit's); ``start``: nudged settles start
    at the free state or at the previous point; ``dataset``: a ``--dataset`` spec whose first
    ``batch`` training samples (in the order of ``seed``) replace random inputs.

    ``update_lr`` (optional): also apply one learning step ``-update_lr * estimate`` through
    the emulator driver and the devices' pulse response (``update``: the controller's update
    path), and compare the weight change the devices realised with ``-update_lr * dL/dW``.
    """

    method: Literal["hep", "classic", "symmetric"]
    points: PosInt | None = None
    beta: Pos
    batch: PosInt
    seed: Seed = 0
    noise: NonNeg | None = None
    free_steps: PosInt | None = None
    nudge_steps: PosInt | None = None
    start: Literal["free", "previous"] = "free"
    dataset: str | None = None
    update_lr: Pos | None = None
    update: Literal["auto", "outer_product", "program"] = "auto"

    @model_validator(mode="after")
    def _points(self) -> GradcheckPoint:
        if self.method == "hep" and (self.points is None or self.points < 2):
            raise FieldError(("points",), "method 'hep' needs points >= 2 (N on the circle)")
        if self.method == "symmetric" and self.points not in (None, 2):
            raise FieldError(("points",), "method 'symmetric' uses exactly 2 points")
        return self

    @property
    def n_points(self) -> int:
        """``points`` with the method's default filled in (classic 1, symmetric 2)."""
        if self.points is not None:
            return self.points
        return 2 if self.method == "symmetric" else 1


class TrainPoint(SpecModel):
    """Parameters of one training point (:class:`analog_hep.studies.TrainOptions`).

    Every field left out (``null``) comes from the circuit's ``training`` section; ``noise``
    replaces the neuron noise std; ``max_train`` limits the training set.
    """

    method: Method | None = None
    points: PosInt | None = None
    beta: Pos | None = None
    batch: PosInt | None = None
    epochs: PosInt | None = None
    lr: Pos | None = None
    momentum: Annotated[float, Field(ge=0.0, lt=1.0)] | None = None
    schedule: LrSchedule | None = None
    residual_tol: Pos | None = None
    update: UpdatePath | None = None
    online_periods: PosInt | None = None
    online_steps: PosInt | None = None
    hep_schedule: HepSchedule | None = None
    ramp_points: Annotated[int, Field(ge=0, le=64)] | None = None
    guard: Guard | None = None
    update_scheme: UpdateScheme | None = None
    mp_threshold: Pos | None = None
    mp_accumulator_bits: AccumulatorBits | None = None
    mp_max_pulses: Annotated[int, Field(ge=1, le=1024)] | None = None
    mp_dw_min: NonNeg | None = None
    seed: Seed | None = None
    dataset: str | None = None
    max_train: PosInt | None = None
    noise: NonNeg | None = None
    eval_batch: PosInt | None = None


GRADCHECK_PARAMS: tuple[str, ...] = tuple(GradcheckPoint.model_fields)
TRAIN_PARAMS: tuple[str, ...] = tuple(TrainPoint.model_fields)


class SweepSpec(SpecModel):
    """The sweep file's top level (see the module docstring)."""

    kind: Literal["gradcheck", "train"]
    circuit: str = Field(min_length=1)
    description: str = ""
    base: dict[str, Scalar] = Field(default_factory=dict)
    grid: dict[str, Annotated[list[Scalar], Field(min_length=1)] | Literal["*"]] = Field(
        default_factory=dict
    )
    items: list[dict[str, Scalar]] = Field(default_factory=list, alias="list")
    exclude: list[Annotated[dict[str, Scalar], Field(min_length=1)]] = Field(default_factory=list)
    max_group: PosInt = Field(default=64, description="points per vectorised call, at most")
    vectorise: bool = True

    @model_validator(mode="after")
    def _keys(self) -> SweepSpec:
        known = GRADCHECK_PARAMS if self.kind == "gradcheck" else TRAIN_PARAMS
        places: list[tuple[KeyPath, str]] = [(("base", k), k) for k in self.base]
        places += [(("grid", k), k) for k in self.grid]
        places += [(("list", i, k), k) for i, item in enumerate(self.items) for k in item]
        places += [(("exclude", i, k), k) for i, item in enumerate(self.exclude) for k in item]
        for loc, key in places:
            if key.startswith("set."):
                if len(key) == 4 or any(not p for p in key[4:].split(".")):
                    raise FieldError(loc, f"{key!r}: 'set.' needs a circuit field path")
                continue
            if key not in known:
                close = difflib.get_close_matches(key, known, n=1)
                hint = f"did you mean {close[0]!r}? " if close else ""
                raise FieldError(
                    loc,
                    f"unknown {self.kind} parameter {key!r}; {hint}known: {', '.join(known)}, "
                    "or set.<circuit field>",
                )
        for key, values in self.grid.items():
            if values == "*" and not (key.startswith("set.") and key.endswith(".device")):
                raise FieldError(
                    ("grid", key), "'*' (every device card) only fits a set.<...>.device field"
                )
            if isinstance(values, list) and len(set(map(_canon, values))) != len(values):
                raise FieldError(("grid", key), f"repeated values in {values}")
        for i, item in enumerate(self.items):
            for key in item:
                if key in self.grid:
                    raise FieldError(
                        ("list", i, key), f"{key!r} is swept by grid already; give it once"
                    )
        return self


def _canon(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


@dataclass(frozen=True)
class Point:
    """One point of a sweep, self-contained (picklable: it travels to Dask workers).

    **Fields:**

    - ``index``: position in the sweep's expansion order; ``key``: 16 hex digits identifying
      the point's effective circuit, cards and parameters.
    - ``kind``: ``gradcheck`` or ``train``; ``params``: the validated point parameters
      (:class:`GradcheckPoint` or :class:`TrainPoint`); ``sets``: the ``set.`` overrides as
      given, ``((path, value), ...)``.
    - ``spec``: the circuit after ``set.``, ``noise`` and settle overrides; ``devices``:
      ``((crossbar, card), ...)``; ``circuit_text``/``device_texts``: sources for records.
    """

    index: int
    key: str
    kind: str
    params: GradcheckPoint | TrainPoint
    sets: tuple[tuple[str, Any], ...]
    spec: CircuitSpec
    devices: tuple[tuple[str, DeviceCard], ...]
    circuit_text: str
    device_texts: tuple[tuple[str, str], ...]

    def circuit(self) -> Circuit:
        """The point's :class:`~analog_hep.spec.Circuit` (a Tiki-Taka crossbar's fast card:
        its ``fast_device`` from the registry, else the crossbar's own card)."""
        from ...spec import find_device_card, load_device

        devices = dict(self.devices)
        fast = {}
        for name in self.spec.crossbar_names:
            tt = self.spec.crossbar(name).tiki_taka
            if tt is not None:
                ref = tt.fast_device
                fast[name] = devices[name] if ref is None else load_device(find_device_card(ref))
        return Circuit(
            spec=self.spec,
            devices=MappingProxyType(devices),
            path=None,
            text=self.circuit_text,
            device_texts=MappingProxyType(dict(self.device_texts)),
            fast_devices=MappingProxyType(fast),
        )

    def columns(self) -> dict[str, Any]:
        """The point's parameter columns of its result row (effective values)."""
        out: dict[str, Any] = {"key": self.key, "index": self.index, "kind": self.kind}
        out["circuit"] = self.spec.name
        cards = dict.fromkeys(card.name for _, card in self.devices)
        out["devices"] = "+".join(cards)
        if isinstance(self.params, GradcheckPoint):
            p = self.params
            free, nudge = self.spec.dynamics.steps
            out.update(
                method=p.method,
                points=p.n_points,
                beta=float(p.beta),
                batch=p.batch,
                seed=p.seed,
                noise=float(self.spec.neuron.noise_std),
                free_steps=free,
                nudge_steps=nudge,
                start=p.start,
                dataset=p.dataset or "",
                update_lr=float("nan") if p.update_lr is None else float(p.update_lr),
            )
        else:
            for k, v in self.params.model_dump().items():
                out[k] = ("" if k == "dataset" else float("nan")) if v is None else v
            out["noise"] = float(self.spec.neuron.noise_std)
        for path, value in self.sets:
            out[f"set.{path}"] = value
        return out


@dataclass(frozen=True)
class Sweep:
    """A validated sweep: its spec, source and the expanded points (in order)."""

    spec: SweepSpec
    path: str
    text: str
    points: tuple[Point, ...]


def replace_points(sweep: Sweep, points: tuple[Point, ...]) -> Sweep:
    """The sweep with another tuple of points (e.g. the unfinished ones)."""
    return dataclasses.replace(sweep, points=points)


NEUTRAL_FIELDS: Mapping[str, tuple[Any, ...]] = MappingProxyType(
    {
        "update_scheme": (None, "direct"),
        "mp_threshold": (None,),
        "mp_accumulator_bits": (None,),
        "mp_max_pulses": (None,),
        "mp_dw_min": (None,),
        "mixed_precision": (
            {"threshold": 1.0, "accumulator_bits": 0, "max_pulses": 31, "dw_min": 0.0},
        ),
        "tiki_taka": (None,),
    }
)
"""Fields added after :data:`KEY_VERSION` 1 and the values that mean what a point meant
before they existed: left out of the key, so a sweep's finished points keep their keys."""


def _without_neutral(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            k: _without_neutral(v)
            for k, v in value.items()
            if not (k in NEUTRAL_FIELDS and v in NEUTRAL_FIELDS[k])
        }
    if isinstance(value, list):
        return [_without_neutral(v) for v in value]
    return value


def point_key(kind: str, params: BaseModel, spec: CircuitSpec, devices: Mapping[str, Any]) -> str:
    """16 hex digits of SHA-256 over the point's effective circuit, cards and parameters
    (fields of :data:`NEUTRAL_FIELDS` at a neutral value left out)."""
    blob = _without_neutral(
        {
            "v": KEY_VERSION,
            "kind": kind,
            "params": params.model_dump(mode="json"),
            "spec": spec.model_dump(mode="json"),
            "devices": {n: c.model_dump(mode="json") for n, c in sorted(devices.items())},
        }
    )
    text = json.dumps(blob, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]
