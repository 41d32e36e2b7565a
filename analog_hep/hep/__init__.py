"""The hEP controller: nudge schedules, estimators and local updates.

This package talks to a chip only through the driver contract (``analog_hep.drivers``); it
never imports ``analog_hep.emulator`` or ``analog_hep.physics``, so the same code trains an
emulated chip and a real one.
"""

from ._estimators import classic_estimate as classic_estimate
from ._estimators import dphi_dtheta as dphi_dtheta
from ._estimators import hep_estimate as hep_estimate
from ._schedules import circle_betas as circle_betas
