"""The ``analog-hep`` command line.

Each subcommand lives in its own module ``analog_hep/cli/_<name>.py`` exposing
``register(subparsers) -> None`` (adds its parser, sets ``func``) so that commands can be
added without touching this file beyond the list below. Every expected failure becomes one
clear line on stderr and a non-zero exit code, never a traceback:

- exit 2: a user error, found before anything ran: bad input (a malformed, oversized or
  non-UTF-8 circuit, card, CSV or sweep file; a chip too large for this machine's memory;
  bad arguments or option values, e.g. ``--beta -0.2``) and requests that the chip cannot
  meet (``UnsupportedCapability``, e.g. ``--beta`` above its ``beta_max``; ``OutOfRange``,
  a value outside what the chip accepts). See :func:`analog_hep.errors.exit_code`.
- exit 1: a run failed while running and may succeed when rerun or resumed (``NotSettled``,
  ``ConnectionLost``, ``DriverTimeout``, out of memory).
- exit 130: interrupted (Ctrl-C).

Negative numbers are option values (``--beta -0.2``, ``--noise -1e-3``), never options;
where a negative value means nothing, the command says "expected a positive number". A
reader that closes the output early (``analog-hep check toy | head -1``) ends the command
quietly (exit 0): the reader asked for no more.

``ANALOG_HEP_COMPILE_CACHE=DIR`` keeps compiled programs in ``DIR`` (JAX's persistent
compilation cache) for every command: a second run of the same circuit and batch loads its
programs instead of compiling them (docs/performance.md: 5 s -> 1 s on the 2-core CPU,
57 s -> 0.9 s on an H100).
"""

from __future__ import annotations

import argparse
import importlib
import os
import re
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

from ..errors import AnalogHepError, SpecError, exit_code

__all__ = ["main"]

# Modules that define subcommands, in the order `--help` lists them.
_COMMANDS = (
    "_check",
    "_gradcheck",
    "_train",
    "_drift",
    "_fit_device",
    "_serve",
    "_conformance",
    "_sweep",
    "_stability_map",
    "_report",
    "_bench",
)


# A negative number in any spelling float() reads (argparse's own pattern misses -1e-3, -.5e2,
# -inf): such an argument is a value, never an option.
_NEGATIVE_NUMBER = re.compile(
    r"^-(?:(?:\d[\d_]*\.?[\d_]*|\.\d[\d_]*)(?:[eE][-+]?\d+)?|inf|infinity|nan)$",
    re.IGNORECASE,
)


class Parser(argparse.ArgumentParser):
    """``ArgumentParser`` that reads every negative number as a value and whose errors are one
    line (``analog-hep train: error: argument --beta: ...``), exit code 2. Subcommand parsers
    are of this class too (argparse makes them with the parent's class)."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._negative_number_matcher = _NEGATIVE_NUMBER

    def error(self, message: str) -> NoReturn:
        text = " ".join(message.split())
        self.exit(2, f"{self.prog}: error: {text} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The ``analog-hep`` parser with every subcommand."""
    parser = Parser(
        prog="analog-hep",
        description="Emulate analog crossbar chips and train them with holomorphic EP.",
    )
    from .. import __version__

    parser.add_argument("--version", action="version", version=f"analog-hep {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _COMMANDS:
        try:
            module = importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as err:
            if err.name == f"{__name__}.{name}":
                continue  # command not built yet
            raise
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``analog-hep`` console script; returns the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as done:  # --help, --version, or a one-line argument error
        return done.code if isinstance(done.code, int) else 2
    if not hasattr(args, "func"):
        parser.print_help()
        return 2
    cache = os.environ.get("ANALOG_HEP_COMPILE_CACHE")
    if cache:
        from ..studies import use_compile_cache

        use_compile_cache(cache)
    return _run(args.func, args)


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split())


def _run(func: Callable[[argparse.Namespace], int | None], args: argparse.Namespace) -> int:
    """Run a subcommand; every expected failure is one stderr line and an exit code."""
    prog = f"analog-hep {args.command}"
    try:
        code = int(func(args) or 0)
        sys.stdout.flush()  # a closed pipe shows here, not at interpreter exit
        return code
    except BrokenPipeError:
        # The reader closed the pipe (`| head`): stop quietly; stdout goes to /dev/null so
        # that the interpreter's final flush does not complain.
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, sys.stdout.fileno())
        os.close(null)
        return 0
    except SpecError as err:
        print(f"{prog}: error: {_one_line(err)}", file=sys.stderr)
        return 2
    except AnalogHepError as err:
        code = exit_code(err)
        kind = "error: " if code == 2 else ""
        print(f"{prog}: {kind}{type(err).__name__}: {_one_line(err)}", file=sys.stderr)
        return code
    except MemoryError:
        print(f"{prog}: out of memory (MemoryError)", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
