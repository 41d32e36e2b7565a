"""The driver contract: everything the controller may ask of a chip, emulated or real.

A driver is a thin, documented class (PyVISA/PyMeasure style): it describes the chip, takes
a batch of inputs, runs a nudge schedule and returns the settled activities of every layer
at every point, applies weight updates, reads weights back, and closes. Every operation is
batched: one call covers a whole minibatch and every nudge point, so a remote or real chip
costs a few round trips per training step, never one per settling step.

Units: activities, weights and beta are dimensionless (the chip's own scale); times are
seconds (``_s``); conductances siemens (``_S``).

Array types a driver receives from the controller (the conformance kit sends the same):

- ``load_inputs``: ``x`` and ``y`` as the caller of the training loop gives them, NumPy
  float32 for analog-hep's datasets; ``y`` is ``None`` for evaluation.
- ``run_schedule``: a :class:`NudgeSchedule` of Python ``complex`` betas and ints.
- ``apply_outer_product``: ``rows`` and ``cols`` are ``jax.Array`` float32 (they come out of
  compiled JAX code, on the accelerator when there is one); ``lr`` a Python float, negative
  for gradient descent.
- ``program_delta``: ``delta_w`` a ``jax.Array`` float32.
- ``load_state_dict``: NumPy arrays (from a run record, or from ``state_dict``).

``np.asarray(a)`` (or ``np.asarray(a, np.float32)``) is the portable way to take any of them:
it accepts NumPy arrays, ``jax.Array`` s and nested lists alike. A driver returns arrays of
the documented shapes and dtypes (float32, complex64 for complex states), NumPy or JAX.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple, Protocol, runtime_checkable

import numpy as np

from .._geometry import ConvGeometry

__all__ = [
    "Capabilities",
    "ChipDescription",
    "CrossbarInfo",
    "Driver",
    "NudgeSchedule",
    "Settled",
    "UpdateReport",
]


@dataclass(frozen=True)
class CrossbarInfo:
    """One crossbar: ``W`` of shape ``(n_out, n_in)`` (plus a bias column if ``has_bias``).

    ``pre``/``post`` are the indices of the layers it couples (``post = -1`` for the
    readout, which maps the last layer onto the logits).

    ``geometry``: ``None`` for a dense crossbar (the default: drivers written before conv
    chips describe dense crossbars unchanged); a :class:`~analog_hep._geometry.ConvGeometry`
    for a conv crossbar, whose ``W`` is ``(C_out, C_in k k)`` (``n_out = C_out``,
    ``n_in = C_in k k``) read at every output position of layer ``pre`` (shape
    ``geometry.in_shape``), pooled onto layer ``post``. Its learning signal needs the
    post-synaptic signals of :class:`Settled` (``free_post``/``post``).
    """

    name: str
    n_out: int
    n_in: int
    has_bias: bool
    pre: int
    post: int
    geometry: ConvGeometry | None = None

    @property
    def kind(self) -> Literal["dense", "conv"]:
        """``"conv"`` when the crossbar has a geometry, else ``"dense"``."""
        return "dense" if self.geometry is None else "conv"


@dataclass(frozen=True)
class Capabilities:
    """What the chip can do; the controller plans with these and never asks for more.

    - ``complex_nudges``: can settle at complex beta (an emulator or a phasor chip; a DC
      crossbar cannot: then hEP runs with real nudges, N <= 2).
    - ``previous_start``: can settle a point from the previous point (adiabatic schedules,
      online hEP) instead of from the free state.
    - ``outer_product_update``: applies ``sum_r u_r v_r^T`` in parallel by pulse trains.
    - ``program_delta``: programs per-device weight changes (write-verify).
    - ``checkpoint``: can save and restore its full state (emulators; not a real chip).
    - ``max_batch``, ``max_points``: limits per call (``None``: no limit).
    - ``beta_max``: largest |beta| the nudge circuit can apply.
    - ``update_schemes``: what ``apply_outer_product`` does with a request, as names:
      ``"direct"`` (the pulses go to the weights' own devices: ``ΔW = lr Σ rows colsᵀ``) or
      ``"tiki_taka"`` (they go to a fast array ``A``, and the chip transfers ``A`` into the
      weights' array ``C`` every few updates; the weights read back are ``C + gamma A``;
      docs/devices.md, "Tiki-Taka"). Default ``("direct",)``; a chip that does not send the
      field (an older peer on the wire) has ``("direct",)``. The controller refuses
      ``update_scheme: tiki_taka`` on a chip without ``"tiki_taka"``.
    """

    complex_nudges: bool
    previous_start: bool
    outer_product_update: bool
    program_delta: bool
    checkpoint: bool
    max_batch: int | None = None
    max_points: int | None = None
    beta_max: float | None = None
    update_schemes: tuple[str, ...] = ("direct",)


@dataclass(frozen=True)
class ChipDescription:
    """Static description of a chip, from :meth:`Driver.describe`.

    ``layers``: neuron counts, ``layers[0]`` the inputs; ``classes``/``loss`` the readout;
    ``free_steps``/``nudge_steps``: the chip's default settle lengths (steps of
    ``dt_s``); ``holomorphic``: whether its neurons are holomorphic (hEP N > 2 exact).
    """

    name: str
    driver: str
    layers: tuple[int, ...]
    classes: int
    loss: Literal["cross_entropy", "mse"]
    crossbars: tuple[CrossbarInfo, ...]
    capabilities: Capabilities
    free_steps: int
    nudge_steps: int
    dt_s: float | None
    holomorphic: bool
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def crossbar_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.crossbars)


@dataclass(frozen=True)
class NudgeSchedule:
    """What to settle: the free phase, then every ``beta`` of ``betas``.

    - ``betas``: ``K`` nudges (complex allowed when the chip has ``complex_nudges``); empty
      for a free phase only (inference).
    - ``free_steps``, ``nudge_steps``: settle lengths in steps; ``None`` uses the chip's.
    - ``start``: ``"free"`` (each point from the free state, all in parallel) or
      ``"previous"`` (each point from the previous one: adiabatic, or online hEP when the
      betas go round the circle for several periods).
    """

    betas: tuple[complex, ...]
    free_steps: int | None = None
    nudge_steps: int | None = None
    start: Literal["free", "previous"] = "free"

    @property
    def is_complex(self) -> bool:
        return any(complex(b).imag != 0 for b in self.betas)


class Settled(NamedTuple):
    """Settled activities returned by :meth:`Driver.run_schedule` for a batch of ``B``.

    - ``free_states``: ``(s_0, ..., s_L)`` each ``(B, n_l)`` float32 (``s_0`` the inputs);
      ``free_logits``: ``(B, classes)`` or ``None``; ``free_residual``: ``(B,)``.
    - ``betas``: ``(K,)`` complex64 as applied; ``states``: each ``(K, B, n_l)`` (``s_0``,
      the clamped inputs as driven, is the same at every point: the controller relies on it);
      ``logits``: ``(K, B, classes)`` or ``None``; ``residual``: ``(K, B)``.

    A residual is the max over neurons of ``|sigma(.) - s|`` at the last step (activity
    units): a settled sample has a small residual.

    - ``free_post``, ``post``: for a chip with conv crossbars, ``{name: (B, C_out H_conv
      W_conv)}`` and ``{name: (K, B, C_out H_conv W_conv)}``, each conv crossbar's
      post-synaptic signal ``J_pool(z)^T s_post`` at every output position (what its
      periphery drives onto the rows in the transposed read; ``z`` its read before pooling),
      the factor of the local learning rule next to the input patches. ``None`` (the
      default) for a chip without conv crossbars.
    """

    free_states: tuple[Any, ...]
    free_logits: Any
    free_residual: Any
    betas: Any
    states: tuple[Any, ...]
    logits: Any
    residual: Any
    free_post: Any = None
    post: Any = None


class UpdateReport(NamedTuple):
    """What one update of one crossbar really did (scalars).

    ``pulses``: pulses applied (0 for exact updates); ``clipped_bound``: devices that hit a
    conductance bound; ``clipped_request``: requested entries the pulse scheme could not
    deliver; ``requested_norm``/``realised_norm``: Frobenius norms of the requested and the
    realised weight change.
    """

    crossbar: str
    pulses: int
    clipped_bound: int
    clipped_request: int
    requested_norm: float
    realised_norm: float


@runtime_checkable
class Driver(Protocol):
    """The contract between the controller and a chip. See ``docs/drivers.md``."""

    def describe(self) -> ChipDescription:
        """Static description and capabilities."""
        ...

    def load_inputs(self, x: np.ndarray, y: np.ndarray | None) -> None:
        """Clamp a batch: ``x`` ``(B, n_0)`` float32 in the input range; ``y`` ``(B, classes)``
        one-hot float32 targets for nudging (``None`` for inference). The controller passes
        what the training loop gives it (NumPy float32 for analog-hep's datasets): take them
        with ``np.asarray``."""
        ...

    def run_schedule(self, schedule: NudgeSchedule) -> Settled:
        """Settle free, then at every beta of ``schedule``; return the activities."""
        ...

    def apply_outer_product(
        self, name: str, rows: np.ndarray, cols: np.ndarray, *, lr: float
    ) -> UpdateReport:
        """Apply ``delta_W = lr * sum_r rows_r cols_r^T`` to crossbar ``name`` in parallel.

        ``rows``: ``(R, n_out)``; ``cols``: ``(R, n_in + 1)`` (last column the bias input,
        1 where the crossbar has a bias), both ``jax.Array`` float32 from the controller (take
        them with ``np.asarray``); ``R`` varies from step to step. ``lr``: a Python float,
        negative for gradient descent. Needs ``outer_product_update``.
        """
        ...

    def program_delta(self, name: str, delta_w: np.ndarray) -> UpdateReport:
        """Program ``delta_W`` ``(n_out, n_in + 1)`` per device (last column the bias; a
        ``jax.Array`` float32 from the controller: take it with ``np.asarray``). Needs
        ``program_delta``."""
        ...

    def read_weights(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Effective ``{name: (W (n_out, n_in), b (n_out,))}`` as the chip holds them now."""
        ...

    def state_dict(self) -> dict[str, np.ndarray]:
        """Full mutable state for a checkpoint. Needs ``checkpoint``."""
        ...

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        """Restore a :meth:`state_dict` (NumPy arrays, from a run record). Needs
        ``checkpoint``."""
        ...

    def close(self) -> None:
        """Release the chip (idempotent)."""
        ...
