"""The gradient checks: the symmetric and the hEP estimate from the driver's settled
states against the emulator's exact gradient at the driver's own weights (the one
place the kit imports the emulator and the controller, lazily)."""

from __future__ import annotations

import dataclasses

import numpy as np

from ..drivers import NudgeSchedule
from ._base import (
    GRADIENT_SYMMETRIC_BETA,
    HEP_BETA,
    HEP_COSINE_MIN,
    HEP_POINTS,
    HEP_REL_MAX,
    SYMMETRIC_COSINE_MIN,
    SYMMETRIC_REL_MAX,
    CheckSkipped,
    _cos,
    _opened,
    _require,
    _Target,
    _w_full,
)

__all__ = ["check_gradient_hep", "check_gradient_symmetric"]


def _gradient(t: _Target, points: int, beta: float, cos_min: float, rel_max: float) -> str:
    """The estimate from the driver's settled states against the exact gradient: its
    direction (cosine) and its scale (relative error, which a wrong nudge scale moves and
    the cosine does not)."""
    import jax
    import jax.numpy as jnp

    from ..emulator import dac, fabricate, ground_truth
    from ..hep import circle_betas, hep_estimate

    d = _opened(t)
    try:
        desc = d.describe()
        caps = desc.capabilities
        if points > 2 and not caps.complex_nudges:
            raise CheckSkipped("no complex_nudges capability: hEP N > 2 does not apply")
        if caps.beta_max is not None:
            beta = min(beta, caps.beta_max)
        x, y = t.batch(desc)
        d.load_inputs(x, y)
        settled = d.run_schedule(NudgeSchedule(betas=circle_betas(beta, points)))
        weights = d.read_weights()
    finally:
        d.close()
    spec = t.circuit.spec
    fast = getattr(t.circuit, "fast_devices", None)
    chip, _ = fabricate(spec, dict(t.circuit.devices), spec.seed, fast_devices=fast)
    chip = chip.without_noise()
    ref_names = chip.config.crossbar_names
    _require(
        len(ref_names) == len(desc.crossbars), "the chip's crossbars differ from the circuit's"
    )
    xbs = {}
    for ref, c in zip(ref_names, desc.crossbars, strict=True):
        xb = chip.crossbars[ref]
        full = _w_full(weights, c.name)
        _require(full.shape == xb.g_plus_S.shape, f"{c.name}: shape differs from the circuit's")
        # Same effective weights as the driver's chip: W = (G+ - G-) / g_unit about the
        # fabricated pair's midpoint.
        mid = 0.5 * (xb.g_plus_S + xb.g_minus_S)
        half = jnp.asarray(0.5 * full * xb.g_unit_S, xb.g_plus_S.dtype)
        # A Tiki-Taka crossbar's fast array is left out: W = C carries the whole weight.
        xbs[ref] = dataclasses.replace(
            xb, g_plus_S=mid + half, g_minus_S=mid - half, tiki_taka=None
        )
    chip = dataclasses.replace(chip, crossbars=xbs)
    steps = chip.config.free_steps
    xj, yj = jnp.asarray(x), jnp.asarray(y)
    truth = ground_truth(
        chip, dac(chip, xj), yj, steps=steps, max_adjoint_iterations=max(20 * steps, 2000)
    )
    # The descriptions (pre/post, geometry) and the conv crossbars' post-synaptic signals:
    # a conv crossbar's estimate sums patches x signals over its positions.
    post = None if settled.post is None else {n: jnp.asarray(v) for n, v in settled.post.items()}
    est = hep_estimate(
        tuple(jnp.asarray(s) for s in settled.states),
        None if settled.logits is None else jnp.asarray(settled.logits),
        yj,
        jnp.asarray(settled.betas),
        desc.crossbars,
        post=post,
    )
    e_all, g_all = [], []
    for ref, c in zip(ref_names, desc.crossbars, strict=True):
        ew, eb = (np.asarray(jax.device_get(a)) for a in est[c.name])
        gw, gb = (np.asarray(jax.device_get(a)) for a in truth.grads[ref])
        e_all += [ew.ravel()] + ([eb.ravel()] if c.has_bias else [])
        g_all += [gw.ravel()] + ([gb.ravel()] if c.has_bias else [])
    e, g = np.concatenate(e_all), np.concatenate(g_all)
    cos = _cos(e, g)
    rel = float(np.linalg.norm(e - g) / max(np.linalg.norm(g), 1e-300))
    t.metrics.update(cosine=cos, rel_error=rel, beta=float(beta), points=float(points))
    _require(
        cos >= cos_min,
        f"N={points} |beta|={beta:g}: cosine {cos:.6f} with the exact gradient < {cos_min}",
    )
    _require(
        rel <= rel_max,
        f"N={points} |beta|={beta:g}: relative error {rel:.2e} with the exact gradient > "
        f"{rel_max:g} (cosine {cos:.7f}): the estimate's scale is off; is every beta applied "
        "as the chip reports it?",
    )
    return f"N={points} |beta|={beta:g}: cosine {cos:.7f}, relative error {rel:.2e}"


def check_gradient_symmetric(t: _Target) -> str:
    return _gradient(t, 2, GRADIENT_SYMMETRIC_BETA, SYMMETRIC_COSINE_MIN, SYMMETRIC_REL_MAX)


def check_gradient_hep(t: _Target) -> str:
    return _gradient(t, HEP_POINTS, HEP_BETA, HEP_COSINE_MIN, HEP_REL_MAX)
