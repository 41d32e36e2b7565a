"""pytest integration of the driver conformance kit.

A driver package tests its driver with one line (no plugin needed)::

    # tests/test_conformance.py of the package
    from analog_hep.conformance.plugin import conformance_tests

    test_mychip_conformance = conformance_tests("mychip:port=sim")

which collects one test per check (``test_mychip_conformance[structure]``, ...); a check
that does not apply to the chip is reported as skipped with the reason.

As a plugin (``pytest -p analog_hep.conformance.plugin``) it adds the options
``--driver-under-test NAME`` (repeatable) and ``--conformance-circuit``; a test made with
``conformance_tests()`` (no driver) then runs against every ``--driver-under-test``::

    pytest -p analog_hep.conformance.plugin --driver-under-test mychip:port=/dev/ttyUSB0

(or ``pytest_plugins = ["analog_hep.conformance.plugin"]`` in the top-level
``conftest.py``). The checks call the driver with the argument types the controller uses
(``jax.Array`` update factors and deltas among them): see docs/drivers.md.

``analog_hep.drivers.conformance_plugin`` is a deprecated alias of this module (the same
hooks and :func:`conformance_tests`), kept for driver packages written against it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import pytest

from ._run import CHECKS, run_check

__all__ = ["conformance_tests", "pytest_addoption", "pytest_generate_tests"]


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("analog-hep", "analog-hep driver conformance")
    group.addoption(
        "--driver-under-test",
        action="append",
        default=[],
        metavar="NAME[:K=V,...]",
        help="driver that conformance_tests() without a driver runs against (repeatable)",
    )
    group.addoption(
        "--conformance-circuit",
        default=None,
        metavar="CIRCUIT",
        help="circuit for the conformance checks (default: the test's, usually toy)",
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "driver_under_test" in metafunc.fixturenames:
        drivers = metafunc.config.getoption("driver_under_test", default=[]) or []
        if not drivers:
            drivers = [pytest.param(None, marks=pytest.mark.skip(reason="no --driver-under-test"))]
        metafunc.parametrize("driver_under_test", drivers)


@functools.lru_cache(maxsize=8)
def _circuit(name: str) -> Any:
    from ..spec import load_circuit

    return load_circuit(name)


def conformance_tests(
    driver: str | Callable[[], Any] | None = None,
    *,
    circuit: str = "toy",
    seed: int = 0,
    checks: Sequence[str] | None = None,
    driver_fixture: str | None = None,
) -> Callable[..., None]:
    """A pytest test function running each conformance check as its own test case.

    **Arguments:**

    - ``driver``: a ``--driver`` argument (``mychip:port=...``, ``tcp://HOST:PORT``) or a
      function returning a fresh driver opened on ``circuit``; ``None`` runs against the
      plugin's ``--driver-under-test`` options.
    - ``circuit``: circuit name or path the checks use (default the toy circuit).
    - ``seed``: run seed handed to the driver.
    - ``checks``: names of :data:`~analog_hep.conformance.CHECKS` (default all).
    - ``driver_fixture``: name of a fixture that returns the driver argument (for drivers
      known only at run time, e.g. a server on a free port).
    """
    names = list(CHECKS) if checks is None else list(checks)
    unknown = [n for n in names if n not in CHECKS]
    if unknown:
        raise ValueError(f"unknown conformance checks {unknown}; known: {', '.join(CHECKS)}")

    def _run(check: str, arg: Any, config: pytest.Config) -> None:
        name = config.getoption("conformance_circuit", default=None) or circuit
        res = run_check(check, arg, _circuit(name), seed=seed)
        if res.status == "skipped":
            pytest.skip(res.message)
        if res.status == "failed":
            pytest.fail(f"conformance check {check!r} failed: {res.message}", pytrace=False)

    if driver is None and driver_fixture is None:

        @pytest.mark.parametrize("check", names)
        def test_plugin_conformance(check: str, driver_under_test: str, request: Any) -> None:
            _run(check, driver_under_test, request.config)

        return test_plugin_conformance

    @pytest.mark.parametrize("check", names)
    def test_conformance(check: str, request: Any) -> None:
        arg = request.getfixturevalue(driver_fixture) if driver_fixture else driver
        _run(check, arg, request.config)

    return test_conformance
