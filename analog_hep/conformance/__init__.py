"""The driver conformance kit: what any chip driver must do to be trained by analog-hep.

Each check opens a fresh driver on a small circuit (``circuits/toy.yaml`` by default), asks
it what the controller would ask, and returns a :class:`CheckResult`. The same checks run
from ``analog-hep conformance --driver NAME``, from pytest (the plugin
``analog_hep.conformance.plugin``), or from Python (:func:`run_conformance`). The
emulator, the remote driver and the example driver under ``examples/`` pass them.

Checks (see :data:`CHECKS`):

- ``structure``: the :class:`Driver` protocol; a description consistent with the circuit
  (layers, crossbar names in the circuit's order, ``pre``/``post``, shapes, readout), sane
  capabilities, weights of the described shapes, idempotent ``close``.
- ``validation``: bad inputs, shapes, crossbar names, unsupported nudges and updates raise
  :class:`OutOfRange` / :class:`UnsupportedCapability` *before* anything reaches the chip:
  the chip's weights (and state) are unchanged afterwards, and it still works.
- ``schedule``: settled states of the documented shapes and dtypes, ``s_0`` the inputs,
  betas applied as asked, residuals reported and small, nudges pulling the loss the right
  way (``+beta`` lowers it, ``-beta`` raises it), complex and ``previous`` schedules when
  advertised.
- ``update``: updates return :class:`UpdateReport`s that match what the weights really did,
  move the weights in the requested direction, touch only the named crossbar, and stay
  bounded (a huge request is clipped and reported, and a second one moves little).
- ``checkpoint``: ``state_dict``/``load_state_dict`` restore the chip bitwise (when the chip
  advertises ``checkpoint``; otherwise both raise :class:`UnsupportedCapability`).
- ``tiki_taka``: for a chip that claims the ``tiki_taka`` update scheme: its settings in
  ``describe().extra``, a transfer within ``transfer_every`` updates that moves the weights
  with the request, and a resumed run that repeats bitwise (fast array and buffer in the
  state). The ``update`` check tests outer products of the ``direct`` scheme only.
- ``failures``: typed errors for a settle before inputs and for use after ``close``.
- ``gradient_symmetric``: the symmetric (N = 2, ``|beta| = 0.01``) estimate from the
  driver's settled states has cosine >= 0.999 and relative error <= 1e-3 with the exact
  gradient of the emulator at the driver's own weights (implicit differentiation at the
  noiseless free fixed point).
- ``gradient_hep``: the same for hEP, N = 8, ``|beta| = 0.1``, cosine >= 0.9999 and relative
  error <= 1e-4, when the chip advertises ``complex_nudges``.

The kit calls the driver with the argument types the controller uses (see
:func:`_as_controller_sends`): NumPy float32 inputs and targets, a :class:`NudgeSchedule` of
Python numbers, and ``jax.Array`` float32 update factors and deltas with a negative ``lr``
(gradient descent), so a driver that passes the kit takes a training step.

This package is the one place outside the emulator and the studies that imports
``analog_hep.emulator`` (for the ground truth, lazily, as it imports the controller and
JAX): a driver package needs analog-hep, not more, and ``analog_hep.drivers`` imports
nothing of it. The old paths ``analog_hep.drivers._conformance``, ``from
analog_hep.drivers import run_conformance, CHECKS, ...`` and the plugin
``analog_hep.drivers.conformance_plugin`` are deprecated aliases of this package.
"""

from ._report import CheckResult as CheckResult
from ._report import ConformanceReport as ConformanceReport
from ._run import CHECKS as CHECKS
from ._run import run_check as run_check
from ._run import run_conformance as run_conformance

__all__ = [
    "CHECKS",
    "CheckResult",
    "ConformanceReport",
    "run_check",
    "run_conformance",
]
