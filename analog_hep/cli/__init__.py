"""The ``analog-hep`` command line.

Each subcommand lives in its own module ``analog_hep/cli/_<name>.py`` exposing
``register(subparsers) -> None`` (adds its parser, sets ``func``) so that commands can be
added without touching this file beyond the list below. Every expected failure becomes one
clear line on stderr and a non-zero exit code, never a traceback:

- exit 2: bad input (a malformed circuit, card, CSV or sweep file; bad arguments),
- exit 1: a run failed (chip lost, did not settle, ...).

``ANALOG_HEP_COMPILE_CACHE=DIR`` keeps compiled programs in ``DIR`` (JAX's persistent
compilation cache) for every command: a second run of the same circuit and batch loads its
programs instead of compiling them (docs/performance.md: 5 s -> 1 s on the 2-core CPU,
57 s -> 0.9 s on an H100).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from ..errors import AnalogHepError, SpecError

__all__ = ["main"]

# Modules that define subcommands, in the order `--help` lists them.
_COMMANDS = (
    "_check",
    "_gradcheck",
    "_train",
    "_fit_device",
    "_serve",
    "_conformance",
    "_sweep",
    "_stability_map",
    "_report",
    "_bench",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
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
    args = parser.parse_args(argv)
    if not hasattr(args, "func"):
        parser.print_help()
        return 2
    cache = os.environ.get("ANALOG_HEP_COMPILE_CACHE")
    if cache:
        from ..studies import use_compile_cache

        use_compile_cache(cache)
    try:
        return int(args.func(args) or 0)
    except SpecError as err:
        print(f"analog-hep {args.command}: error: {err}", file=sys.stderr)
        return 2
    except AnalogHepError as err:
        print(f"analog-hep {args.command}: {type(err).__name__}: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"analog-hep {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
