"""Load a sweep file: validate it, expand its ``grid`` and ``list`` into points.

The schema is :mod:`._sweep_spec`; here each point's ``set.`` overrides are applied to the
circuit (device cards loaded as they change), its noise and settle overrides applied, its key
computed, and the points checked for duplicates. Errors are one
``FILE:LINE: FIELD: message`` :class:`~analog_hep.errors.SpecError`.
"""

from __future__ import annotations

import difflib
import itertools
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from ...errors import SpecError
from ...spec import (
    Circuit,
    CircuitSpec,
    DeviceCard,
    KeyPath,
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
from ._sweep_spec import GradcheckPoint, Point, Sweep, SweepSpec, TrainPoint, _canon, point_key

__all__ = ["load_sweep", "sweep_from_text"]


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


# -- expansion ---------------------------------------------------------------------------------


def _grid_values(spec: SweepSpec, key: str) -> list[Any]:
    values = spec.grid[key]
    return list(available_devices()) if values == "*" else list(values)


def _expand(
    spec: SweepSpec,
) -> tuple[list[tuple[dict[str, Any], dict[str, KeyPath]]], list[int]]:
    """Merged raw parameters of every point and, per key, the YAML path it came from; and
    the ``exclude`` entries that matched no point."""
    keys = list(spec.grid)
    combos = itertools.product(*(_grid_values(spec, k) for k in keys)) if keys else [()]
    items = spec.items or [{}]
    out = []
    matched = [False] * len(spec.exclude)
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
            hits = [
                j
                for j, ex in enumerate(spec.exclude)
                if all(k in merged and _canon(merged[k]) == _canon(v) for k, v in ex.items())
            ]
            for j in hits:
                matched[j] = True
            if not hits:
                out.append((merged, src))
    return out, [j for j, hit in enumerate(matched) if not hit]


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
    expanded, unmatched = _expand(spec)
    for j in unmatched:
        loc: KeyPath = ("exclude", j)
        raise SpecError(
            f"{path}:{line_of(lines, loc)}: {format_path(loc)}: matches no point of the sweep "
            f"({spec.exclude[j]}): check its keys and values"
        )
    for index, (merged, src) in enumerate(expanded):
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
