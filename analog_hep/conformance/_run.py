"""Running the checks: :data:`CHECKS` by name, :func:`run_check` (one check, never
raising) and :func:`run_conformance` (a :class:`ConformanceReport`)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from ..drivers import Driver
from ._base import CheckFailed, CheckSkipped, _Target
from ._behaviour import check_checkpoint, check_schedule, check_update
from ._contract import check_failures, check_structure, check_validation
from ._gradient import check_gradient_hep, check_gradient_symmetric
from ._report import CheckResult, ConformanceReport, Status
from ._schemes import check_tiki_taka

__all__ = ["CHECKS", "run_check", "run_conformance"]

CHECKS: dict[str, Callable[[_Target], str]] = {
    "structure": check_structure,
    "validation": check_validation,
    "schedule": check_schedule,
    "update": check_update,
    "checkpoint": check_checkpoint,
    "tiki_taka": check_tiki_taka,
    "failures": check_failures,
    "gradient_symmetric": check_gradient_symmetric,
    "gradient_hep": check_gradient_hep,
}


# -- running ---------------------------------------------------------------------------------


def _target(driver: str | Callable[[], Driver], circuit: Any, seed: int) -> tuple[_Target, str]:
    if isinstance(circuit, str):
        from ..spec import load_circuit

        circuit = load_circuit(circuit)
    if isinstance(driver, str):
        from ..drivers import open_driver

        arg = driver
        return _Target(lambda: open_driver(arg, circuit, seed=seed), circuit, seed), arg
    return _Target(driver, circuit, seed), getattr(driver, "__name__", repr(driver))


def run_check(
    name: str, driver: str | Callable[[], Driver], circuit: Any = "toy", *, seed: int = 0
) -> CheckResult:
    """Run the check ``name`` of :data:`CHECKS`.

    **Arguments:** ``driver`` a ``--driver`` argument (``emulator``, ``mychip:port=...``,
    ``tcp://HOST:PORT``) or a function returning a fresh driver on ``circuit``; ``circuit``
    a loaded circuit or its name/path (default the toy circuit); ``seed`` the run seed.

    **Returns:** a :class:`CheckResult`; an exception the check did not expect is a failure
    naming it, never raised.
    """
    if name not in CHECKS:
        raise KeyError(f"no conformance check {name!r}; known: {', '.join(CHECKS)}")
    t, _ = _target(driver, circuit, seed)
    t0 = time.perf_counter()
    try:
        msg = CHECKS[name](t)
        status: Status = "passed"
    except CheckSkipped as err:
        msg, status = str(err), "skipped"
    except CheckFailed as err:
        msg, status = str(err), "failed"
    except Exception as err:
        msg, status = f"raised {type(err).__name__}: {err}", "failed"
    return CheckResult(name, status, msg, time.perf_counter() - t0, dict(t.metrics))


def run_conformance(
    driver: str | Callable[[], Driver],
    circuit: Any = "toy",
    *,
    seed: int = 0,
    checks: Sequence[str] | None = None,
) -> ConformanceReport:
    """Run ``checks`` (default: all of :data:`CHECKS`) against ``driver``; see :func:`run_check`."""
    t, label = _target(driver, circuit, seed)
    names = list(CHECKS) if checks is None else list(checks)
    unknown = [n for n in names if n not in CHECKS]
    if unknown:
        from ..errors import SpecError

        raise SpecError(f"unknown conformance check(s) {unknown}; known: {', '.join(CHECKS)}")
    results = tuple(run_check(n, t.open, t.circuit, seed=seed) for n in names)
    return ConformanceReport(label, t.circuit.spec.name, results)
