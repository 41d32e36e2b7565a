"""Sweep files: a grid or list of points over circuit, device and method fields, validated.

A sweep file is YAML (see ``docs/studies.md``)::

    kind: gradcheck            # or train
    circuit: toy               # a circuit name or path (relative to this file first)
    base:   {method: hep, points: 8, beta: 0.1, batch: 10, seed: 0}
    grid:   {noise: [0.0, 0.01], beta: [0.05, 0.1, 0.2]}          # cartesian product
    list:   [{method: hep, points: 15}, {method: classic, points: 8}]  # zipped items
    max_group: 64              # points per vectorised (vmapped) call, at most
    vectorise: true            # false: one plain gradcheck per point (the reference path)

Every point is ``base``, updated by one combination of ``grid``, updated by one item of
``list`` (grid x list: each item is combined with every grid combination). Keys are either
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
import itertools
import json
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, Field, model_validator

from ...errors import SpecError
from ...spec import (
    Circuit,
    CircuitSpec,
    DeviceCard,
    FieldError,
    KeyPath,
    Seed,
    SpecModel,
    available_devices,
    find_circuit,
    find_device_card,
    format_path,
    line_of,
    load_circuit,
    load_device,
    load_yaml,
    parse_spec,
    read_yaml,
)
from ._overrides import with_overrides

__all__ = [
    "GRADCHECK_PARAMS",
    "TRAIN_PARAMS",
    "GradcheckPoint",
    "Point",
    "Sweep",
    "SweepSpec",
    "TrainPoint",
    "load_sweep",
    "sweep_from_text",
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

    method: Literal["hep", "classic", "symmetric", "online"] | None = None
    points: PosInt | None = None
    beta: Pos | None = None
    batch: PosInt | None = None
    epochs: PosInt | None = None
    lr: Pos | None = None
    momentum: Annotated[float, Field(ge=0.0, lt=1.0)] | None = None
    schedule: Literal["constant", "cosine"] | None = None
    residual_tol: Pos | None = None
    update: Literal["auto", "outer_product", "program"] | None = None
    online_periods: PosInt | None = None
    online_steps: PosInt | None = None
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
    max_group: PosInt = Field(default=64, description="points per vectorised call, at most")
    vectorise: bool = True

    @model_validator(mode="after")
    def _keys(self) -> SweepSpec:
        known = GRADCHECK_PARAMS if self.kind == "gradcheck" else TRAIN_PARAMS
        places: list[tuple[KeyPath, str]] = [(("base", k), k) for k in self.base]
        places += [(("grid", k), k) for k in self.grid]
        places += [(("list", i, k), k) for i, item in enumerate(self.items) for k in item]
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
        """The point's :class:`~analog_hep.spec.Circuit`."""
        return Circuit(
            spec=self.spec,
            devices=MappingProxyType(dict(self.devices)),
            path=None,
            text=self.circuit_text,
            device_texts=MappingProxyType(dict(self.device_texts)),
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


# -- circuit overrides -----------------------------------------------------------------------


def _set_path(data: dict[str, Any], path: str, value: Any, *, where: str) -> None:
    """Set ``data[a][b]... = value`` for ``path = "a.b..."`` in a circuit's model dump."""
    parts = path.split(".")
    node: Any = data
    model: Any = CircuitSpec
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if not isinstance(node, dict):
            done = ".".join(parts[:i])
            raise SpecError(f"{where}: circuit field {done!r} is a value, it has no {part!r}")
        fields = list(model.model_fields) if _is_model(model) else None
        if fields is not None and part not in fields:
            close = difflib.get_close_matches(part, fields, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise SpecError(
                f"{where}: the circuit has no field {'.'.join(parts[: i + 1])!r}; {hint}"
                f"fields here: {', '.join(fields)}"
            )
        if last:
            node[part] = value
            return
        if node.get(part) is None:
            node[part] = {}
        model = model.value if isinstance(model, _DictOf) else _field_model(model, part)
        node = node[part]


def _is_model(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def _field_model(model: Any, part: str) -> Any:
    """The model type of field ``part`` (through ``Optional`` and ``dict[str, Model]``)."""
    if not _is_model(model):
        return None
    tp = model.model_fields[part].annotation
    for _ in range(3):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if _is_model(tp):
            return tp
        origin = typing.get_origin(tp)
        if origin is dict and len(args) == 2:
            return _DictOf(args[1])
        if not args:
            return None
        tp = args[0]
    return tp if _is_model(tp) else None


@dataclass(frozen=True)
class _DictOf:
    """Marker: a ``dict[str, model]`` field (any key allowed, its values are ``model``)."""

    value: Any


def _apply_sets(
    base: Circuit,
    sets: tuple[tuple[str, Any], ...],
    *,
    where: dict[str, str],
    search_dir: Path,
    cards: dict[str, tuple[DeviceCard, str]],
) -> tuple[CircuitSpec, dict[str, DeviceCard], dict[str, str], str]:
    """The circuit with ``set.`` overrides applied: ``(spec, devices, device_texts, text)``."""
    if not sets:
        return base.spec, dict(base.devices), dict(base.device_texts), base.text
    data = base.spec.model_dump(mode="python", by_alias=True)
    for path, value in sets:
        _set_path(data, path, value, where=where[path])
    shown = ", ".join(f"set.{p}={v!r}" for p, v in sets)
    try:
        spec = parse_spec(CircuitSpec, data, path="<circuit>", lines={})
    except SpecError as err:
        first = where[sets[0][0]]
        detail = str(err).removeprefix("<circuit>:1: ")
        raise SpecError(f"{first}: circuit {base.spec.name!r} with {shown}: {detail}") from None
    devices: dict[str, DeviceCard] = {}
    texts: dict[str, str] = {}
    for name in spec.crossbar_names:
        ref = spec.crossbar(name).device
        assert ref is not None
        if ref == base.spec.crossbar(name).device:
            card = base.devices[name]
            text = base.device_texts.get(card.name, "")
        else:
            if ref not in cards:
                src = next((where[p] for p, _ in sets if p.endswith("device")), where[sets[0][0]])
                try:
                    file = find_device_card(ref, relative_to=search_dir)
                    cards[ref] = (load_device(Path(file)), file.read_text(encoding="utf-8"))
                except SpecError as err:
                    raise SpecError(f"{src}: device card {ref!r}: {err}") from None
            card, text = cards[ref]
        devices[name] = card
        texts[card.name] = text
    text = f"# {base.spec.name} with {shown}\n" + yaml.safe_dump(
        spec.model_dump(mode="json"), sort_keys=False
    )
    return spec, devices, texts, text


def point_key(kind: str, params: BaseModel, spec: CircuitSpec, devices: Mapping[str, Any]) -> str:
    """16 hex digits of SHA-256 over the point's effective circuit, cards and parameters."""
    blob = {
        "v": KEY_VERSION,
        "kind": kind,
        "params": params.model_dump(mode="json"),
        "spec": spec.model_dump(mode="json"),
        "devices": {n: c.model_dump(mode="json") for n, c in sorted(devices.items())},
    }
    text = json.dumps(blob, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# -- expansion ---------------------------------------------------------------------------------


def _grid_values(spec: SweepSpec, key: str) -> list[Any]:
    values = spec.grid[key]
    return list(available_devices()) if values == "*" else list(values)


def _expand(spec: SweepSpec) -> list[tuple[dict[str, Any], dict[str, KeyPath]]]:
    """Merged raw parameters of every point and, per key, the YAML path it came from."""
    keys = list(spec.grid)
    combos = itertools.product(*(_grid_values(spec, k) for k in keys)) if keys else [()]
    items = spec.items or [{}]
    out = []
    for combo in combos:
        for i, item in enumerate(items):
            merged: dict[str, Any] = dict(spec.base)
            src: dict[str, KeyPath] = {k: ("base", k) for k in spec.base}
            for k, v in zip(keys, combo, strict=True):
                merged[k] = v
                src[k] = ("grid", k)
            for k, v in item.items():
                merged[k] = v
                src[k] = ("list", i, k)
            out.append((merged, src))
    return out


def _resolve_circuit(ref: str, search_dir: Path) -> Circuit:
    file = find_circuit(ref, relative_to=search_dir)
    return load_circuit(Path(file))


def _build(doc_data: Any, lines: Mapping[KeyPath, int], path: str, text: str) -> Sweep:
    spec = parse_spec(SweepSpec, doc_data, path=path, lines=lines)
    search_dir = Path(path).resolve().parent if not path.startswith("<") else Path.cwd()
    try:
        base = _resolve_circuit(spec.circuit, search_dir)
    except SpecError as err:
        raise SpecError(f"{path}:{line_of(lines, ('circuit',))}: circuit: {err}") from None
    model: type[GradcheckPoint] | type[TrainPoint] = (
        GradcheckPoint if spec.kind == "gradcheck" else TrainPoint
    )
    points: list[Point] = []
    cards: dict[str, tuple[DeviceCard, str]] = {}
    built: dict[str, tuple[CircuitSpec, dict[str, DeviceCard], dict[str, str], str]] = {}
    seen: dict[str, int] = {}
    for index, (merged, src) in enumerate(_expand(spec)):
        where = {k: f"{path}:{line_of(lines, p)}: {format_path(p)}" for k, p in src.items()}
        sets = tuple(sorted((k[4:], v) for k, v in merged.items() if k.startswith("set.")))
        raw = {k: v for k, v in merged.items() if not k.startswith("set.")}
        point_lines: dict[KeyPath, int] = {(k,): line_of(lines, src[k]) for k in raw}
        point_lines[()] = line_of(lines, src[next(iter(src))] if src else ())
        params = parse_spec(model, raw, path=path, lines=point_lines)
        set_where = {k[4:]: w for k, w in where.items() if k.startswith("set.")}
        skey = _canon(sets)
        if skey not in built:
            built[skey] = _apply_sets(
                base, sets, where=set_where, search_dir=search_dir, cards=cards
            )
        cspec, devices, texts, ctext = built[skey]
        if isinstance(params, GradcheckPoint):
            try:
                cspec = with_overrides(
                    cspec,
                    noise=params.noise,
                    free_steps=params.free_steps,
                    nudge_steps=params.nudge_steps,
                )
            except ValueError as err:  # pragma: no cover - ranges are checked above
                raise SpecError(f"{path}: point {index}: {err}") from None
        elif params.noise is not None:
            cspec = with_overrides(cspec, noise=params.noise)
        key = point_key(spec.kind, params, cspec, devices)
        if key in seen:
            line = line_of(lines, next(iter(src.values()), ()))
            raise SpecError(
                f"{path}:{line}: points {seen[key]} and {index} are the same point (same "
                "circuit, cards and parameters); remove the duplicate"
            )
        seen[key] = index
        points.append(
            Point(
                index=index,
                key=key,
                kind=spec.kind,
                params=params,
                sets=sets,
                spec=cspec,
                devices=tuple(devices.items()),
                circuit_text=ctext,
                device_texts=tuple(texts.items()),
            )
        )
    return Sweep(spec=spec, path=path, text=text, points=tuple(points))


def load_sweep(path: str | Path) -> Sweep:
    """Read, validate and expand a sweep file.

    **Returns:** a :class:`Sweep` with every point expanded and checked (circuit overrides
    applied and validated, device cards loaded).

    **Raises:** :class:`~analog_hep.errors.SpecError`, one line naming the file, line and
    field.
    """
    doc = read_yaml(Path(path))
    return _build(doc.data, doc.lines, doc.path, doc.text)


def sweep_from_text(text: str, *, name: str = "<sweep>") -> Sweep:
    """:func:`load_sweep` for YAML given as text (relative paths: the working directory)."""
    doc = load_yaml(text, path=name)
    return _build(doc.data, doc.lines, doc.path, doc.text)


def replace_points(sweep: Sweep, points: tuple[Point, ...]) -> Sweep:
    """The sweep with another tuple of points (e.g. the unfinished ones)."""
    return dataclasses.replace(sweep, points=points)
