"""One typed error hierarchy for analog-hep.

The controller catches errors by type, the same way for the emulator and for a real chip,
so every failure that a user or a driver can cause maps onto one of these classes.
Messages say what to change, not only what went wrong.
"""

from __future__ import annotations

__all__ = [
    "AnalogHepError",
    "ConnectionLost",
    "DriverTimeout",
    "NotSettled",
    "OutOfRange",
    "SpecError",
    "UnsupportedCapability",
]


class AnalogHepError(Exception):
    """Root of every error that analog-hep raises on purpose."""


class SpecError(AnalogHepError, ValueError):
    """A circuit, device card, sweep or data file is malformed.

    The message is one line: ``FILE:LINE: FIELD.PATH: expected ..., found ...``.
    """


class UnsupportedCapability(AnalogHepError, NotImplementedError):
    """The chip (driver) cannot do what was asked, e.g. complex nudges on a DC crossbar."""


class OutOfRange(AnalogHepError, ValueError):
    """A value sent to a chip lies outside what the chip accepts (checked before any I/O)."""


class NotSettled(AnalogHepError):
    """A settle did not reach its residual tolerance; the states must not be used for learning."""


class ConnectionLost(AnalogHepError, ConnectionError):
    """The link to a (remote) chip broke; the run must checkpoint and stop."""


class DriverTimeout(AnalogHepError, TimeoutError):
    """A driver call did not answer within its ``timeout_s``."""
