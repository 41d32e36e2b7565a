"""Find circuit and device-card files from a path or a name.

A reference that ends in ``.yaml``/``.yml`` or contains a path separator is a path: relative to
the referring file's directory first, then to the working directory. Anything else is a name,
looked up in the checkout's ``circuits/`` or ``devices/`` folder (when running from a source
tree) and then in the copies that the wheel ships under ``analog_hep/_resources/``.
"""

from __future__ import annotations

import difflib
import importlib.resources
import os
from pathlib import Path

import analog_hep

from ..errors import SpecError

__all__ = [
    "available_circuits",
    "available_devices",
    "find_circuit",
    "find_device_card",
    "is_path_ref",
]

_SUFFIXES = (".yaml", ".yml")


def is_path_ref(ref: str) -> bool:
    """Whether ``ref`` names a file (``.yaml``/``.yml`` or a separator) rather than a name."""
    seps = {"/", os.sep} | ({os.altsep} if os.altsep else set())
    return ref.lower().endswith(_SUFFIXES) or any(s in ref for s in seps)


def _checkout_dir(kind: str) -> Path | None:
    """``<repo>/<kind>`` when analog_hep is imported from a source checkout, else None."""
    root = Path(analog_hep.__file__).resolve().parents[1]
    # pyproject.toml guards against an unrelated `devices/` folder next to site-packages.
    folder = root / kind
    if folder.is_dir() and (root / "pyproject.toml").is_file():
        return folder
    return None


def _resource_dir(kind: str) -> Path | None:
    """``analog_hep/_resources/<kind>`` of an installed wheel, if present on disk."""
    try:
        folder = importlib.resources.files("analog_hep") / "_resources" / kind
    except (ModuleNotFoundError, TypeError):  # pragma: no cover - namespace or zip oddities
        return None
    path = Path(str(folder))
    return path if path.is_dir() else None


def _search_dirs(kind: str) -> list[Path]:
    return [d for d in (_checkout_dir(kind), _resource_dir(kind)) if d is not None]


def _available(kind: str) -> list[str]:
    names = {f.stem for d in _search_dirs(kind) for f in d.iterdir() if f.suffix in _SUFFIXES}
    return sorted(names)


def available_devices() -> list[str]:
    """Names of the device cards shipped with analog-hep (``devices/*.yaml``), sorted."""
    return _available("devices")


def available_circuits() -> list[str]:
    """Names of the example circuits shipped with analog-hep (``circuits/*.yaml``), sorted."""
    return _available("circuits")


def _find_path(ref: str, *, relative_to: Path | None, what: str) -> Path:
    path = Path(ref).expanduser()
    candidates = [path] if path.is_absolute() else []
    if not path.is_absolute():
        if relative_to is not None:
            candidates.append(relative_to / path)
        candidates.append(Path.cwd() / path)
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    looked = ", ".join(str(c) for c in dict.fromkeys(candidates))
    raise SpecError(f"{what} file {ref!r} not found (looked for {looked})")


def _find_name(ref: str, *, kind: str, what: str) -> Path:
    for folder in _search_dirs(kind):
        for suffix in _SUFFIXES:
            candidate = folder / f"{ref}{suffix}"
            if candidate.is_file():
                return candidate
    names = _available(kind)
    close = difflib.get_close_matches(ref, names, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    listing = ", ".join(names) if names else "none found"
    raise SpecError(
        f"no {what} named {ref!r}; {hint}available: {listing} (or give a path to a .yaml file)"
    )


def find_device_card(ref: str, *, relative_to: Path | None = None) -> Path:
    """The file of the device card ``ref`` (a name such as ``ideal`` or a path).

    **Arguments:** ``ref`` a card name or a path; ``relative_to`` the directory that relative
    paths are tried against first (the referring circuit's folder), before the working
    directory.

    **Returns:** the path of an existing file.

    **Raises:** :class:`SpecError` naming what was looked for and listing the available cards.
    """
    if is_path_ref(ref):
        return _find_path(ref, relative_to=relative_to, what="device card")
    return _find_name(ref, kind="devices", what="device card")


def find_circuit(ref: str, *, relative_to: Path | None = None) -> Path:
    """The file of the circuit ``ref`` (a name such as ``toy`` or a path).

    **Arguments:** as :func:`find_device_card`.

    **Raises:** :class:`SpecError` naming what was looked for and listing the available circuits.
    """
    if is_path_ref(ref):
        return _find_path(ref, relative_to=relative_to, what="circuit")
    return _find_name(ref, kind="circuits", what="circuit")
