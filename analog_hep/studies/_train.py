"""Training: epochs of hEP steps through a driver, evaluated and recorded in HDF5.

Determinism: the batch order of epoch ``e`` comes from ``(seed, e)``; the emulator's noise
from its own checkpointed call counter; the optimizer state is checkpointed. So a run
resumed from its record after epoch ``e`` continues exactly as if it had not stopped.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..data import Dataset, load_dataset
from ..drivers import Driver, open_driver
from ..errors import AnalogHepError, ConnectionLost, DriverTimeout, SpecError
from ..hep import Controller, HepConfig, StepReport, epochs_to_steps
from ..spec import Circuit, TrainingSpec
from ._overrides import with_overrides
from ._record import Record

__all__ = ["TrainOptions", "TrainResult", "train"]


@dataclass(frozen=True)
class TrainOptions:
    """A run's settings: the circuit's ``training`` section with command-line overrides."""

    method: str
    points: int
    beta: float
    batch: int
    epochs: int
    lr: float
    momentum: float
    schedule: str
    residual_tol: float
    update: str
    online_periods: int
    online_steps: int
    seed: int
    dataset: str
    driver: str
    max_train: int | None = None
    fallback_fraction: float = 0.5
    noise: float | None = None
    eval_batch: int = 250

    @classmethod
    def from_circuit(cls, circuit: Circuit, **overrides: Any) -> TrainOptions:
        t: TrainingSpec | None = circuit.spec.training
        given = {k: v for k, v in overrides.items() if v is not None}
        base: dict[str, Any] = {}
        if t is not None:
            base = dict(
                method=t.method,
                points=t.points,
                beta=t.beta,
                batch=t.batch,
                epochs=t.epochs,
                lr=t.optimizer.lr,
                momentum=t.optimizer.momentum,
                schedule=t.optimizer.schedule,
                residual_tol=t.residual_tol,
                update=t.update,
                online_periods=t.online_periods,
                online_steps=t.online_steps,
                fallback_fraction=t.fallback_fraction,
            )
        base.update(seed=circuit.spec.seed, dataset="digits", driver="emulator")
        base.update(given)
        missing = [
            f
            for f in cls.__dataclass_fields__
            if f not in base and f not in ("max_train", "noise", "eval_batch", "fallback_fraction")
        ]
        if missing:
            where = circuit.path or circuit.spec.name
            raise SpecError(
                f"{where}: training: the circuit has no training section and no "
                f"{', '.join('--' + m.replace('_', '-') for m in missing)} given"
            )
        return cls(**base)

    def hep_config(self, total_steps: int) -> HepConfig:
        return HepConfig(
            method=self.method,  # type: ignore[arg-type]
            points=self.points,
            beta=self.beta,
            lr=self.lr,
            momentum=self.momentum,
            schedule=self.schedule,  # type: ignore[arg-type]
            total_steps=total_steps,
            residual_tol=self.residual_tol,
            update=self.update,  # type: ignore[arg-type]
            online_periods=self.online_periods,
            online_steps=self.online_steps,
            fallback_fraction=self.fallback_fraction,
        )


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


def _driver_kind(arg: str) -> str:
    """``emulator:chip_seed=3`` -> ``emulator:chip_seed=3``; ``tcp://host:port?...`` -> ``tcp``."""
    return "tcp" if arg.startswith("tcp://") else arg


def _evaluate(ctrl: Controller, ds: Dataset, split: str, batch: int) -> tuple[float, float]:
    """Mean loss and accuracy over a split, in fixed-size batches (the last one padded, so
    one compiled shape serves every batch; never more than the chip's ``max_batch``)."""
    limit = ctrl.desc.capabilities.max_batch
    batch = min(batch, limit) if limit else batch
    x, y = ds.split(split)
    n = x.shape[0]
    loss = correct = 0.0
    for start in range(0, n, batch):
        xb, yb = x[start : start + batch], y[start : start + batch]
        m = xb.shape[0]
        if m < batch:
            xb = np.concatenate([xb, np.repeat(xb[-1:], batch - m, axis=0)])
            yb = np.concatenate([yb, np.repeat(yb[-1:], batch - m, axis=0)])
        onehot = ds.one_hot(yb)
        onehot[m:] = 0.0  # padded rows count neither as loss nor as correct
        l, c = ctrl.evaluate(xb, onehot)
        loss += l
        correct += c
    return loss / n, correct / n


def _subset(ds: Dataset, max_train: int | None) -> Dataset:
    if max_train is None or max_train >= ds.n_train:
        return ds
    import dataclasses

    return dataclasses.replace(
        ds,
        x_train=ds.x_train[:max_train],
        y_train=ds.y_train[:max_train],
        description=ds.description + f"; first {max_train} training samples",
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
    ds = _subset(load_dataset(opts.dataset), opts.max_train)
    spec = circuit.spec
    if ds.n_features != spec.layers[0] or ds.n_classes != spec.readout.classes:
        raise SpecError(
            f"dataset {opts.dataset!r} ({ds.n_features} features, {ds.n_classes} classes) does "
            f"not fit circuit {spec.name!r} ({spec.layers[0]} inputs, {spec.readout.classes} "
            "classes)"
        )
    meta = {
        "kind": "train",
        "circuit_text": circuit.text,
        "device_texts": dict(circuit.device_texts),
        "config": asdict(opts),
        "seed": opts.seed,
        "driver": opts.driver,
        "dataset": opts.dataset,
    }
    record: Record | None = None
    start_epoch = 0
    if out is not None:
        if resume and Path(out).exists():
            record = Record.open_existing(out)
            if record.attr("circuit_text") != circuit.text:
                raise SpecError(f"{out}: --resume with a different circuit than the record's")
            saved = json.loads(record.attr("config"))
            now = json.loads(json.dumps(asdict(opts)))
            # The chip may come back at another address (a restarted server): compare the
            # driver's kind, not its whole connection string.
            saved["driver"] = _driver_kind(saved.get("driver", ""))
            now["driver"] = _driver_kind(now["driver"])
            if saved != now:
                diff = {k: (saved.get(k), v) for k, v in now.items() if saved.get(k) != v}
                raise SpecError(f"{out}: --resume with different options than the record's: {diff}")
        else:
            record = Record.create(out, meta=meta)
    own_driver = driver is None
    if driver is None:
        driver = open_driver(opts.driver, circuit, seed=opts.seed)
    steps_per_epoch = math.floor(ds.n_train / opts.batch)
    if steps_per_epoch == 0:
        raise SpecError(f"--batch {opts.batch} exceeds the {ds.n_train} training samples")
    ctrl = Controller(driver, opts.hep_config(epochs_to_steps(opts.epochs, ds.n_train, opts.batch)))
    for m in ctrl.messages:
        log(f"note: {m}")
    if record is not None and resume:
        ck = record.latest_checkpoint()
        if ck is not None:
            epoch_done, parts = ck
            driver.load_state_dict(parts["driver"])
            ctrl.load_state_dict(parts["controller"])
            start_epoch = epoch_done + 1
            record.truncate("metrics", start_epoch)
            record.truncate("steps", start_epoch * steps_per_epoch)
            log(f"resuming {out} after epoch {epoch_done + 1}")
    history: dict[str, list[float]] = {
        k: list(map(float, v)) for k, v in (record.table("metrics") if record else {}).items()
    }
    totals = {"refused": 0, "dropped": 0, "fallback": 0}
    if record is not None:
        st = record.table("steps")
        if st:
            totals = {
                "refused": int(st["refused"].sum()),
                "dropped": int(st["dropped"].sum()),
                "fallback": int(st["fallback"].sum()),
            }
    try:
        for epoch in range(start_epoch, opts.epochs):
            t_epoch = time.perf_counter()
            batches = ds.batches("train", opts.batch, seed=opts.seed, epoch=epoch)
            rows: list[dict[str, float | int]] = []
            loss_sum = correct = seen = 0.0
            bar = None
            if progress:
                from tqdm import tqdm

                bar = tqdm(
                    total=steps_per_epoch, desc=f"epoch {epoch + 1}/{opts.epochs}", leave=False
                )
            for xb, yb in batches:
                rep: StepReport = ctrl.train_step(xb, ds.one_hot(yb))
                loss_sum += rep.loss_sum
                correct += rep.correct
                seen += rep.batch
                rows.append(
                    {
                        "loss": rep.loss_sum / rep.batch,
                        "used": rep.used,
                        "dropped": rep.dropped,
                        "fallback": int(rep.fallback),
                        "refused": int(rep.refused),
                        "pulses": sum(u.pulses for u in rep.updates),
                        "clipped_bound": sum(u.clipped_bound for u in rep.updates),
                        "clipped_request": sum(u.clipped_request for u in rep.updates),
                        "requested_norm": float(
                            np.sqrt(sum(u.requested_norm**2 for u in rep.updates))
                        ),
                        "realised_norm": float(
                            np.sqrt(sum(u.realised_norm**2 for u in rep.updates))
                        ),
                    }
                )
                totals["refused"] += int(rep.refused)
                totals["dropped"] += rep.dropped
                totals["fallback"] += int(rep.fallback)
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{loss_sum / seen:.3f}", acc=f"{correct / seen:.3f}")
            if bar is not None:
                bar.close()
            test_loss, test_acc = _evaluate(ctrl, ds, "test", opts.eval_batch)
            row = {
                "epoch": epoch + 1,
                "train_loss": loss_sum / seen,
                "train_accuracy": correct / seen,
                "test_loss": test_loss,
                "test_accuracy": test_acc,
                "seconds": time.perf_counter() - t_epoch,
            }
            for k, v in row.items():
                history.setdefault(k, []).append(float(v))
            if record is not None:
                record.extend("steps", rows)
                record.append("metrics", row)
                parts = {"controller": ctrl.state_dict()}
                if driver.describe().capabilities.checkpoint:
                    parts["driver"] = driver.state_dict()
                record.save_checkpoint(epoch, parts)
            log(
                f"epoch {epoch + 1}/{opts.epochs}: train loss {row['train_loss']:.4f} acc "
                f"{row['train_accuracy']:.4f} | test loss {test_loss:.4f} acc {test_acc:.4f} | "
                f"{row['seconds']:.1f} s"
            )
    except (ConnectionLost, DriverTimeout) as err:
        if record is not None:
            record.flush()
            record.close()
        raise type(err)(
            f"{err}; the record {out} holds every finished epoch: rerun with --resume once the "
            "chip is back"
        ) from None
    except AnalogHepError:
        if record is not None:
            record.close()
        raise
    if record is not None:
        record.save_weights(driver.read_weights())
        record.close()
    if own_driver:
        driver.close()
    last = {k: (v[-1] if v else float("nan")) for k, v in history.items()}
    return TrainResult(
        circuit=spec.name,
        method=ctrl.plan.method,
        epochs=int(last.get("epoch", 0)),
        train_accuracy=last.get("train_accuracy", float("nan")),
        train_loss=last.get("train_loss", float("nan")),
        test_accuracy=last.get("test_accuracy", float("nan")),
        test_loss=last.get("test_loss", float("nan")),
        dropped_updates=totals["refused"],
        dropped_samples=totals["dropped"],
        fallback_steps=totals["fallback"],
        seconds=time.perf_counter() - t_start,
        messages=list(ctrl.messages),
        out=None if out is None else str(out),
        history=history,
    )
