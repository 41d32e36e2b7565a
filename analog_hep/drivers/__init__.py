"""The driver contract between the controller and a chip, and driver discovery.

``Driver`` is the protocol every chip meets (the in-process emulator, a remote chip, a
lab's own hardware). Drivers are found through the ``analog_hep.drivers`` entry-point group.

Importing this package imports the contract and the registry only. The TCP server
(:class:`DriverServer`), the remote client (:class:`RemoteDriver`, :func:`read_token_file`)
and the validators of :mod:`analog_hep.drivers.validate` (``check_inputs``,
``check_schedule``, ... : every ``check_*`` of that module) are imported on first use (a
controller that drives a chip in process never loads the wire protocol), and
``open_driver("tcp://...")`` imports the remote client when it is asked for one.

``CHECKS``, ``CheckResult``, ``ConformanceReport``, ``run_check`` and ``run_conformance``
are deprecated aliases of :mod:`analog_hep.conformance`, the conformance kit, which imports
the emulator and the controller and so lives above this package: they are looked up there
on first use, so that this package imports nothing above it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._protocol import Capabilities as Capabilities
from ._protocol import ChipDescription as ChipDescription
from ._protocol import CrossbarInfo as CrossbarInfo
from ._protocol import Driver as Driver
from ._protocol import NudgeSchedule as NudgeSchedule
from ._protocol import Settled as Settled
from ._protocol import UpdateReport as UpdateReport
from ._registry import available_drivers as available_drivers
from ._registry import open_driver as open_driver
from ._registry import parse_driver_arg as parse_driver_arg

if TYPE_CHECKING:
    from ._remote import RemoteDriver as RemoteDriver
    from ._remote import read_token_file as read_token_file
    from ._server import DriverServer as DriverServer

__all__ = [
    "Capabilities",
    "ChipDescription",
    "CrossbarInfo",
    "Driver",
    "DriverServer",
    "NudgeSchedule",
    "RemoteDriver",
    "Settled",
    "UpdateReport",
    "available_drivers",
    "open_driver",
    "parse_driver_arg",
    "read_token_file",
]

# Names imported on first use: the wire protocol's server and client ...
_REMOTE = frozenset({"RemoteDriver", "read_token_file"})
_SERVER = frozenset({"DriverServer"})
# ... and the deprecated aliases of the conformance kit (analog_hep.conformance).
_CONFORMANCE = frozenset(
    {"CHECKS", "CheckResult", "ConformanceReport", "run_check", "run_conformance"}
)


def __getattr__(name: str) -> Any:
    """The lazily imported names of this package (PEP 562), cached once imported.

    **Raises:** :class:`AttributeError` for any other name (so that ``from . import
    submodule`` still imports the submodule).
    """
    if name in _REMOTE:
        from . import _remote as module
    elif name in _SERVER:
        from . import _server as module
    elif name in _CONFORMANCE:
        from .. import conformance as module
    elif name.startswith("check_"):
        from . import validate as module
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    try:
        value = getattr(module, name)
    except AttributeError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_REMOTE, *_SERVER, *_CONFORMANCE})
