"""Training: epochs of hEP steps through a driver, evaluated and recorded in HDF5.

Determinism: the batch order of epoch ``e`` comes from ``(seed, e)``, the augmentation of its
step ``k`` (datasets with ``?augment=...``) from ``(seed, e, k)``; the emulator's noise
from its own checkpointed call counter; the optimizer state is checkpointed. So a run
resumed from its record after epoch ``e`` continues exactly as if it had not stopped.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from ..._hep_settings import HepSettings
from ...data import Dataset, load_dataset
from ...drivers import Driver, open_driver
from ...errors import ConnectionLost, DriverTimeout, SpecError
from ...hep import Controller, HepConfig, StepReport, epochs_to_steps
from ...spec import DEFAULT_TRAINING, Circuit
from ..sweeps._overrides import with_overrides
from ._record import Record, ResumePoint
from ._resume import _reopen, _restore

__all__ = ["TrainOptions", "TrainResult", "loss_text", "train"]


@dataclass(frozen=True, kw_only=True)
class TrainOptions(HepSettings):
    """A run's settings: the hEP settings (:class:`analog_hep._hep_settings.HepSettings`,
    their defaults written there) and the run's own: ``batch`` samples per step, ``epochs``,
    ``seed`` (data order, noise), ``dataset`` and ``driver`` (as the command line names
    them), ``max_train`` (first N training samples), ``noise`` (neuron noise std override),
    ``eval_batch`` (evaluation batch). :meth:`from_circuit` takes them from the circuit's
    ``training`` section with command-line overrides; the run record stores them all (its
    ``config``)."""

    batch: int
    epochs: int
    seed: int
    dataset: str
    driver: str
    max_train: int | None = None
    noise: float | None = None
    eval_batch: int = 250

    @classmethod
    def from_circuit(cls, circuit: Circuit, **overrides: Any) -> TrainOptions:
        """The circuit's ``training`` section (else :data:`analog_hep.spec.DEFAULT_TRAINING`,
        docs/specs.md), the circuit's seed, the digits data set and the emulator, each
        replaced by an override that is not ``None``."""
        t = circuit.spec.training or DEFAULT_TRAINING
        base: dict[str, Any] = asdict(t.hep_settings())
        base.update(batch=t.batch, epochs=t.epochs)
        base.update(seed=circuit.spec.seed, dataset="digits", driver="emulator")
        base.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**base)

    def hep_config(self, total_steps: int) -> HepConfig:
        """The controller's settings for a run of ``total_steps`` optimizer steps."""
        shared = {f.name: getattr(self, f.name) for f in fields(HepSettings)}
        return HepConfig(**shared, total_steps=total_steps)


@dataclass
class TrainResult:
    """Final figures of a run (what ``--json`` prints)."""

    circuit: str
    method: str
    epochs: int
    train_accuracy: float
    train_loss: float
    test_accuracy: float
    test_loss: float
    dropped_updates: int
    dropped_samples: int
    fallback_steps: int
    seconds: float
    messages: list[str]
    out: str | None
    history: dict[str, list[float]]
    # Samples of the last epoch whose free-phase loss was NaN or inf (left out of the
    # losses above, which are NaN when no sample was finite); None: not recorded.
    train_nonfinite: int | None = None
    test_nonfinite: int | None = None
    # Wall seconds of every epoch of the run, summed over all its legs (``seconds`` is this
    # call's wall time: after a resume, only the last leg's, with start-up and compiles).
    epoch_seconds: float = float("nan")


def _mean(total: float, n: int | float) -> float:
    """``total / n``, NaN when ``n`` is 0 (a mean over nothing is not a number)."""
    return total / n if n > 0 else math.nan


def loss_text(loss: float, nonfinite: int | None, n: int | None = None) -> str:
    """``loss 0.1234``, with how many (of ``n``) samples had no finite loss when some did
    not; ``loss n/a (...)`` when none had one: a loss is never printed for nothing."""
    bad = nonfinite or 0
    of = f"{bad} of {n}" if n is not None else f"{bad}"
    if math.isnan(loss) or (n is not None and bad >= n):
        return f"loss n/a ({of} samples non-finite)"
    if bad:
        return f"loss {loss:.4f} ({of} samples non-finite, left out)"
    return f"loss {loss:.4f}"


def _evaluate(ctrl: Controller, ds: Dataset, split: str, batch: int) -> tuple[float, float, int]:
    """Mean loss over the samples whose loss is finite (NaN when none is), accuracy (a
    non-finite sample is never correct), and the number of non-finite samples of a split,
    in fixed-size batches (the last one padded, so one compiled shape serves every batch;
    never more than the chip's ``max_batch``)."""
    limit = ctrl.desc.capabilities.max_batch
    batch = min(batch, limit) if limit else batch
    x, y = ds.split(split)
    n = x.shape[0]
    loss = correct = 0.0
    nonfinite = 0
    for start in range(0, n, batch):
        xb, yb = x[start : start + batch], y[start : start + batch]
        m = xb.shape[0]
        if m < batch:
            xb = np.concatenate([xb, np.repeat(xb[-1:], batch - m, axis=0)])
            yb = np.concatenate([yb, np.repeat(yb[-1:], batch - m, axis=0)])
        onehot = ds.one_hot(yb)
        onehot[m:] = 0.0  # padded rows count neither as loss nor as correct
        l, c, bad = ctrl.evaluate(xb, onehot)
        loss += l
        correct += c
        nonfinite += bad
    return _mean(loss, n - nonfinite), correct / n, nonfinite


def _close(record: Record | None, driver: Driver | None, *, quietly: bool = False) -> None:
    """Close the record and the driver (either may be ``None``); ``quietly`` (on the way
    out of an exception) a failing close does not hide the exception that is leaving."""
    for close in (record.close if record else None, driver.close if driver else None):
        if close is None:
            continue
        if not quietly:
            close()
            continue
        with contextlib.suppress(Exception):  # the exception in flight is the one to show
            close()


def _step_row(rep: StepReport) -> dict[str, float | int]:
    """One row of the record's ``steps`` group."""
    return {
        "loss": _mean(rep.loss_sum, rep.batch - rep.nonfinite),
        "nonfinite": rep.nonfinite,
        "used": rep.used,
        "dropped": rep.dropped,
        "rescued": rep.rescued,
        "fallback": int(rep.fallback),
        "refused": int(rep.refused),
        "pulses": sum(u.pulses for u in rep.updates),
        "clipped_bound": sum(u.clipped_bound for u in rep.updates),
        "clipped_request": sum(u.clipped_request for u in rep.updates),
        "requested_norm": float(np.sqrt(sum(u.requested_norm**2 for u in rep.updates))),
        "realised_norm": float(np.sqrt(sum(u.realised_norm**2 for u in rep.updates))),
        # The circle diagnostic (docs/gradients.md): |beta| of the step, batch
        # |c_-1|/|c_1| (NaN: none), flagged step, samples above.
        "beta": rep.beta,
        "circle_ratio": rep.circle_ratio,
        "circle_alarm": int(rep.circle_alarm),
        "circle_flagged": rep.circle_flagged,
    }


def _epochs(
    ctrl: Controller,
    driver: Driver,
    ds: Dataset,
    opts: TrainOptions,
    record: Record | None,
    history: dict[str, list[float]],
    *,
    start: int,
    progress: bool,
    log: Callable[[str], None],
) -> None:
    """Train epochs ``start .. opts.epochs - 1`` (those a resumed record lacks); after each, its
    step rows, metrics row and checkpoint (the controller's state as it is, the chip's when
    it has the ``checkpoint`` capability) go to ``record``, its metrics to ``history``."""
    steps_per_epoch = math.floor(ds.n_train / opts.batch)
    for epoch in range(start, opts.epochs):
        t_epoch = time.perf_counter()
        batches = ds.batches("train", opts.batch, seed=opts.seed, epoch=epoch)
        rows: list[dict[str, float | int]] = []
        loss_sum = correct = seen = 0.0
        nonfinite = 0  # samples of the epoch whose free-phase loss is NaN or inf
        dropped = 0  # samples of the epoch the guard left out of the updates
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=steps_per_epoch, desc=f"epoch {epoch + 1}/{opts.epochs}", leave=False)
        for step, (xb, yb) in enumerate(batches):
            xb = ds.augment(xb, seed=opts.seed, epoch=epoch, step=step)  # x itself: none asked
            rep = ctrl.train_step(xb, ds.one_hot(yb))
            nonfinite += rep.nonfinite
            dropped += rep.dropped
            loss_sum += rep.loss_sum
            correct += rep.correct
            seen += rep.batch
            rows.append(_step_row(rep))
            for note in rep.notes:
                log(f"warning: {note}")
            if bar is not None:
                bar.update(1)
                train_loss = _mean(loss_sum, seen - nonfinite)
                bar.set_postfix(loss=f"{train_loss:.3f}", acc=f"{correct / seen:.3f}")
        if bar is not None:
            bar.close()
        test_loss, test_acc, test_nonfinite = _evaluate(ctrl, ds, "test", opts.eval_batch)
        row = {
            "epoch": epoch + 1,
            "train_loss": _mean(loss_sum, seen - nonfinite),
            "train_accuracy": correct / seen,
            "train_nonfinite": nonfinite,
            "test_loss": test_loss,
            "test_accuracy": test_acc,
            "test_nonfinite": test_nonfinite,
            "dropped": dropped,
            "seconds": time.perf_counter() - t_epoch,
        }
        for k, v in row.items():
            # a column new to a resumed record has no value for its earlier epochs
            history.setdefault(k, [math.nan] * epoch).append(float(v))
        if record is not None:
            record.extend("steps", rows)
            record.append("metrics", row)
            parts = {"controller": ctrl.state_dict()}
            desc = driver.describe()
            if desc.capabilities.checkpoint:
                parts["driver"] = driver.state_dict()
            # describe().extra (calibration) may be re-read by the driver: kept per epoch
            record.save_checkpoint(epoch, parts, extra=desc.extra)
        log(
            f"epoch {epoch + 1}/{opts.epochs}: train "
            f"{loss_text(row['train_loss'], nonfinite, int(seen))} acc "
            f"{row['train_accuracy']:.4f} dropped {dropped} | test "
            f"{loss_text(test_loss, test_nonfinite, ds.n_test)} acc {test_acc:.4f} | "
            f"{row['seconds']:.1f} s"
        )
        if seen and dropped >= 0.5 * seen:
            # Most often a noisy chip whose free phase cannot get below residual_tol: no
            # update learns from these samples, so the run would not train and say nothing.
            log(
                f"warning: epoch {epoch + 1}: {dropped} of {int(seen)} training samples were "
                f"left out of the updates (their settle residual stayed above residual_tol "
                f"{opts.residual_tol:g}); on a noisy chip raise --residual-tol above its noise "
                "floor (docs/gradients.md, 'hEP under noise')"
            )


def train(
    circuit: Circuit,
    opts: TrainOptions,
    *,
    out: str | Path | None = None,
    resume: bool = False,
    progress: bool = True,
    log: Callable[[str], None] = print,
    driver: Driver | None = None,
) -> TrainResult:
    """Train ``circuit``'s chip with ``opts``; record to ``out`` (HDF5) when given.

    With ``resume``, ``out`` must hold a record of the same circuit and options; training
    continues after its last complete epoch.
    """
    t_start = time.perf_counter()
    if opts.noise is not None:
        import dataclasses

        circuit = dataclasses.replace(circuit, spec=with_overrides(circuit.spec, noise=opts.noise))
    ds = load_dataset(opts.dataset, max_train=opts.max_train)
    spec = circuit.spec
    if ds.n_features != spec.layers[0] or ds.n_classes != spec.readout.classes:
        raise SpecError(
            f"dataset {opts.dataset!r} ({ds.n_features} features, {ds.n_classes} classes) does "
            f"not fit circuit {spec.name!r} ({spec.layers[0]} inputs, {spec.readout.classes} "
            "classes)"
        )
    (lo, hi), (dac_lo, dac_hi) = ds.input_bounds, spec.periphery.input_range
    if spec.periphery.dac_bits is not None and (lo < dac_lo or hi > dac_hi):
        log(
            f"warning: dataset {opts.dataset!r} gives inputs in [{lo:.4g}, {hi:.4g}], beyond the "
            f"input DAC's input_range [{dac_lo:g}, {dac_hi:g}]: the DAC clips them (docs/data.md)"
        )
    steps_per_epoch = math.floor(ds.n_train / opts.batch)
    if steps_per_epoch == 0:
        raise SpecError(f"--batch {opts.batch} exceeds the {ds.n_train} training samples")
    meta = {
        "kind": "train",
        "circuit_text": circuit.text,
        "device_texts": dict(circuit.device_texts),
        "config": asdict(opts),
        "seed": opts.seed,
        "driver": opts.driver,
        "dataset": opts.dataset,
    }
    # Every check that can refuse runs before the record is written to. On every way out
    # (a refusal, a lost chip, an interrupt, any exception) the record is closed, and so is
    # the driver when this function opened it.
    record: Record | None = None
    point: ResumePoint | None = None
    own_driver = driver is None
    try:
        if out is not None and resume and Path(out).exists():
            record, point = _reopen(Path(out), circuit, opts, steps_per_epoch)
        elif out is not None:
            Record.check_new(out)
        if driver is None:
            driver = open_driver(opts.driver, circuit, seed=opts.seed)
        ctrl = Controller(
            driver, opts.hep_config(epochs_to_steps(opts.epochs, ds.n_train, opts.batch))
        )
        if point is not None and record is not None:
            _restore(record, point, driver, ctrl, steps_per_epoch, opts.batch)
            if point.epochs:
                log(f"resuming {out} after epoch {point.epochs}")
        elif out is not None:
            record = Record.create(out, meta=meta | {"extra": ctrl.desc.extra})
        for m in ctrl.messages:
            log(f"note: {m}")
        history: dict[str, list[float]] = {
            k: list(map(float, v)) for k, v in (record.table("metrics") if record else {}).items()
        }
        try:
            start = 0 if point is None else point.epochs
            _epochs(
                ctrl, driver, ds, opts, record, history, start=start, progress=progress, log=log
            )
        except (ConnectionLost, DriverTimeout) as err:
            raise type(err)(
                f"{err}; the record {out} holds every finished epoch: rerun with --resume once "
                "the chip is back"
            ) from None
        if record is not None:
            record.save_weights(driver.read_weights())
    except BaseException:
        _close(record, driver if own_driver else None, quietly=True)
        raise
    _close(record, driver if own_driver else None)
    last = {k: (v[-1] if v else float("nan")) for k, v in history.items()}
    return TrainResult(
        circuit=spec.name,
        method=ctrl.plan.method,
        epochs=int(last.get("epoch", 0)),
        train_accuracy=last.get("train_accuracy", float("nan")),
        train_loss=last.get("train_loss", float("nan")),
        test_accuracy=last.get("test_accuracy", float("nan")),
        test_loss=last.get("test_loss", float("nan")),
        dropped_updates=ctrl.state.refused,
        dropped_samples=ctrl.state.dropped,
        fallback_steps=ctrl.state.fallback,
        seconds=time.perf_counter() - t_start,
        messages=list(ctrl.messages),
        out=None if out is None else str(out),
        history=history,
        train_nonfinite=_count(last.get("train_nonfinite")),
        test_nonfinite=_count(last.get("test_nonfinite")),
        epoch_seconds=float(sum(history.get("seconds", []))),
    )


def _count(v: float | None) -> int | None:
    """A recorded count as an int; ``None`` for one not recorded (absent or NaN)."""
    return None if v is None or math.isnan(v) else int(v)
