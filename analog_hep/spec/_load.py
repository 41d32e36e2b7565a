"""Load circuits and device cards from YAML into validated specs.

Every problem becomes one :class:`SpecError` line that names the file, the line, the field path
and what was expected: a malformed card referenced by a circuit is reported at the circuit's
``device:`` line, followed by the card's own problem.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from ..errors import SpecError
from ._circuit import CircuitSpec
from ._device import DeviceCard, IdealResponse
from ._errors import spec_error
from ._resolve import find_circuit, find_device_card, is_path_ref
from ._tiki_taka import stall_problem
from ._yaml import KeyPath, YamlDoc, format_path, line_of, load_yaml, read_yaml

__all__ = [
    "Circuit",
    "circuit_from_text",
    "load_any",
    "load_circuit",
    "load_device",
    "parse_spec",
]

M = TypeVar("M", bound=BaseModel)

_CARD_KEYS = ("response", "conductance")
_CIRCUIT_KEYS = ("layers", "blocks", "input_shape")


@dataclass(frozen=True)
class Circuit:
    """A validated circuit with the device card of every crossbar, and the sources of both.

    **Fields:**

    - ``spec``: the :class:`CircuitSpec`.
    - ``devices``: crossbar name (``W0``, ..., ``readout``) -> its :class:`DeviceCard`, one entry
      per name in ``spec.crossbar_names``.
    - ``path``: the circuit file, or ``None`` when built from text.
    - ``text``: the circuit's YAML source (for run records).
    - ``device_texts``: card name -> the card's YAML source (for run records), fast-array
      cards included.
    - ``fast_devices``: crossbar name -> the card of its Tiki-Taka fast array ``A``
      (``tiki_taka.fast_device``, or the crossbar's own card when that is null), one entry
      per crossbar with a ``tiki_taka`` block; empty without Tiki-Taka.
    """

    spec: CircuitSpec
    devices: Mapping[str, DeviceCard]
    path: str | None
    text: str
    device_texts: Mapping[str, str]
    fast_devices: Mapping[str, DeviceCard] = field(default_factory=lambda: MappingProxyType({}))


def parse_spec(model: type[M], data: Any, *, path: str, lines: Mapping[KeyPath, int]) -> M:
    """Validate ``data`` as ``model``; a failure is one ``FILE:LINE: FIELD: ...`` SpecError.

    **Arguments:** ``model`` a spec model class (e.g. :class:`DeviceCard`); ``data`` the parsed
    YAML mapping; ``path`` the file name for messages; ``lines`` key path -> line, from the
    YAML loader.

    **Returns:** the validated model instance.

    **Raises:** :class:`SpecError`.
    """
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise spec_error(err, model=model, path=path, lines=lines) from None


def _read_card(file: Path) -> DeviceCard:
    doc = read_yaml(file)
    return parse_spec(DeviceCard, doc.data, path=doc.path, lines=doc.lines)


def load_device(ref: str | Path, *, relative_to: Path | None = None) -> DeviceCard:
    """Load and validate a device card given by name (``ideal``) or path.

    **Arguments:** ``ref`` a card name, or a path (a :class:`~pathlib.Path` is always a path);
    ``relative_to`` the directory relative paths are tried against before the working directory.

    **Returns:** the :class:`DeviceCard`.

    **Raises:** :class:`SpecError` if the card is not found or is invalid.

    >>> load_device("ideal").response.model
    'ideal'
    """
    file = _as_file(ref, relative_to=relative_to, find=find_device_card)
    return _read_card(file)


def _as_file(ref: str | Path, *, relative_to: Path | None, find: Any) -> Path:
    if isinstance(ref, Path):
        if not ref.is_absolute() and relative_to is not None and (relative_to / ref).is_file():
            return relative_to / ref
        return ref
    return find(ref, relative_to=relative_to)


def _device_line(spec: CircuitSpec, crossbar: str) -> KeyPath:
    """Path of the ``device:`` key that gives this crossbar its card."""
    override = spec.crossbars.overrides.get(crossbar)
    if override is not None and override.device is not None:
        return ("crossbars", "overrides", crossbar, "device")
    return ("crossbars", "default", "device")


def _fast_line(spec: CircuitSpec, crossbar: str, key: str) -> KeyPath:
    """Path of the ``tiki_taka`` block (``key`` ``""``) or of one of its keys that this
    crossbar takes."""
    override = spec.crossbars.overrides.get(crossbar)
    base = ("crossbars", "default")
    if override is not None and override.tiki_taka is not None:
        base = ("crossbars", "overrides", crossbar)
    return (*base, "tiki_taka", key) if key else (*base, "tiki_taka")


def _transfer_problem(spec: CircuitSpec, crossbar: str, card: DeviceCard) -> str | None:
    """Why this crossbar's Tiki-Taka transfers can never move its array ``C`` (or None)."""
    xspec = spec.crossbar(crossbar)
    tt, mapping = xspec.tiki_taka, xspec.mapping
    assert tt is not None and mapping is not None
    resp = card.response
    if isinstance(resp, IdealResponse):
        return (
            f"tiki_taka moves C by whole pulses, but C's device card {card.name!r} is ideal "
            "(exact updates, no pulse step): give the crossbar a pulsed device card"
        )
    # C's nominal pulse step in weight units: dw_min normalised units, times siemens per
    # normalised unit, over siemens per weight unit; a balanced pair moves both devices.
    per_device = resp.dw_min * mapping.w_max / (resp.w_max - resp.w_min)
    dw_c = per_device if card.refresh is not None else 2.0 * per_device
    return stall_problem(tt, dw_c=dw_c, read_max=mapping.w_max)


def _card_from_record(ref: str, texts: Mapping[str, str] | None) -> tuple[str, str] | None:
    """``(key, text)`` of a recorded card that ``ref`` names (by name or file stem)."""
    if not texts:
        return None
    for key in (ref, Path(ref).stem):
        if key in texts:
            return key, texts[key]
    return None


def _load_card_for(
    ref: str, *, base_dir: Path | None, recorded: Mapping[str, str] | None
) -> tuple[DeviceCard, str]:
    """The card a circuit's ``device:`` value names, and its source text."""
    hit = _card_from_record(ref, recorded)
    file = None if hit is not None else find_device_card(ref, relative_to=base_dir)
    try:
        if hit is not None:
            doc = load_yaml(hit[1], path=f"<recorded card {hit[0]}>")
        else:
            assert file is not None
            doc = read_yaml(file)
        return parse_spec(DeviceCard, doc.data, path=doc.path, lines=doc.lines), doc.text
    except SpecError as err:
        raise SpecError(f"device card {ref!r} is invalid: {err}") from None


def _build_circuit(
    doc: YamlDoc,
    *,
    base_dir: Path | None,
    path: str | None,
    recorded: Mapping[str, str] | None = None,
) -> Circuit:
    spec = parse_spec(CircuitSpec, doc.data, path=doc.path, lines=doc.lines)
    by_ref: dict[str, tuple[DeviceCard, str]] = {}
    devices: dict[str, DeviceCard] = {}
    fast: dict[str, DeviceCard] = {}
    texts: dict[str, str] = {}

    def card_at(ref: str, key_path: KeyPath) -> DeviceCard:
        """The card ``ref`` names at ``key_path``, loaded once; its text recorded."""
        where = f"{doc.path}:{line_of(doc.lines, key_path)}: {format_path(key_path)}"
        if ref not in by_ref:
            try:
                by_ref[ref] = _load_card_for(ref, base_dir=base_dir, recorded=recorded)
            except SpecError as err:
                raise SpecError(f"{where}: {err}") from None
        card, text = by_ref[ref]
        if texts.get(card.name, text) != text:
            raise SpecError(
                f"{where}: two different device cards are named {card.name!r}; a circuit's "
                "cards must have distinct names (run records key them by name)"
            )
        texts[card.name] = text
        return card

    for crossbar in spec.crossbar_names:
        xspec = spec.crossbar(crossbar)
        ref = xspec.device
        assert ref is not None  # CrossbarsSpec requires a default device
        devices[crossbar] = card_at(ref, _device_line(spec, crossbar))
        tt = xspec.tiki_taka
        if tt is None:
            continue
        fast_ref = ref if tt.fast_device is None else tt.fast_device
        fast[crossbar] = card_at(fast_ref, _fast_line(spec, crossbar, "fast_device"))
        problem = _transfer_problem(spec, crossbar, devices[crossbar])
        if problem is not None:
            key_path = _fast_line(spec, crossbar, "")
            where = f"{doc.path}:{line_of(doc.lines, key_path)}: {format_path(key_path)}"
            raise SpecError(f"{where}: {problem}")
    return Circuit(
        spec=spec,
        devices=MappingProxyType(devices),
        path=path,
        text=doc.text,
        device_texts=MappingProxyType(texts),
        fast_devices=MappingProxyType(fast),
    )


def load_circuit(ref: str | Path) -> Circuit:
    """Load a circuit by name (``toy``) or path, with the device card of every crossbar.

    Card paths in the circuit are relative to the circuit file's folder first, then to the
    working directory; card names are looked up as in :func:`find_device_card`.

    **Returns:** a :class:`Circuit`.

    **Raises:** :class:`SpecError` (one line) for a missing or malformed circuit or card.

    >>> load_circuit("toy").spec.layers
    (6, 4, 4)
    """
    file = _as_file(ref, relative_to=None, find=find_circuit)
    doc = read_yaml(file)
    return _build_circuit(doc, base_dir=file.parent, path=str(file))


def circuit_from_text(
    text: str, *, name: str = "<string>", device_texts: Mapping[str, str] | None = None
) -> Circuit:
    """Build a circuit from its YAML source (e.g. the text stored in a run record).

    **Arguments:** ``text`` the circuit YAML; ``name`` what messages call it;
    ``device_texts`` card name -> card YAML (a run record's ``Circuit.device_texts``): a
    crossbar's ``device:`` that matches a key here, by itself or by its file stem, uses the
    recorded card instead of today's file, so that a run is rebuilt as it was.

    **Returns:** a :class:`Circuit` with ``path=None``; relative card paths are resolved
    against the working directory.

    **Raises:** :class:`SpecError` (one line).
    """
    doc = load_yaml(text, path=name)
    return _build_circuit(doc, base_dir=None, path=None, recorded=device_texts)


def _any_file(ref: str | Path) -> Path:
    if isinstance(ref, Path) or is_path_ref(ref):
        return Path(ref)
    found = []
    for find in (find_circuit, find_device_card):
        with contextlib.suppress(SpecError):
            found.append(find(ref))
    if not found:
        raise SpecError(f"{ref}: no such file, and no circuit or device card of that name")
    if len(found) > 1:
        raise SpecError(
            f"{ref!r} names both a circuit and a device card ({found[0]}, {found[1]}); "
            "give the path"
        )
    return found[0]


def load_any(path: str | Path) -> Circuit | DeviceCard:
    """Load a file that is either a circuit (has ``layers``, or ``blocks``/``input_shape`` for a
    conv chip) or a device card (has ``response`` or ``conductance``), deciding by its
    top-level keys.

    **Arguments:** ``path`` a file path (a bare name is looked up among circuits and cards).

    **Returns:** a :class:`Circuit` or a :class:`DeviceCard`.

    **Raises:** :class:`SpecError` (one line) if it is neither, or is invalid.
    """
    file = _any_file(path)
    doc = read_yaml(file)
    keys = set(doc.data)
    if keys & set(_CIRCUIT_KEYS):
        return _build_circuit(doc, base_dir=file.parent, path=str(file))
    if keys & set(_CARD_KEYS):
        return parse_spec(DeviceCard, doc.data, path=doc.path, lines=doc.lines)
    shown = ", ".join(repr(k) for k in doc.data) or "none"
    raise SpecError(
        f"{doc.path}:{line_of(doc.lines, ())}: neither a circuit (no 'layers' or 'blocks' key) "
        f"nor a device card (no 'response' or 'conductance' key); top-level keys: {shown}"
    )
