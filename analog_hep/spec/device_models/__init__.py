"""The device-model registry: one module per model, found by listing this package.

Each model module defines ``MODEL``, a :class:`DeviceModel`: the card's ``response`` schema
(a pydantic model whose ``model`` field is ``Literal[name]``), the pulse response written
once with an array namespace (``jax.numpy`` in the emulator, ``numpy`` in ``fit-device``),
the per-device slope draw, the fitting model with named parameters, and the model's row of
the docs' table. The card schema (:data:`ResponseSpec`), the emulator's pulses
(``physics``), ``fit-device``, ``check`` and docs/devices.md are all built from
:data:`MODELS`; adding a model is adding one file here (docs/devices.md, "Adding a device
model").
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Annotated, Any, Union

from pydantic import Field

from ._common import (
    DeviceModel,
    DeviceState,
    Factors,
    FitModel,
    FitStats,
    ModelDoc,
    PulsedResponse,
    safe_div,
)

__all__ = [
    "FIT_MODELS",
    "MODELS",
    "DeviceModel",
    "DeviceState",
    "Factors",
    "FitModel",
    "FitStats",
    "ModelDoc",
    "PulsedResponse",
    "ResponseSpec",
    "device_model",
    "docs_table",
    "safe_div",
]


def _discover() -> dict[str, DeviceModel]:
    """Every ``MODEL`` of the modules of this package (not ``_private`` ones), in order."""
    found = []
    for info in pkgutil.iter_modules(__path__):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        model: DeviceModel = module.MODEL
        if model.name != info.name:
            raise ImportError(f"device model module {info.name!r} defines MODEL {model.name!r}")
        found.append(model)
    found.sort(key=lambda m: (m.order, m.name))
    return {m.name: m for m in found}


MODELS: dict[str, DeviceModel] = _discover()
"""The device models by name, in registry order (the order of error messages and docs)."""

FIT_MODELS: tuple[str, ...] = tuple(name for name, m in MODELS.items() if m.fit is not None)
"""The models ``fit-device`` can fit."""

ResponseSpec = Annotated[
    Union[tuple(m.response for m in MODELS.values())],  # noqa: UP007  (built at run time)
    Field(discriminator="model"),
]
"""A card's ``response``: one of the registry's schemas, chosen by its ``model`` key."""


def device_model(response: Any) -> DeviceModel:
    """The registry entry of a card's ``response`` (or of a model name)."""
    name = response if isinstance(response, str) else response.model
    return MODELS[name]


def docs_table() -> str:
    """The Markdown table of models in docs/devices.md (section 3), from the registry."""
    rows = [
        "| `model` | `f⁺(w)` (up) | `f⁻(w)` (down) | c2c noise `n^d` (normalised units × "
        "scale_S) | extra keys |",
        "| --- | --- | --- | --- | --- |",
    ]
    for m in MODELS.values():
        keys = ", ".join(f"`{k}`" for k in m.own_fields) or "–"
        doc = m.doc
        rows.append(f"| `{m.name}` | {doc.up} | {doc.down} | {doc.noise} | {keys} |")
    return "\n".join(rows)
