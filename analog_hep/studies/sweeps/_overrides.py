"""Command-line overrides of a circuit spec (noise, settle lengths), applied before fabrication."""

from __future__ import annotations

from ...spec import CircuitSpec

__all__ = ["with_overrides"]


def with_overrides(
    spec: CircuitSpec,
    *,
    noise: float | None = None,
    free_steps: int | None = None,
    nudge_steps: int | None = None,
) -> CircuitSpec:
    """A copy of ``spec`` with neuron noise std and/or settle lengths replaced.

    Settle lengths are in steps; for continuous dynamics they become times
    ``steps * dt_s``. ``None`` keeps the circuit's value.
    """
    if noise is not None:
        if noise < 0:
            raise ValueError(f"--noise must be >= 0, got {noise}")
        spec = spec.model_copy(
            update={"neuron": spec.neuron.model_copy(update={"noise_std": float(noise)})}
        )
    dyn = spec.dynamics
    update: dict[str, float | int] = {}
    for key, steps in (("free", free_steps), ("nudge", nudge_steps)):
        if steps is None:
            continue
        if steps < 1:
            raise ValueError(f"--{key}-steps must be >= 1, got {steps}")
        if dyn.mode == "discrete":
            update[f"{key}_steps"] = int(steps)
        else:
            assert dyn.dt_s is not None
            update[f"{key}_time_s"] = steps * dyn.dt_s
    if update:
        spec = spec.model_copy(update={"dynamics": dyn.model_copy(update=update)})
    return spec
