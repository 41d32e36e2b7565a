"""Beta is data (issue 13, item 5): a new ``|beta|`` reuses the compiled settle.

Compiles are counted from JAX's own log (``jax_log_compiles``: one "Compiling <name>" record
per program lowered for XLA). Every test uses a batch size no other test uses, so programs
compiled earlier in the session cannot hide a compile here.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterator
from contextlib import contextmanager

import jax
import numpy as np

from analog_hep.drivers import NudgeSchedule
from analog_hep.emulator import EmulatorDriver
from analog_hep.hep import circle_betas
from analog_hep.studies import gradcheck

RADII = (0.05, 0.1, 0.2, 0.3, 0.45)


class _Compiles(logging.Handler):
    """Names of the programs JAX compiles while attached."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.names: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith("Compiling ") and record.args:
            self.names.append(str(record.args[0]))

    def count(self, name: str) -> int:
        return sum(name in n for n in self.names)


@contextmanager
def _compiles() -> Iterator[_Compiles]:
    handler = _Compiles()
    logger = logging.getLogger("jax")
    before = jax.config.jax_log_compiles
    jax.config.update("jax_log_compiles", True)
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        jax.config.update("jax_log_compiles", before)


def test_gradcheck_at_five_radii_compiles_the_settle_once(toy):
    results = []
    with _compiles() as log:
        for i, r in enumerate(RADII):
            results.append(gradcheck(toy, method="hep", points=6, beta=r, batch=7, seed=1))
            if i == 0:
                first = list(log.names)
    assert log.count("nudge_phases") == 1, log.names
    assert log.count("free_phase") == 1, log.names
    assert log.names == first, log.names[len(first) :]  # nothing at all compiled after |beta| 1
    # the radius did reach the settle: the estimates differ
    assert len({res.rel_error_total for res in results}) == len(RADII)


def test_classic_gradcheck_at_five_betas_compiles_the_settle_once(toy):
    with _compiles() as log:
        for r in RADII:
            gradcheck(toy, method="classic", points=1, beta=r, batch=9, seed=1)
    assert log.count("nudge_phases") == 1, log.names


def test_driver_run_schedule_at_five_radii_compiles_once(toy):
    driver = EmulatorDriver(toy, seed=0)
    x = np.linspace(0, 1, 5 * 6, dtype=np.float32).reshape(5, 6)
    y = np.eye(4, dtype=np.float32)[[0, 1, 2, 3, 0]]
    states = []
    with _compiles() as log:
        for r in RADII:
            driver.load_inputs(x, y)
            settled = driver.run_schedule(NudgeSchedule(betas=circle_betas(r, 4)))
            states.append(np.asarray(settled.states[-1]))
            np.testing.assert_allclose(np.asarray(settled.betas), circle_betas(r, 4), rtol=1e-6)
    assert log.count("_settle_schedule") == 1, log.names
    assert not any(np.array_equal(a, b) for a, b in itertools.pairwise(states))
