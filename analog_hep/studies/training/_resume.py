"""Resuming a run from its record: the checks that the record belongs to this circuit and
these options (:func:`_reopen`), and the check and restore of its last checkpoint against
the freshly opened chip and controller (:func:`_restore`). Each refuses with one line, and
nothing is written or restored, when a check fails."""

from __future__ import annotations

import json
from dataclasses import MISSING, asdict, fields
from pathlib import Path

from ..._hep_settings import LEGACY_DEFAULTS, HepSettings
from ...drivers import Driver
from ...errors import SpecError
from ...hep import Controller
from ...hep._state import COUNTERS, OPTIONAL_STATE_KEYS
from ...spec import Circuit
from ._record import Record, ResumePoint


def _driver_kind(arg: str) -> str:
    """``emulator:chip_seed=3`` -> ``emulator:chip_seed=3``; ``tcp://host:port?...`` -> ``tcp``."""
    return "tcp" if arg.startswith("tcp://") else arg


def _reopen(
    out: Path, circuit: Circuit, opts: HepSettings, steps_per_epoch: int
) -> tuple[Record, ResumePoint]:
    """Open ``out`` to resume it: same circuit and options (``opts``, the run's
    :class:`~._train.TrainOptions`), JSON attributes readable, rows and checkpoints in
    agreement. Refused with one line otherwise; nothing is written."""
    record = Record.open_existing(out)
    try:
        if record.attr("circuit_text") != circuit.text:
            raise SpecError(f"{out}: --resume with a different circuit than the record's")
        record.check_json_attrs()
        saved = record.json_attr("config")
        now = json.loads(json.dumps(asdict(opts)))
        # The chip may come back at another address (a restarted server): compare the
        # driver's kind, not its whole connection string.
        saved["driver"] = _driver_kind(str(saved.get("driver", "")))
        now["driver"] = _driver_kind(now["driver"])
        # Options added after a record was written (e.g. circle_check) ran at their defaults.
        # Those whose old behaviour is not today's default ran at their legacy value.
        for f in fields(opts):
            if f.name not in saved and f.default is not MISSING:
                saved[f.name] = LEGACY_DEFAULTS.get(f.name, f.default)
        if saved != now:
            diff = {k: (saved.get(k), v) for k, v in now.items() if saved.get(k) != v}
            raise SpecError(f"{out}: --resume with different options than the record's: {diff}")
        return record, record.resume_point(steps_per_epoch)
    except BaseException:
        record.close()
        raise


def _restore(
    record: Record,
    point: ResumePoint,
    driver: Driver,
    ctrl: Controller,
    steps_per_epoch: int,
    batch: int,
) -> None:
    """Check the checkpoint of ``point`` against the freshly opened chip's and controller's
    own state (keys, shapes, dtypes, finite values, counts within what its epochs allow),
    restore it, and drop the rows of the unfinished epoch. Nothing is restored or dropped
    when a check fails. The controller's state comes back whole, the run's totals of
    refused updates, dropped samples and fallbacks included; a checkpoint written before
    the state held them gets them from the step rows of its epochs."""
    n_steps = point.epochs * steps_per_epoch
    if point.checkpoint is not None:
        name = point.checkpoint
        parts = record.load_checkpoint(name)
        restores = driver.describe().capabilities.checkpoint
        if restores and "driver" not in parts:
            raise SpecError(
                f"{record.path}: checkpoints/{name}: no 'driver' part, but this chip restores "
                "its state from one; train again with another --out"
            )
        if restores:
            record.check_state(name, "driver", parts["driver"], driver.state_dict())
        saved = parts["controller"]
        record.check_state(
            name, "controller", saved, ctrl.state_dict(), optional=OPTIONAL_STATE_KEYS
        )
        limits = {"step_count": n_steps, "refused": n_steps, "fallback": n_steps}
        limits["dropped"] = n_steps * batch
        for key, most in limits.items():
            if key not in saved:
                continue
            value = int(saved[key])
            if not 0 <= value <= most:
                raise SpecError(
                    f"{record.path}: checkpoint after epoch {point.epochs}: checkpoints/{name}/"
                    f"controller/{key}: expected 0 to {most} (in {point.epochs} epochs of "
                    f"{steps_per_epoch} steps), found {value}"
                )
        if restores:
            driver.load_state_dict(parts["driver"])
        ctrl.load_state_dict(saved)
        missing = [k for k in COUNTERS if k not in saved]
        if missing:  # a record from before the controller's state held its totals
            rows = record.table("steps")
            ctrl.state = ctrl.state._replace(
                **{k: int(rows[k][:n_steps].sum()) if k in rows else 0 for k in missing}
            )
    record.truncate("metrics", point.epochs)
    record.truncate("steps", n_steps)
