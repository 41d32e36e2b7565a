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
    "exit_code",
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


# What the command line answers with (cli/__init__.py): a user error is a request that the
# files, the options or the chip cannot meet, found before anything ran (exit 2); anything
# else failed while running (exit 1), and may succeed when rerun or resumed.
_USER_ERRORS: tuple[type[AnalogHepError], ...] = (SpecError, UnsupportedCapability, OutOfRange)


def exit_code(err: AnalogHepError) -> int:
    """2 for a user error (:class:`SpecError`, :class:`UnsupportedCapability`,
    :class:`OutOfRange`: bad files, options or values, requests the chip cannot meet);
    1 for a run failure (:class:`NotSettled`, :class:`ConnectionLost`, :class:`DriverTimeout`
    and any other :class:`AnalogHepError`)."""
    return 2 if isinstance(err, _USER_ERRORS) else 1
