"""Drift after training: a recorded chip evaluated at times after its last programming.

``evaluate_drift(path, times_s)`` rebuilds the emulated chip of a run record (its circuit
and cards as recorded, its fabrication seed, the conductances of its last checkpoint), lets
every device drift to each time ``t`` under its card's power-law model, and evaluates the
test split twice: as the drifted array reads, and with global drift compensation.

Drift (per device, ``nu`` drawn at fabrication with the card's device-to-device spread)::

    G(t) = G(t0) (max(t, t0_s) / t0_s)^-nu

Global drift compensation (aihwkit ``GlobalDriftCompensation``,
``src/aihwkit/inference/compensation/drift.py``): right after programming the periphery
reads each crossbar with known inputs (the one-hot vectors ``e_j``, bias line included) and
keeps ``r0 = mean_ij |Y_ij(t0)|``; at time ``t`` it reads again, ``r(t) = mean_ij |Y_ij(t)|``,
and multiplies that crossbar's outputs by the scalar ``alpha = r0 / max(r(t), 1e-4)``.
Scaling every output of a crossbar is scaling its effective weights, so the compensated chip
is the drifted chip with that crossbar's read conductances multiplied by ``alpha`` (the
devices' own state stays as drifted).

Randomness: the chip (and every ``nu``) is the one the run fabricated; evaluation noise comes
from ``seed`` (default: the run's) and starts, at every time, where the run's last test
evaluation started, so with the run's seed the accuracy at ``t <= t0_s`` is the record's
final test accuracy, and the times differ by drift alone. Same seed, same result.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

import jax.numpy as jnp
import jax.random as jr
import numpy as np

from ...data import load_dataset
from ...drivers import parse_driver_arg
from ...emulator import Chip, EmulatorDriver, drift_chip, program_weights, reference_read
from ...errors import SpecError
from ...hep import Controller
from ...spec import Circuit, circuit_from_text
from ..sweeps._overrides import with_overrides
from ._record_read import RunData, read_run
from ._train import TrainOptions, _evaluate

__all__ = [
    "DEFAULT_TIMES_S",
    "DriftPoint",
    "DriftResult",
    "check_times_s",
    "compensation_alpha",
    "evaluate_drift",
    "human_time",
]

DEFAULT_TIMES_S: tuple[float, ...] = (1.0, 60.0, 3600.0, 86400.0, 2.6e6, 3.15e7)
"""1 s, 1 min, 1 h, 1 day, 1 month, 1 year (issue 15)."""

_ALPHA_FLOOR = 1e-4  # aihwkit's clamp of a readout (weight units)

_UNITS: tuple[tuple[float, str, str], ...] = (
    (365.25 * 86400.0, "year", "years"),
    (365.25 * 86400.0 / 12.0, "month", "months"),
    (86400.0, "day", "days"),
    (3600.0, "h", "h"),
    (60.0, "min", "min"),
    (1.0, "s", "s"),
)


def human_time(t_s: float) -> str:
    """``t_s`` seconds in the largest unit it reaches (a month is 1/12 of a 365.25-day year):
    ``3600 -> "1 h"``, ``2.6e6 -> "1 month"``, ``3.15e7 -> "1 year"``, ``0.5 -> "0.5 s"``;
    within 2 % of a whole number it is written as one."""
    for unit_s, one, many in _UNITS:
        if t_s >= 0.95 * unit_s or unit_s == 1.0:
            value = t_s / unit_s
            whole = round(value)
            if whole >= 1 and abs(value - whole) <= 0.02 * value:
                return f"{whole} {one if whole == 1 else many}"
            return f"{value:.3g} {many}"
    raise AssertionError("unreachable")  # pragma: no cover


def check_times_s(times_s: Sequence[float], *, name: str = "--times") -> tuple[float, ...]:
    """``times_s`` as floats; one line naming ``name`` unless each is a finite number > 0."""
    out = []
    for t in times_s:
        try:
            value = float(t)
        except (TypeError, ValueError):
            raise SpecError(f"{name}: expected times in seconds > 0, found {t!r}") from None
        if not (math.isfinite(value) and value > 0):
            raise SpecError(f"{name}: expected times in seconds > 0, found {t!r}")
        out.append(value)
    if not out:
        raise SpecError(f"{name}: expected at least one time in seconds")
    return tuple(out)


def compensation_alpha(ref_t0: Any, ref_t: Any) -> float:
    """The global drift compensation factor of one crossbar, ``mean|ref_t0| / mean|ref_t|``.

    **Arguments:** ``ref_t0``, ``ref_t`` the reference reads (any equal shapes, weight
    units) right after programming and at time ``t``; the later readout is clamped at
    ``1e-4`` as aihwkit does.

    **Returns:** ``alpha`` (dimensionless, > 0).
    """
    r0 = float(jnp.mean(jnp.abs(jnp.asarray(ref_t0))))
    r = float(jnp.mean(jnp.abs(jnp.asarray(ref_t))))
    return max(r0, _ALPHA_FLOOR) / max(r, _ALPHA_FLOOR)


@dataclass(frozen=True)
class DriftPoint:
    """The chip at one time ``t_s`` (seconds after its last programming).

    ``accuracy``/``loss``: test split as the drifted array reads; ``accuracy_compensated``/
    ``loss_compensated``: with global drift compensation; ``g_ratio``: mean of
    ``G(t)/G(t0)`` over every device whose ``G(t0) > 0`` (both devices of each pair, all
    crossbars); ``alpha``: crossbar -> compensation factor.
    """

    t_s: float
    accuracy: float
    loss: float
    accuracy_compensated: float
    loss_compensated: float
    g_ratio: float
    alpha: dict[str, float]

    @property
    def time(self) -> str:
        """``t_s`` in words (:func:`human_time`)."""
        return human_time(self.t_s)


@dataclass(frozen=True)
class DriftResult:
    """What :func:`evaluate_drift` found (what ``analog-hep drift --json`` prints).

    ``drift``: crossbar -> its card's ``{"card", "nu", "nu_dtod", "t0_s"}`` (``None`` for a
    card without a drift model); ``has_drift``: whether any crossbar drifts; ``note``: one
    line when none does; ``recorded_test_accuracy``: the record's test accuracy after the
    checkpoint's epoch; ``programmed``: the pair form the weights were programmed into
    before the clock started (``None``: the conductances as trained).
    """

    record: str
    circuit: str
    dataset: str
    checkpoint: str
    epoch: int
    seed: int
    recorded_test_accuracy: float
    drift: dict[str, dict[str, Any] | None]
    has_drift: bool
    note: str | None
    points: list[DriftPoint] = field(default_factory=list)
    programmed: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """Plain values (lists, dicts, floats), each point with its ``time`` in words."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "points"}
        out["points"] = [
            {"t_s": p.t_s, "time": p.time}
            | {f.name: getattr(p, f.name) for f in fields(p) if f.name != "t_s"}
            for p in self.points
        ]
        return out


def _circuit(run: RunData) -> Circuit:
    """The circuit and cards the run was trained on (as recorded), its noise override
    applied."""
    if not run.circuit_text.strip():
        raise SpecError(f"{run.path}: attribute 'circuit_text' is missing: not a training run")
    circuit = circuit_from_text(
        run.circuit_text, name=f"{run.path}: circuit_text", device_texts=run.device_texts
    )
    noise = run.config.get("noise")
    if noise is not None:
        import dataclasses

        circuit = dataclasses.replace(
            circuit, spec=with_overrides(circuit.spec, noise=float(noise))
        )
    return circuit


def _options(run: RunData) -> TrainOptions:
    """The run's options (only those this version knows; defaults for the others)."""
    known = {f.name for f in fields(TrainOptions)}
    try:
        return TrainOptions(**{k: v for k, v in run.config.items() if k in known})
    except (TypeError, ValueError) as err:
        raise SpecError(f"{run.path}: attribute 'config' is not a run's options ({err})") from None


def _driver_state(run: RunData) -> tuple[str, int, dict[str, np.ndarray]]:
    """``(checkpoint name, epoch, driver part)`` of the last complete checkpoint."""
    if not run.checkpoints:
        raise SpecError(f"{run.path}: no complete checkpoint (checkpoints/epoch_NNNNN)")
    last = run.checkpoints[-1]
    parts = run.checkpoint_state(last.name)
    if "driver" not in parts:
        raise SpecError(
            f"{run.path}: checkpoints/{last.name}: no 'driver' part (the chip's conductances); "
            "only runs on the emulator can be evaluated after drift"
        )
    return last.name, last.epoch, parts["driver"]


def _state_of(chip: Chip, base: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``base`` (a driver state) with the conductances of ``chip``."""
    state = dict(base)
    for n, xb in chip.crossbars.items():
        state[f"{n}/g_plus_S"] = np.asarray(xb.g_plus_S, np.float32)
        state[f"{n}/g_minus_S"] = np.asarray(xb.g_minus_S, np.float32)
        state[f"{n}/hidden_S"] = np.asarray(xb.hidden_S, np.float32)
    return state


def _compensated(chip: Chip, alpha: dict[str, float]) -> Chip:
    """``chip`` whose crossbar ``n`` reads ``alpha[n]`` times its conductances."""
    import dataclasses

    xbs = {
        n: dataclasses.replace(xb, g_plus_S=xb.g_plus_S * a, g_minus_S=xb.g_minus_S * a)
        for n, xb in chip.crossbars.items()
        for a in (jnp.float32(alpha[n]),)
    }
    return dataclasses.replace(chip, crossbars=xbs)


def _g_ratio(chip0: Chip, chip: Chip) -> float:
    """Mean ``G(t)/G(t0)`` over the visible conductances with ``G(t0) > 0``."""
    num = den = 0.0
    for n, xb0 in chip0.crossbars.items():
        xb = chip.crossbars[n]
        g0 = np.concatenate([np.ravel(xb0.g_plus_S), np.ravel(xb0.g_minus_S)])
        g = np.concatenate([np.ravel(xb.g_plus_S), np.ravel(xb.g_minus_S)])
        on = g0 > 0
        num += float(np.sum(g[on] / g0[on]))
        den += float(np.sum(on))
    return num / den if den else math.nan


def evaluate_drift(
    path: str | Path,
    times_s: Sequence[float],
    *,
    seed: int | None = None,
    dataset: str | None = None,
    program: Literal["one_sided", "balanced"] | None = None,
    log: Callable[[str], None] | None = None,
) -> DriftResult:
    """Evaluate the chip of run record ``path`` at ``times_s`` after its last programming.

    **Arguments:** ``times_s`` seconds since programming (each > 0); ``seed`` the
    evaluation's noise seed (default: the run's); ``dataset`` the data set whose test split
    is evaluated (default: the run's); ``program``: first program the trained weights once
    into fresh pairs of this form (:func:`analog_hep.emulator.program_weights`, its noise
    from ``seed``), as a chip is deployed; ``None``: the conductances as trained.

    **Returns:** a :class:`DriftResult` with one :class:`DriftPoint` per time, in order.

    **Raises:** :class:`~analog_hep.errors.SpecError` (one line naming the file or field)
    for a file that is not a run record, a record without a driver checkpoint or of another
    driver than the emulator, and times that are not numbers > 0.
    """
    times_s = check_times_s(times_s)
    if not Path(path).is_file():
        raise SpecError(f"{path}: no such file (a run record of analog-hep train --out)")
    run = read_run(path)
    checkpoint, epoch, state0 = _driver_state(run)
    opts = _options(run)
    name, options = parse_driver_arg(opts.driver)
    if name != "emulator":
        raise SpecError(
            f"{run.path}: the run's driver is {opts.driver!r}: drift is evaluated on the "
            "emulator's chip only (its fabrication seed and drift exponents)"
        )
    circuit = _circuit(run)
    seed = opts.seed if seed is None else int(seed)
    # The run's max_train: normalize=channel statistics are the training samples' it used.
    ds = load_dataset(dataset or opts.dataset, max_train=opts.max_train)
    spec = circuit.spec
    if ds.n_features != spec.layers[0] or ds.n_classes != spec.readout.classes:
        raise SpecError(
            f"--dataset {dataset or opts.dataset}: {ds.n_features} features, {ds.n_classes} "
            f"classes do not fit circuit {spec.name!r}"
        )
    driver = EmulatorDriver(circuit, seed=seed, options=options)
    try:
        driver.load_state_dict(state0)
        ctrl = Controller(driver, opts.hep_config(1))
        # Where the run's last test evaluation started its noise stream: the checkpoint is
        # written after it, one settle call per evaluation batch (as _evaluate batches).
        limit = ctrl.desc.capabilities.max_batch
        batch = min(opts.eval_batch, limit) if limit else opts.eval_batch
        calls = max(int(state0["calls"]) - math.ceil(ds.n_test / batch), 0)
        chip0 = driver.emulated_chip
        cards = dict(circuit.devices)
        if program is not None:
            chip0 = program_weights(
                chip0, cards, scheme=program, key=jr.fold_in(jr.PRNGKey(seed), 2**20)
            )
        drift = {
            n: None
            if c.drift is None
            else {
                "card": c.name,
                "nu": c.drift.nu,
                "nu_dtod": c.drift.nu_dtod,
                "t0_s": c.drift.t0_s,
            }
            for n, c in cards.items()
        }
        has_drift = any(v is not None for v in drift.values())
        note = None
        if not has_drift:
            names = sorted({c.name for c in cards.values()})
            note = (
                f"no drift model: card(s) {', '.join(names)} have no 'drift' section, so the "
                "conductances and the accuracy are the same at every time"
            )
            if log is not None:
                log(f"note: {note}")
        key = jr.PRNGKey(seed)
        ref0 = {
            n: reference_read(xb, cards[n], key=jr.fold_in(key, 0))
            for n, xb in chip0.crossbars.items()
        }

        def accuracy(chip: Chip) -> tuple[float, float]:
            driver.load_state_dict(_state_of(chip, state0) | {"calls": np.asarray(calls, np.int64)})
            loss, acc, _ = _evaluate(ctrl, ds, "test", opts.eval_batch)
            return acc, loss

        points: list[DriftPoint] = []
        constant: DriftPoint | None = None
        for i, t_s in enumerate(times_s):
            if not has_drift and constant is not None:
                points.append(
                    DriftPoint(
                        t_s,
                        **{
                            f.name: getattr(constant, f.name)
                            for f in fields(DriftPoint)
                            if f.name != "t_s"
                        },
                    )
                )
                continue
            chip = drift_chip(chip0, cards, t_s)
            alpha = {
                n: compensation_alpha(
                    ref0[n], reference_read(xb, cards[n], key=jr.fold_in(key, i + 1))
                )
                for n, xb in chip.crossbars.items()
            }
            acc, loss = accuracy(chip)
            acc_c, loss_c = accuracy(_compensated(chip, alpha))
            point = DriftPoint(t_s, acc, loss, acc_c, loss_c, _g_ratio(chip0, chip), alpha)
            constant = point
            points.append(point)
    finally:
        driver.close()
    metrics = run.metrics
    recorded = math.nan
    if "test_accuracy" in metrics and len(metrics["test_accuracy"]) >= epoch:
        recorded = float(metrics["test_accuracy"][epoch - 1])
    return DriftResult(
        record=str(run.path),
        circuit=spec.name,
        dataset=dataset or opts.dataset,
        checkpoint=checkpoint,
        epoch=epoch,
        seed=seed,
        recorded_test_accuracy=recorded,
        drift=drift,
        has_drift=has_drift,
        note=note,
        points=points,
        programmed=program,
    )
