"""The emulated chip: fabrication, settling, nudge schedules and ground-truth gradients.

``fabricate(spec, devices, seed)`` draws a :class:`Chip` (a JAX pytree); ``free_phase`` and
``nudge_phases`` settle it (batched, one compile per shape: the nudges ``beta`` are data, their
structure a static :class:`NudgePlan`); ``ground_truth`` gives the exact gradient at the free
fixed point; ``drift_chip`` ages a chip under its cards' drift and ``reference_read`` is the
read of global drift compensation. The in-process driver wraps these behind the driver
contract.
"""

from ._chip import Chip as Chip
from ._chip import ChipConfig as ChipConfig
from ._chip import Crossbar as Crossbar
from ._chip import TikiTaka as TikiTaka
from ._chip import fabricate as fabricate
from ._deploy import program_weights as program_weights
from ._drift import drift_chip as drift_chip
from ._drift import reference_read as reference_read
from ._driver import POST_KEY as POST_KEY
from ._driver import EmulatorDriver as EmulatorDriver
from ._ground_truth import GroundTruth as GroundTruth
from ._ground_truth import ground_truth as ground_truth
from ._phases import NudgePlan as NudgePlan
from ._phases import Points as Points
from ._phases import dac as dac
from ._phases import free_phase as free_phase
from ._phases import measure as measure
from ._phases import nudge_phases as nudge_phases
from ._phases import nudge_plan as nudge_plan
from ._phases import nudge_points as nudge_points
from ._phases import nudge_schedule as nudge_schedule
from ._phases import settle_points as settle_points
from ._settle import SettleOut as SettleOut
from ._settle import post_signals as post_signals
from ._settle import settle as settle
