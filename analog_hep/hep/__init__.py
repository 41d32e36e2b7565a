"""The hEP controller: nudge schedules, estimators and local updates.

This package talks to a chip only through the driver contract (``analog_hep.drivers``); it
never imports ``analog_hep.emulator`` or ``analog_hep.physics``, so the same code trains an
emulated chip and a real one.
"""

from ._controller import Controller as Controller
from ._controller import HepConfig as HepConfig
from ._controller import StepReport as StepReport
from ._controller import epochs_to_steps as epochs_to_steps
from ._controller import free_metrics as free_metrics
from ._controller import plan as plan
from ._estimators import classic_estimate as classic_estimate
from ._estimators import dphi_dtheta as dphi_dtheta
from ._estimators import hep_estimate as hep_estimate
from ._schedules import circle_betas as circle_betas
from ._signals import dense as dense
from ._signals import outer_factors as outer_factors
from ._signals import point_weights as point_weights
