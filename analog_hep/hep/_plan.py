"""What the controller asks of a chip: its settings (:class:`HepConfig`) and the plan it
makes from them and the chip's capabilities (:func:`plan`)."""

from __future__ import annotations

from dataclasses import dataclass, replace

from .._hep_settings import HepSettings, Method
from ..drivers import ChipDescription, NudgeSchedule
from ..errors import UnsupportedCapability
from ._circle import CIRCLE_BIAS
from ._schedules import circle_betas

__all__ = ["HepConfig", "Method", "Plan", "plan", "with_beta"]


@dataclass(frozen=True)
class HepConfig(HepSettings):
    """The controller's settings: the hEP settings (:class:`analog_hep._hep_settings.
    HepSettings`, where their meaning and defaults are written: the YAML spec and the
    command line share them) and what a run derives or fixes:

    - ``total_steps``: optimizer steps of the run (the ``cosine`` schedule decays over
      them; required, >= 1, with ``cosine``).
    - The circle diagnostic (``analog_hep.hep._circle``; hEP and online with ``N >= 3``): a
      step is flagged when the batch ``rho = |c_{-1}| / |c_1|`` implies an aliasing bias
      ``rho^{N/(N-2)}`` above ``circle_bias`` (the circle probably encloses a singularity
      of ``s*(beta)``). ``circle_check``: ``warn`` (a note the first time; every step's
      figures go to the record), ``shrink`` (also halve ``|beta|`` for the next steps after
      a flagged step, down to ``circle_beta_floor``, default ``beta / 8``) or ``off`` (not
      computed). Warn is the default: shrinking trades the bias for noise (the reason for a
      finite ``|beta|``), and under neuron noise ``rho`` has a noise floor that would
      shrink ``|beta|`` for nothing.
    """

    total_steps: int = 0
    circle_bias: float = CIRCLE_BIAS
    circle_beta_floor: float | None = None


@dataclass(frozen=True)
class Plan:
    """What the controller will ask the chip for, and why it differs from the request."""

    method: Method
    points: int
    schedule: NudgeSchedule
    fallback: NudgeSchedule | None
    use_outer_product: bool
    messages: tuple[str, ...]
    sequential: bool = False
    ramp: int = 0
    guard: str = "keep_finite"
    """The guard (``HepSettings.guard``)."""
    rescue: NudgeSchedule | None = None
    """The second settle of the ``symmetric`` and ``half_beta`` guards (``None``: none)."""
    pulse_steps: dict[str, float] | None = None
    """``mixed_precision``: one pulse's weight change per crossbar (``None``: another
    scheme)."""
    max_pulses: int = 0
    """``mixed_precision``: most pulses per weight and step (the setting, at most what the
    chip applies in one call, ``describe().extra["pulse_cap"]``)."""

    @property
    def rescue_method(self) -> Method:
        """The estimator of the rescue settle's points."""
        return "symmetric" if self.guard == "symmetric" else "hep"


def _schedule(
    method: Method, points: int, beta: float, cfg: HepConfig, *, sequential: bool = False
) -> NudgeSchedule:
    if method == "hep" and sequential:
        circle = circle_betas(beta, points)
        ramp = tuple(
            complex(circle[0] * j / (cfg.ramp_points + 1)) for j in range(1, cfg.ramp_points + 1)
        )
        return NudgeSchedule(betas=ramp + circle, start="previous")
    if method == "classic":
        return NudgeSchedule(betas=(complex(beta),) * points)
    if method == "symmetric":
        return NudgeSchedule(betas=circle_betas(beta, 2))
    if method == "online":
        return NudgeSchedule(
            betas=circle_betas(beta, points) * cfg.online_periods,
            nudge_steps=cfg.online_steps,
            start="previous",
        )
    return NudgeSchedule(betas=circle_betas(beta, points))


def plan(desc: ChipDescription, cfg: HepConfig) -> Plan:
    """Choose schedules and the update path from the chip's capabilities."""
    caps = desc.capabilities
    messages: list[str] = []
    method, points = cfg.method, cfg.points
    if method in ("hep", "online") and points > 2 and not desc.holomorphic:
        # Without holomorphic dynamics the N-point estimate has no exactness to offer
        # (paper eq. 9 needs it): refused rather than quietly replaced.
        raise UnsupportedCapability(
            f"chip {desc.name!r} is not holomorphic (max pooling or a non-holomorphic "
            f"activation): {method} with N = {points} needs holomorphic dynamics; use N = 2 "
            "(--points 2 or --method symmetric: real nudges, the paper's non-holomorphic "
            "baseline) or a holomorphic chip (softmax pooling, a holomorphic activation)"
        )
    if method in ("hep", "online") and points > 2 and not caps.complex_nudges:
        messages.append(
            f"chip {desc.name!r} cannot settle at complex beta (no complex_nudges capability): "
            f"training with symmetric EP (real nudges +-{cfg.beta}) instead of {method} N={points}"
        )
        method, points = "symmetric", 2
    if method == "online" and not caps.previous_start:
        messages.append(
            "chip cannot settle from the previous point: online hEP needs it; training with "
            "parallel hEP points instead"
        )
        method = "hep"
    if method == "hep" and points < 2:
        raise ValueError("hEP needs at least 2 points (use --method classic for N = 1)")
    sequential = False
    # A chip that does not say whether it is noisy is taken as noisy, as every real one is.
    noisy = bool(desc.extra.get("noisy", True))
    guard = cfg.guard
    if method == "hep":
        if cfg.hep_schedule == "sequential" and not caps.previous_start:
            messages.append(
                "chip cannot settle from the previous point: the sequential hEP schedule needs "
                "it; settling every point from the free state instead"
            )
        sequential = caps.previous_start and (
            cfg.hep_schedule == "sequential" or (cfg.hep_schedule == "auto" and noisy)
        )
    if caps.beta_max is not None and cfg.beta > caps.beta_max:
        raise UnsupportedCapability(
            f"|beta| = {cfg.beta} exceeds what the chip can apply ({caps.beta_max})"
        )
    sched = _schedule(method, points, cfg.beta, cfg, sequential=sequential)
    fallback = None
    if method in ("hep", "online") and points > 2:
        fallback = _schedule("symmetric", 2, cfg.beta, cfg)
    ramp = cfg.ramp_points if sequential else 0
    steps = _scheme(desc, cfg)
    max_pulses = cfg.mp_max_pulses
    cap = desc.extra.get("pulse_cap")
    if steps is not None and cap is not None and max_pulses > int(cap):
        # Pulses beyond what one call applies would be cut by the chip and lost from the
        # accumulator: the excess stays in chi instead.
        messages.append(
            f"mixed_precision: max_pulses {max_pulses} is more than chip {desc.name!r} applies "
            f"in one update ({int(cap)}): sending at most {int(cap)} per weight and step"
        )
        max_pulses = int(cap)
    # The mixed-precision accumulator forms the dense update on the digital side anyway, and
    # sends whole pulses as outer products whatever the optimizer: momentum is fine there.
    plain_sgd = cfg.momentum == 0.0 or steps is not None
    if cfg.update == "outer_product":
        if not caps.outer_product_update:
            raise UnsupportedCapability("the chip has no parallel outer-product update")
        if not plain_sgd:
            raise UnsupportedCapability(
                "momentum makes the update a dense matrix, not a sum of outer products: use "
                "--update program or momentum 0"
            )
        outer = True
    elif cfg.update == "program":
        if not caps.program_delta:
            raise UnsupportedCapability("the chip cannot program per-device deltas")
        outer = False
    else:
        # A conv crossbar's outer-product request has a row per sample, position and point
        # (digits_cnn's first: 20 x 64 x 2; cifar_vgg5's: 128 x 1024 x 2 = 262,144 pulse
        # trains per step): accumulating digitally and programming once is the default there.
        conv = any(getattr(c, "geometry", None) is not None for c in desc.crossbars)
        outer = caps.outer_product_update and plain_sgd and not (conv and caps.program_delta)
        if not outer and not caps.program_delta:
            raise UnsupportedCapability(
                "the chip can neither apply outer products nor program deltas"
            )
    return Plan(
        method,
        points,
        sched,
        fallback,
        outer,
        tuple(messages),
        sequential=sequential,
        ramp=ramp,
        guard=guard,
        rescue=_rescue(method, points, cfg.beta, cfg, sequential, guard),
        pulse_steps=steps,
        max_pulses=max_pulses,
    )


def _scheme(desc: ChipDescription, cfg: HepConfig) -> dict[str, float] | None:
    """Check the update scheme against the chip; for ``mixed_precision`` return one pulse's
    weight change per crossbar (the setting, else the chip's ``extra["dw_min"]``)."""
    schemes = tuple(desc.capabilities.update_schemes)
    if cfg.update_scheme == "tiki_taka" and "tiki_taka" not in schemes:
        raise UnsupportedCapability(
            f"update_scheme tiki_taka needs a chip with a second (fast) array per crossbar: "
            f"chip {desc.name!r} offers {', '.join(schemes)} (give its crossbars a tiki_taka "
            "block, docs/devices.md)"
        )
    if cfg.update_scheme != "tiki_taka" and "direct" not in schemes:
        # The chip routes every update through its own scheme (a Tiki-Taka chip's fast
        # array): training as if the updates reached the weights would be wrong.
        raise UnsupportedCapability(
            f"update_scheme {cfg.update_scheme} needs updates that reach the weights "
            f"directly: chip {desc.name!r} applies them through {', '.join(schemes)} only "
            f"(set update_scheme: {schemes[0]})"
        )
    if cfg.update_scheme != "mixed_precision":
        return None
    if cfg.mp_dw_min > 0:
        return {c.name: float(cfg.mp_dw_min) for c in desc.crossbars}
    described = desc.extra.get("dw_min") or {}
    missing = [c.name for c in desc.crossbars if c.name not in described]
    if missing:
        raise UnsupportedCapability(
            f"update_scheme mixed_precision needs one pulse's weight change (dw_min) of "
            f"crossbar(s) {', '.join(missing)}: chip {desc.name!r} does not describe it "
            "(describe().extra['dw_min']; ideal devices have no pulses): give "
            "training.mixed_precision.dw_min (--mp-dw-min)"
        )
    return {c.name: float(described[c.name]) for c in desc.crossbars}


def _rescue(
    method: Method, points: int, beta: float, cfg: HepConfig, sequential: bool, guard: str
) -> NudgeSchedule | None:
    """The guard's second settle for samples whose points did not settle (hEP only)."""
    if method != "hep" or guard not in ("symmetric", "half_beta"):
        return None
    if guard == "symmetric":
        return _schedule("symmetric", 2, beta, cfg)
    return _schedule("hep", points, beta / 2, cfg, sequential=sequential)


def with_beta(p: Plan, cfg: HepConfig, beta: float) -> Plan:
    """The same plan on a circle of radius ``beta`` (the shrink reaction)."""
    fallback = None if p.fallback is None else _schedule("symmetric", 2, beta, cfg)
    return replace(
        p,
        schedule=_schedule(p.method, p.points, beta, cfg, sequential=p.sequential),
        fallback=fallback,
        rescue=_rescue(p.method, p.points, beta, cfg, p.sequential, p.guard),
    )
