"""Deprecated alias of :mod:`analog_hep.conformance`, the driver conformance kit.

The kit moved to its own package, above ``analog_hep.drivers`` (it imports the emulator
and the controller, which import this package). ``from analog_hep.drivers._conformance
import CHECKS, run_check, run_conformance`` keeps working: a name is looked up in the kit's
modules on first use, so importing this module imports nothing above ``drivers`` until
then. New code imports :mod:`analog_hep.conformance`.
"""

from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    """``name`` from the kit: its public names, then its private modules' names."""
    if name.startswith("__"):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from .. import conformance
    from ..conformance import _base, _behaviour, _contract, _gradient, _report, _run

    for module in (conformance, _run, _gradient, _behaviour, _contract, _base, _report):
        if hasattr(module, name):
            return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
