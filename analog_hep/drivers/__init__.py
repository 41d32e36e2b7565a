"""The driver contract between the controller and a chip, and driver discovery.

``Driver`` is the protocol every chip meets (the in-process emulator, a remote chip, a
lab's own hardware). Drivers are found through the ``analog_hep.drivers`` entry-point group.
"""

from ._conformance import CHECKS as CHECKS
from ._conformance import CheckResult as CheckResult
from ._conformance import ConformanceReport as ConformanceReport
from ._conformance import run_check as run_check
from ._conformance import run_conformance as run_conformance
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
from ._remote import RemoteDriver as RemoteDriver
from ._remote import read_token_file as read_token_file
from ._server import DriverServer as DriverServer
