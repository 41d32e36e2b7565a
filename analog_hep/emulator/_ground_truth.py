"""Ground-truth gradient of the loss at the free fixed point, by implicit differentiation.

The target of every EP estimator is ``dL/dtheta`` with ``L = l(o(s*_0))`` at the *fixed point*
``s*_0 = G(s*_0, theta)`` of the noiseless free dynamics ``G``. We differentiate that fixed
point implicitly (not BPTT through a finite settle): BPTT through ``T1`` steps is the gradient
of the state reached after ``T1`` steps, which differs from the fixed point's gradient
whenever the settle has not converged; the EP theorem (and hence hEP's exactness) is a
statement about the fixed point. The adjoint ``lambda = dl/ds + (dG/ds)^T lambda`` is solved by
fixed-point iteration, which converges wherever the forward settle does (same Jacobian), and
its residual is reported.

``theta`` are the effective crossbar weights ``(W, b)`` (dimensionless, ``W = (G+ - G-) /
g_unit``); periphery gains and neuron mismatch are part of the map, not trained.
"""

from __future__ import annotations

from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from .._numerics import matmul
from ._chip import Chip
from ._phases import free_phase
from ._settle import Read, input_drive, neuron_targets, prepare_reads

__all__ = ["GroundTruth", "ground_truth"]


class GroundTruth(NamedTuple):
    """``loss``: mean loss over the batch at the free fixed point; ``grads``:
    ``{crossbar: (dL/dW (n_out, n_in), dL/db (n_out,))}``; ``free_residual``: ``(B,)``
    settle residual of the free state; ``adjoint_residual``: max change of the adjoint in its
    last iteration, relative to its size; ``adjoint_iterations``: iterations used."""

    loss: Float[Array, ""]
    grads: dict[str, tuple[Array, Array]]
    free_residual: Float[Array, " b"]
    adjoint_residual: Float[Array, ""]
    adjoint_iterations: Array


def _loss(chip: Chip, reads: dict[str, Read], s_last: Array, y: Array) -> Array:
    cfg = chip.config
    if cfg.loss == "cross_entropy":
        ro = reads["readout"]
        o = matmul(s_last, ro.w.T) * ro.fwd_gain + ro.b
        # log_softmax, not log(softmax): softmax underflows to 0 in float32 once the
        # logits spread by more than ~100, and log(0) gave an infinite loss.
        logp = jax.nn.log_softmax(o, axis=-1)
        return -jnp.mean(jnp.sum(y * logp, axis=-1))
    return 0.5 * jnp.mean(jnp.sum((s_last - y) ** 2, axis=-1))


@eqx.filter_jit
def ground_truth(
    chip: Chip,
    x: Float[Array, "b n0"],
    y: Float[Array, "b c"],
    *,
    steps: int,
    max_adjoint_iterations: int,
) -> GroundTruth:
    """The exact gradient of the batch-mean loss at the chip's noiseless free fixed point.

    **Arguments:** ``x`` ``(B, n_0)`` inputs already through the DAC; ``y`` ``(B, classes)``
    one-hot targets; ``steps`` free settle steps used to find the fixed point;
    ``max_adjoint_iterations`` cap on the adjoint iteration (it stops earlier once the
    relative change is below 4 float eps).
    """
    chip = chip.without_noise()
    cfg = chip.config
    free = free_phase(chip, x, steps=steps, key=None)
    s_star = free.states[1:]
    base = prepare_reads(chip)
    # In the weights' own precision the gradient would carry a float32 floor under x64.
    theta = {n: (r.w.astype(x.dtype), r.b.astype(x.dtype)) for n, r in base.items()}
    zero_beta = jnp.zeros((x.shape[0], 1), jnp.float32)

    def reads_of(th: dict[str, tuple[Array, Array]]) -> dict[str, Read]:
        return {n: base[n]._replace(w=th[n][0], b=th[n][1], dev_var=None) for n in base}

    def g_map(s: tuple[Array, ...], th: dict[str, tuple[Array, Array]]) -> tuple[Array, ...]:
        reads = reads_of(th)
        name0 = cfg.crossbar_names[0]
        drive, _ = input_drive(reads[name0], x, cfg.geometry(name0))
        parts = tuple(si[None] for si in s)
        tgt = neuron_targets(
            chip, reads, drive, None, parts, zero_beta[None], y, key=None, nudged=False
        )
        return tuple(si + cfg.rate * (ti[0] - si) for si, ti in zip(s, tgt, strict=True))

    def loss_of(s: tuple[Array, ...], th: dict[str, tuple[Array, Array]]) -> Array:
        return _loss(chip, reads_of(th), s[-1], y)

    loss, (dl_ds, dl_dth) = jax.value_and_grad(loss_of, argnums=(0, 1))(s_star, theta)
    _, vjp = jax.vjp(g_map, s_star, theta)
    tol = 4 * jnp.finfo(x.dtype).eps

    def cond(c: tuple[tuple[Array, ...], Array, Array]) -> Array:
        _, delta, it = c
        return (delta > tol) & (it < max_adjoint_iterations)

    def body(c: tuple[tuple[Array, ...], Array, Array]) -> tuple[tuple[Array, ...], Array, Array]:
        lam, _, it = c
        (js, _) = vjp(lam)
        new = tuple(g + j for g, j in zip(dl_ds, js, strict=True))
        size = jnp.max(jnp.stack([jnp.max(jnp.abs(n)) for n in new])) + 1e-30
        delta = jnp.max(jnp.stack([jnp.max(jnp.abs(n - o)) for n, o in zip(new, lam, strict=True)]))
        delta = delta / size
        return new, delta, it + 1

    lam, delta, iters = jax.lax.while_loop(
        cond, body, (dl_ds, jnp.asarray(jnp.inf, x.dtype), jnp.asarray(0))
    )
    _, dth = vjp(lam)
    grads = {n: (dl_dth[n][0] + dth[n][0], dl_dth[n][1] + dth[n][1]) for n in theta}
    return GroundTruth(loss, grads, free.residual, delta, iters)
