"""The controller's state as one value (optax style), and its checkpoint form.

Everything a training step changes on the digital side is in :class:`ControllerState`: a
step takes one and returns the next, a checkpoint stores it as it is
(:func:`state_arrays`), and a resumed run reads it back (:func:`state_from_arrays`), the
run's totals of refused updates, dropped samples and N = 2 fallbacks included.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

__all__ = [
    "COUNTERS",
    "OPTIONAL_STATE_KEYS",
    "ControllerState",
    "init_state",
    "state_arrays",
    "state_from_arrays",
]

COUNTERS = ("refused", "dropped", "fallback")
"""The run's totals in the state: refused updates, dropped samples, N = 2 fallback steps."""

OPTIONAL_STATE_KEYS = ("beta", *COUNTERS, "circle_warned")
"""Checkpoint keys that older records lack (written before the circle diagnostic, or before
the state held the totals): :func:`state_from_arrays` keeps the given state's values."""


class ControllerState(NamedTuple):
    """What a training step changes: ``opt_state`` the optax state; ``step_count`` updates
    applied (the learning-rate schedule's step); ``beta`` the ``|beta|`` of the next step
    (the circle check's ``shrink`` lowers it); ``refused``, ``dropped``, ``fallback`` the
    run's totals of refused updates, dropped samples and N = 2 fallback steps;
    ``circle_warned`` whether the circle check's one warning was given. A pytree."""

    opt_state: optax.OptState
    step_count: int
    beta: float
    refused: int = 0
    dropped: int = 0
    fallback: int = 0
    circle_warned: bool = False


def init_state(
    optimizer: optax.GradientTransformation, shapes: Mapping[str, tuple[int, int]], beta: float
) -> ControllerState:
    """The state before the first step: the optimizer's initial state for parameters of
    ``shapes`` (``{name: (n_out, n_in + 1)}``), no step, ``|beta|`` ``beta``."""
    params = {n: jnp.zeros(s) for n, s in shapes.items()}
    return ControllerState(optimizer.init(params), 0, float(beta))


def state_arrays(state: ControllerState) -> dict[str, np.ndarray]:
    """The state as named arrays for a checkpoint: ``opt/<i>`` the optimizer state's leaves,
    then one scalar per field (``step_count`` and the totals int64, ``beta`` float64,
    ``circle_warned`` bool)."""
    leaves = jax.tree_util.tree_leaves(state.opt_state)
    out = {f"opt/{i}": np.asarray(a) for i, a in enumerate(leaves)}
    out["step_count"] = np.asarray(state.step_count, np.int64)
    out["beta"] = np.asarray(state.beta, np.float64)
    for k in COUNTERS:
        out[k] = np.asarray(getattr(state, k), np.int64)
    out["circle_warned"] = np.asarray(state.circle_warned, np.bool_)
    return out


def state_from_arrays(arrays: Mapping[str, np.ndarray], like: ControllerState) -> ControllerState:
    """The state stored by :func:`state_arrays`, with the optimizer state's structure and
    dtypes of ``like``; keys of :data:`OPTIONAL_STATE_KEYS` that ``arrays`` lacks keep
    ``like``'s values. **Raises** ``KeyError`` for another missing key."""
    leaves, treedef = jax.tree_util.tree_flatten(like.opt_state)
    new = [jnp.asarray(arrays[f"opt/{i}"]).astype(a.dtype) for i, a in enumerate(leaves)]
    opt_state = jax.tree_util.tree_unflatten(treedef, new)

    def get(key: str, cast: type, default: object) -> object:
        return cast(arrays[key]) if key in arrays else default

    return ControllerState(
        opt_state=opt_state,
        step_count=int(arrays["step_count"]),
        beta=get("beta", float, like.beta),  # type: ignore[arg-type]
        refused=get("refused", int, like.refused),  # type: ignore[arg-type]
        dropped=get("dropped", int, like.dropped),  # type: ignore[arg-type]
        fallback=get("fallback", int, like.fallback),  # type: ignore[arg-type]
        circle_warned=get("circle_warned", bool, like.circle_warned),  # type: ignore[arg-type]
    )
