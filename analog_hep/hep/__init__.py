"""The hEP controller: nudge schedules, estimators and local updates.

This package talks to a chip only through the driver contract (``analog_hep.drivers``); it
never imports ``analog_hep.emulator``, ``analog_hep.physics`` or ``analog_hep.spec``, so the
same code trains an emulated chip and a real one. Crossbars are paired with the chip's
layers by their description's ``pre``/``post``, never by name or position.
"""

from .._hep_settings import HepSettings as HepSettings
from ._controller import Controller as Controller
from ._controller import StepReport as StepReport
from ._controller import epochs_to_steps as epochs_to_steps
from ._controller import free_metrics as free_metrics
from ._estimators import Coupling as Coupling
from ._estimators import classic_estimate as classic_estimate
from ._estimators import couplings as couplings
from ._estimators import dphi_dtheta as dphi_dtheta
from ._estimators import hep_estimate as hep_estimate
from ._mixed_precision import MixedPrecisionState as MixedPrecisionState
from ._mixed_precision import mixed_precision as mixed_precision
from ._mixed_precision import pulse_counts as pulse_counts
from ._plan import HepConfig as HepConfig
from ._plan import plan as plan
from ._schedules import circle_betas as circle_betas
from ._signals import dense as dense
from ._signals import outer_factors as outer_factors
from ._signals import point_weights as point_weights
from ._state import ControllerState as ControllerState
from ._state import state_arrays as state_arrays
from ._state import state_from_arrays as state_from_arrays
