"""Nudge schedules: which complex ``beta`` values the chip settles at."""

from __future__ import annotations

import math

__all__ = ["circle_betas"]


def circle_betas(radius: float, n: int, *, phase_rad: float = 0.0) -> tuple[complex, ...]:
    """``N`` points ``beta_k = radius * exp(i (2 pi k / N + phase))`` on a circle (paper eq. 8).

    ``N = 2`` gives the real pair ``(+radius, -radius)`` (symmetric EP). Values that are
    mathematically real are returned with an exactly zero imaginary part, so a driver can
    tell real schedules (and conjugate pairs) apart exactly.
    """
    if n < 1:
        raise ValueError(f"a schedule needs at least one point, got N={n}")
    if not radius > 0:
        raise ValueError(f"|beta| must be positive, got {radius}")
    out = []
    for k in range(n):
        angle = 2 * math.pi * k / n + phase_rad
        re, im = radius * math.cos(angle), radius * math.sin(angle)
        # Snap exact symmetries: k = 0 and k = N/2 are real, k and N-k are conjugates.
        if phase_rad == 0.0:
            if 2 * k % n == 0:
                im = 0.0
            elif k > n / 2:
                mirror = out[n - k]
                re, im = mirror.real, -mirror.imag
        out.append(complex(re, im))
    return tuple(out)
