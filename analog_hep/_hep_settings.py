"""The hEP learning settings and their defaults: the one place they are written.

Three layers read them: the YAML spec (``spec.TrainingSpec`` validates the same fields and
takes its defaults from here), the command line (``analog-hep train``, one option per field)
and the controller (``hep.HepConfig`` is these settings plus what a run derives: its step
count, the circle diagnostic's constants). ``studies.TrainOptions`` is these settings plus
the run's own (batch, epochs, seed, dataset, driver, ...), and the run record stores them.

This module imports nothing from the package, so every layer can import it without an
import cycle (``spec`` sits below ``hep``; neither imports the other).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Literal

__all__ = [
    "LEGACY_DEFAULTS",
    "MIXED_PRECISION_FIELDS",
    "OPTIMIZER_FIELDS",
    "CircleReaction",
    "Guard",
    "HepSchedule",
    "HepSettings",
    "LrSchedule",
    "Method",
    "UpdatePath",
    "UpdateScheme",
    "hep_settings_fields",
]

Method = Literal["hep", "classic", "symmetric", "online"]
"""Estimator: hEP on a circle, classic one-sided EP, symmetric EP (N = 2), online hEP."""
LrSchedule = Literal["constant", "cosine"]
"""Learning-rate schedule over the run."""
UpdatePath = Literal["auto", "outer_product", "program"]
"""How updates reach the chip."""
CircleReaction = Literal["warn", "shrink", "off"]
"""What the controller does when the nudge circle probably encloses a singularity."""
HepSchedule = Literal["auto", "parallel", "sequential"]
"""How the hEP points are settled: all from the free state at once, or one after the other
around the circle, each from the previous point's state; ``auto`` chooses by the chip."""
Guard = Literal["drop", "keep_finite", "symmetric", "half_beta"]
"""What happens to a sample whose nudged points did not settle (docs/gradients.md)."""
UpdateScheme = Literal["direct", "mixed_precision", "tiki_taka"]
"""How the learning signal becomes device pulses (docs/devices.md, update schemes)."""

LEGACY_DEFAULTS: dict[str, object] = {"hep_schedule": "parallel", "guard": "drop"}
"""Settings added after runs were recorded whose value for such a run differs from today's
default: a record without the field ran with this value (``--resume`` compares with it)."""

OPTIMIZER_FIELDS = ("lr", "momentum", "schedule")
"""Settings that the YAML spec groups under ``training.optimizer``."""

MIXED_PRECISION_FIELDS: dict[str, str] = {
    "mp_threshold": "threshold",
    "mp_accumulator_bits": "accumulator_bits",
    "mp_max_pulses": "max_pulses",
    "mp_dw_min": "dw_min",
}
"""Settings that the YAML spec groups under ``training.mixed_precision`` (flat name: the
name in that block)."""


@dataclass(frozen=True)
class HepSettings:
    """The hEP learning settings, with their defaults (the digits circuit's measured ones).

    - ``method``: ``hep`` (``points`` on a circle of radius ``beta``), ``symmetric``
      (N = 2), ``classic`` (one real ``beta``; ``points`` repeated settles) or ``online``
      (the nudge rotates around the circle for ``online_periods`` periods of ``points``
      samples, each ``online_steps`` settle steps, without resetting the state).
    - ``points``: N nudge points; ``beta``: ``|beta|``, the circle's radius
      (dimensionless).
    - ``lr``, ``momentum``, ``schedule``: optax SGD (momentum 0: plain SGD, which lets the
      chip apply outer products); ``constant`` or ``cosine`` decay over the run.
    - ``residual_tol``: largest settle residual (activity units) of a state used for
      learning; 0.5 catches divergence and NaN, not a noisy chip's noise floor.
    - ``update``: ``auto`` (outer products when the chip has them and plain SGD is used,
      else programmed deltas), ``outer_product`` or ``program``.
    - ``fallback_fraction``: above this fraction of samples with unsettled complex points,
      a step is redone with real nudges (N = 2); below it those samples are dropped.
    - ``circle_check``: ``warn``, ``shrink`` ``|beta|`` or ``off`` (docs/gradients.md).
    - ``hep_schedule`` (``method: hep``): ``parallel`` (every point settles from the free
      state; all ``N x B`` rows in one batch), ``sequential`` (the points in order around
      the circle, each settled from the previous point's state, as the paper's code does
      under noise) or ``auto``: sequential on a chip that is noisy (``describe().extra
      ["noisy"]``; a chip that does not say is taken as noisy, as every real one is) and can
      start from the previous point, parallel otherwise. Measured in docs/gradients.md.
    - ``ramp_points`` (sequential only): points on the real axis between 0 and the first
      point of the circle, settled before it and left out of the estimate.
    - ``guard``: a sample whose nudged points did not settle (residual above
      ``residual_tol``) is ``drop`` ped, kept if its states are finite (``keep_finite``,
      the paper's code), or its estimate comes from a second settle of the batch with the
      real pair ``+-|beta|`` (``symmetric``) or the same circle at ``|beta| / 2``
      (``half_beta``). ``keep_finite`` is the default: dropping biases learning against the
      hard samples, on noisy and noiseless chips alike (docs/gradients.md). A state that is
      not finite never enters an update.
    - ``update_scheme``: ``direct`` (the learning signal goes to the chip as it is: outer
      products or programmed deltas), ``mixed_precision`` (a digital accumulator per weight
      on the controller's side collects the optimizer's updates and sends whole device
      steps, Nandakumar et al. 2020) or ``tiki_taka`` (the chip's own transfer between a
      fast and a slow array, needs a chip that has them: ``capabilities.update_schemes``).
      docs/devices.md, "Update schemes".
    - ``mp_threshold`` (mixed_precision): an accumulator entry sends pulses once
      ``|chi| >= mp_threshold * dw_min``; ``mp_accumulator_bits``: bits of the signed
      fixed-point accumulator (full scale ``(mp_max_pulses + 1) dw_min``; 0: float32);
      ``mp_max_pulses``: most pulses per weight and step (the rest stays in ``chi``);
      ``mp_dw_min``: one pulse's weight change (dimensionless; 0: as the chip describes it,
      ``describe().extra["dw_min"]``).
    """

    method: Method = "hep"
    points: int = 6
    beta: float = 0.4
    lr: float = 0.2
    momentum: float = 0.0
    schedule: LrSchedule = "constant"
    residual_tol: float = 0.5
    update: UpdatePath = "auto"
    online_periods: int = 3
    online_steps: int = 10
    fallback_fraction: float = 0.5
    circle_check: CircleReaction = "warn"
    hep_schedule: HepSchedule = "auto"
    ramp_points: int = 0
    guard: Guard = "keep_finite"
    update_scheme: UpdateScheme = "direct"
    mp_threshold: float = 1.0
    mp_accumulator_bits: int = 0
    mp_max_pulses: int = 31
    mp_dw_min: float = 0.0


def hep_settings_fields() -> tuple[str, ...]:
    """Names of the fields of :class:`HepSettings`, in order."""
    return tuple(f.name for f in fields(HepSettings))
