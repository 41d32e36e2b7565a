"""The Tiki-Taka update scheme of a crossbar (TTv2 and chopped TTv2), as a circuit's YAML
gives it.

A Tiki-Taka crossbar has two arrays: pulse updates go to a fast array ``A``; every
``transfer_every`` updates the chip reads ``columns_per_transfer`` columns of ``A``, filters
them in a digital buffer ``H`` and, where ``|H|`` passes a threshold, sends whole pulses to
the slow array ``C``; the weight the network sees is ``W = C + gamma A``. Names follow IBM
aihwkit's transfer compounds (``transfer_every``, ``gamma``, ``forget_buffer``); the
equations and what the emulator models are in docs/devices.md, "Tiki-Taka".

References: Gokmen & Haensch, "Algorithm for training neural networks on resistive device
arrays", Front. Neurosci. 14:103 (2020) (Tiki-Taka); Gokmen, "Enabling training of neural
networks on noisy hardware", Front. Artif. Intell. 4:699148 (2021) (TTv2); Rasch et al.,
"Fast and robust analog in-memory deep neural network training", Nat. Commun. 15 (2024)
(chopped TTv2).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, field_validator

from ._base import SpecModel
from .device_models._common import NonNeg, Pos

__all__ = ["COUNTER_MAX", "TikiTakaSpec", "stall_problem"]

COUNTER_MAX = 2**31 - 1
"""Largest update count the chip's (32-bit) counters reach: a ``transfer_every`` above it
never transfers."""

FLOAT32_MANTISSA = 2**24
"""Increments below ``1 / 2**24`` of a float32 buffer no longer change it."""


class TikiTakaSpec(SpecModel):
    """Tiki-Taka (TTv2; chopped TTv2 with ``chopper_period > 0``) on one crossbar.

    Per update: pulses of ``lr Σ rows colsᵀ`` go to ``A`` (columns times their chopper sign
    ``c_j``). Every ``transfer_every``-th update: for the next ``columns_per_transfer``
    columns ``j`` (cyclic, bias column included): ``H[:, j] += transfer_lr (c_j W_A[:, j] +
    read_noise_std ξ)``; ``n = trunc(H[:, j] / (threshold Δw_C))`` whole pulses (at most the
    periphery's ``bit_length``) go to ``C[:, j]``; ``H[:, j] -= n threshold Δw_C`` (or
    ``H[:, j] = 0`` where pulses fired, with ``forget_buffer``). ``Δw_C`` is the mean weight
    change of one pulse on ``C``'s pairs.
    """

    fast_device: str | None = Field(
        default=None,
        description="device card name or path of the fast array A; null: the crossbar's card",
    )
    gamma: NonNeg = Field(
        default=0.0,
        description="weight of A in the effective weight W = C + gamma A (dimensionless; "
        "0: TTv2, the network reads C only)",
    )
    transfer_every: Annotated[int, Field(ge=1)] = Field(
        description="updates of A between two transfers (int >= 1)"
    )
    columns_per_transfer: Annotated[int, Field(ge=1)] = Field(
        default=1,
        description="columns of A read per transfer (int >= 1; at most every column once)",
    )
    transfer_lr: Pos = Field(
        description="H += transfer_lr * read (dimensionless, > 0)",
    )
    threshold: Pos = Field(
        description="|H| that fires one pulse on C, in units of C's mean pulse step Δw_C "
        "(dimensionless, > 0)",
    )
    read_noise_std: NonNeg = Field(
        description="std of the additive Gaussian noise of the transfer read (weight units)",
    )
    chopper_period: Annotated[int, Field(ge=0)] = Field(
        default=0,
        description="0: no chopper (TTv2); k > 0: each column's chopper sign flips after "
        "every k reads of that column (chopped TTv2)",
    )
    forget_buffer: bool = Field(
        default=False,
        description="reset H to 0 where pulses fired (else subtract what was transferred)",
    )

    @field_validator("transfer_every")
    @classmethod
    def _counter(cls, value: int) -> int:
        if value > COUNTER_MAX:
            raise ValueError(
                f"transfer_every {value} never transfers: the chip counts updates in 32 bits, "
                f"so the largest schedule that transfers is {COUNTER_MAX} (2**31 - 1)"
            )
        return value

    def settings(self) -> dict[str, object]:
        """The settings as plain JSON types (``describe().extra["tiki_taka"]``)."""
        return self.model_dump(mode="json")


def stall_problem(spec: TikiTakaSpec, *, dw_c: float, read_max: float) -> str | None:
    """Why ``spec`` can never move ``C`` (``None`` when it can): the buffer ``H`` is float32,
    and a read adds at most ``transfer_lr * read_max``; below ``1 / 2**24`` of the threshold
    ``threshold * dw_c`` the increments vanish before ``|H|`` reaches it.

    **Arguments:** ``dw_c`` ``C``'s nominal pulse step (weight units, > 0); ``read_max`` the
    largest ``|W_A|`` a read can return (weight units: the mapping's ``w_max``).
    """
    step = spec.threshold * dw_c
    most = spec.transfer_lr * read_max
    if most * FLOAT32_MANTISSA < step:
        return (
            f"threshold {spec.threshold:g} x C's pulse step {dw_c:.3g} = {step:.3g} is more "
            f"than 2**24 times the largest buffer increment transfer_lr x w_max = {most:.3g}: "
            "the float32 buffer H stops growing before it reaches the threshold, so C never "
            "moves; raise transfer_lr or lower threshold"
        )
    return None
