"""Mixed-precision updates: a digital accumulator per weight that sends whole device pulses.

Nandakumar et al., "Mixed-precision deep learning based on computational memory", Front.
Neurosci. 14:406 (2020). The optimizer's update ``dW`` (dimensionless weights, descent
sign included) goes into an accumulator ``chi`` kept in the digital periphery; where
``|chi| >= threshold * dw_min`` the chip gets ``n = sign(chi) min(max(1, floor(|chi| /
dw_min)), max_pulses)`` pulses of one device step ``dw_min`` each, and ``chi`` keeps the
rest::

    chi <- Q(chi + dW)
    n    = sign(chi) min(max(1, floor(|chi| / dw_min)), max_pulses)   where |chi| >= thr dw_min
    chi <- chi - n dw_min

``Q`` rounds to a signed fixed-point number of ``accumulator_bits`` bits with full scale
``(max_pulses + 1) dw_min`` (saturating; ``accumulator_bits = 0``: float32, no rounding).

It is an optax transformation: chained after the optimizer, its state (``chi``) is part of
the optimizer state, so a checkpoint stores it and a resumed run continues bitwise. It
lives on the controller's side because it needs nothing of the chip but pulses: every
pulse-programmable chip, a real one behind a third-party driver included, trains with it
(the pulses go out as one outer-product request per crossbar, :func:`pulse_factors`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax
from jaxtyping import Array, Float

__all__ = ["MixedPrecisionState", "mixed_precision", "pulse_counts", "pulse_factors"]


class MixedPrecisionState(NamedTuple):
    """``chi``: ``{name: (n_out, n_in + 1)}`` float32 accumulators (weight units)."""

    chi: dict[str, Array]


def _quantise(chi: Array, dw_min: float, bits: int, max_pulses: int) -> Array:
    if bits == 0:
        return chi
    full_scale = (max_pulses + 1) * dw_min
    lsb = full_scale / 2 ** (bits - 1)
    return jnp.clip(jnp.round(chi / lsb) * lsb, -full_scale, full_scale - lsb)


def pulse_counts(
    chi: Float[Array, "n_out n_in1"], dw_min: float, threshold: float, max_pulses: int
) -> Float[Array, "n_out n_in1"]:
    """Signed whole pulses ``n`` (float32) for accumulators ``chi`` (see the module)."""
    mag = jnp.abs(chi)
    n = jnp.clip(jnp.floor(mag / dw_min), 1.0, float(max_pulses))
    return jnp.where(mag >= threshold * dw_min, jnp.sign(chi) * n, 0.0)


def mixed_precision(
    dw_min: Mapping[str, float], *, threshold: float, accumulator_bits: int, max_pulses: int
) -> optax.GradientTransformation:
    """An optax transformation from weight updates ``{name: (n_out, n_in + 1)}`` to whole
    pulses: its output is ``n * dw_min[name]`` (``n`` of :func:`pulse_counts`), its state
    the accumulators (:class:`MixedPrecisionState`).

    **Arguments:** ``dw_min``: one pulse's weight change per crossbar (> 0);
    ``threshold`` (> 0), ``accumulator_bits`` (0 or 2 ... 32), ``max_pulses`` (>= 1) as
    in the module docstring.
    """
    for name, step in dw_min.items():
        if not step > 0:
            raise ValueError(
                f"mixed_precision: dw_min of crossbar {name!r} must be > 0, got {step}"
            )
    if not threshold > 0:
        raise ValueError(f"mixed_precision: threshold must be > 0, got {threshold}")
    if accumulator_bits == 1 or not 0 <= accumulator_bits <= 32:
        raise ValueError(
            f"mixed_precision: accumulator_bits must be 0 (float32) or 2 ... 32, got "
            f"{accumulator_bits}"
        )
    if max_pulses < 1:
        raise ValueError(f"mixed_precision: max_pulses must be >= 1, got {max_pulses}")

    def init(params: dict[str, Array]) -> MixedPrecisionState:
        return MixedPrecisionState({n: jnp.zeros_like(p, jnp.float32) for n, p in params.items()})

    def update(
        updates: dict[str, Array], state: MixedPrecisionState, params: object = None
    ) -> tuple[dict[str, Array], MixedPrecisionState]:
        del params
        out, chi = {}, {}
        for name, du in updates.items():
            step = float(dw_min[name])
            acc = _quantise(
                state.chi[name] + du.astype(jnp.float32), step, accumulator_bits, max_pulses
            )
            n = pulse_counts(acc, step, threshold, max_pulses)
            out[name] = n * step
            chi[name] = acc - n * step
        return out, MixedPrecisionState(chi)

    return optax.GradientTransformation(init, update)


def pulse_factors(delta: Float[Array, "n_out n_in1"]) -> tuple[Array, Array]:
    """``(rows, cols)`` with ``sum_r rows_r cols_r^T = delta``: the identity and ``delta``
    itself (``R = n_out``, a fixed shape, so a compiled driver compiles once). A chip that
    applies outer products pulse by pulse then gives each weight its own pulse count."""
    rows = jnp.eye(delta.shape[0], dtype=jnp.float32)
    return rows, jax.numpy.asarray(delta, jnp.float32)
