"""Finding drivers: the ``analog_hep.drivers`` entry-point group.

A driver package registers a factory under that group (the emulator registers itself the
same way, in this project's ``pyproject.toml``)::

    [project.entry-points."analog_hep.drivers"]
    mychip = "mychip_driver:open_driver"

The factory is called as ``factory(circuit, seed=..., options=...)`` where ``circuit`` is the
loaded :class:`analog_hep.spec.Circuit` (it describes the chip and its learning setup),
``seed`` the run seed, and ``options`` the ``KEY=VALUE`` pairs of ``--driver NAME:OPTIONS``
(comma separated). ``--driver tcp://HOST:PORT`` is the remote client.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any

from ..errors import SpecError
from ._protocol import Driver

__all__ = ["available_drivers", "open_driver", "parse_driver_arg"]

GROUP = "analog_hep.drivers"


def available_drivers() -> dict[str, Any]:
    """Registered driver entry points by name (not loaded)."""
    return {ep.name: ep for ep in entry_points(group=GROUP)}


def parse_driver_arg(arg: str) -> tuple[str, dict[str, str]]:
    """``NAME[:K=V,K=V]`` -> ``(NAME, {K: V})``; ``tcp://host:port`` stays whole."""
    if arg.startswith("tcp://"):
        return "tcp", {"address": arg[len("tcp://") :]}
    name, _, rest = arg.partition(":")
    options: dict[str, str] = {}
    for item in filter(None, rest.split(",")):
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise SpecError(f"--driver {arg}: expected NAME[:KEY=VALUE,...], found option {item!r}")
        options[key.strip()] = value.strip()
    return name, options


def open_driver(arg: str, circuit: Any, *, seed: int) -> Driver:
    """Open the driver named by ``arg`` (``emulator``, ``mychip:port=/dev/ttyUSB0``, ...)."""
    name, options = parse_driver_arg(arg)
    if name == "tcp":
        from ._remote import RemoteDriver

        return RemoteDriver.connect(options["address"], circuit=circuit, seed=seed)
    eps = available_drivers()
    if name not in eps:
        raise SpecError(
            f"--driver {arg}: no driver named {name!r}; registered: {', '.join(sorted(eps))} "
            f"(entry-point group {GROUP!r})"
        )
    factory: Callable[..., Driver] = eps[name].load()
    return factory(circuit, seed=seed, options=options)
