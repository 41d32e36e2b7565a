"""Shared base for every spec model: strict, frozen, unknown keys rejected."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

__all__ = ["FieldError", "SpecModel"]


class SpecModel(BaseModel):
    """Base of all YAML-backed specs.

    Frozen (specs are values, hashable, usable as static JIT arguments), strict about unknown
    keys (a typo must fail before a ten-hour run) and about types (no silent ``"1" -> 1``).
    Tuple fields are declared with ``Field(strict=False)`` so that YAML lists fill them; their
    items stay strict.
    """

    model_config = ConfigDict(
        extra="forbid", frozen=True, strict=True, validate_default=True, allow_inf_nan=False
    )


class FieldError(ValueError):
    """A model validator's complaint about one field, so that the error points at its line.

    ``loc`` is the field's path relative to the model being validated (e.g. ``("dt_s",)`` or
    ``("crossbars", "overrides", "W7")``); pydantic keeps the exception in the error's
    ``ctx["error"]``, and :mod:`analog_hep.spec._errors` appends ``loc`` to the error location.
    """

    def __init__(self, loc: tuple[str | int, ...], message: str) -> None:
        super().__init__(message)
        self.loc = loc
