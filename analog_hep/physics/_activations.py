"""Neuron transfer functions ``sigma`` and whether each is holomorphic.

hEP with N > 2 complex nudges is exact only when the settled state is a holomorphic function
of beta, which needs holomorphic ``sigma``. All functions act elementwise on real or complex
arrays of any shape and keep the dtype.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import jax.numpy as jnp
from jaxtyping import Array, Inexact

__all__ = ["ACTIVATIONS", "Activation", "activation_fn", "is_holomorphic"]


def _logistic(z: Inexact[Array, ...]) -> Inexact[Array, ...]:
    # 1 / (1 + e^-z) written with exp only: defined for complex z away from the poles.
    return 1.0 / (1.0 + jnp.exp(-z))


def shifted_sigmoid(u: Inexact[Array, ...], *, a: float, b: float) -> Inexact[Array, ...]:
    """``1 / (1 + exp(a u + b))``; a=-4, b=2 is ``logistic(4 (u - 0.5))``.

    Poles at ``u = (-b + i pi (2k + 1)) / a``: for a=-4, b=2 complex states must stay
    within ``|Im u| < pi / 4``.
    """
    return 1.0 / (1.0 + jnp.exp(a * u + b))


def dsilu(u: Inexact[Array, ...]) -> Inexact[Array, ...]:
    """Derivative of SiLU, ``s(u) (1 + u (1 - s(u)))`` (Elfwing, Uchibe & Doya 2018)."""
    s = _logistic(u)
    return s * (1.0 + u * (1.0 - s))


def holotanh(u: Inexact[Array, ...], *, a: float) -> Inexact[Array, ...]:
    """``(SiLU_a(u) - SiLU_a(u - 2)) / 2`` with ``SiLU_a(z) = z s(a z)``: a holomorphic
    ``clip(u / 2, 0, 1)`` (the public hEP code's CNN activation)."""
    return 0.5 * (u * _logistic(a * u) - (u - 2.0) * _logistic(a * (u - 2.0)))


def _relu(u: Inexact[Array, ...]) -> Inexact[Array, ...]:
    if jnp.iscomplexobj(u):
        raise ValueError("relu is not holomorphic and cannot act on complex states; use N <= 2")
    return jnp.maximum(u, 0.0)


def _hardtanh(u: Inexact[Array, ...]) -> Inexact[Array, ...]:
    if jnp.iscomplexobj(u):
        raise ValueError("hardtanh is not holomorphic and cannot act on complex states; use N <= 2")
    return jnp.clip(u, 0.0, 1.0)


@dataclass(frozen=True)
class Activation:
    """A named transfer function, its parameter names and whether it is holomorphic."""

    name: str
    fn: Callable[..., Inexact[Array, ...]]
    params: tuple[str, ...]
    holomorphic: bool


ACTIVATIONS: dict[str, Activation] = {
    a.name: a
    for a in (
        Activation("shifted_sigmoid", shifted_sigmoid, ("a", "b"), True),
        Activation("tanh", jnp.tanh, (), True),
        Activation("dsilu", dsilu, (), True),
        Activation("holotanh", holotanh, ("a",), True),
        Activation("relu", _relu, (), False),
        Activation("hardtanh", _hardtanh, (), False),
    )
}


def is_holomorphic(name: str) -> bool:
    """Whether the activation called ``name`` is holomorphic (hEP with N > 2 is exact)."""
    return ACTIVATIONS[name].holomorphic


def activation_fn(
    name: str, params: tuple[tuple[str, float], ...]
) -> Callable[[Inexact[Array, ...]], Inexact[Array, ...]]:
    """The elementwise function ``u -> sigma(u)`` with its parameters bound.

    **Arguments:** ``name`` a key of :data:`ACTIVATIONS`; ``params`` ``((key, value), ...)``.
    """
    act = ACTIVATIONS[name]
    kwargs = dict(params)
    if set(kwargs) != set(act.params):
        raise ValueError(f"activation {name!r} takes parameters {act.params}, got {tuple(kwargs)}")
    if not kwargs:
        return act.fn
    return lambda u: act.fn(u, **kwargs)
