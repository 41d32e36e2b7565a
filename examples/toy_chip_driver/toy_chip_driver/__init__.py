"""Example analog-hep driver for the pretend PretendLabs TOY-1 chip.

Registered as ``toychip`` in the ``analog_hep.drivers`` entry-point group (see
``pyproject.toml``); ``analog-hep train ... --driver toychip`` finds it there.
"""

from ._driver import ToyChipDriver as ToyChipDriver
from ._driver import open_driver as open_driver
from ._instrument import FakeInstrument as FakeInstrument

__version__ = "0.1.0"
