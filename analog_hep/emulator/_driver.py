"""The in-process emulator driver: the emulated chip behind the driver contract.

It registers itself in the ``analog_hep.drivers`` entry-point group as ``emulator``, exactly
as a lab's chip driver would. Arrays stay JAX arrays (on the accelerator, when there is one)
between calls; each call is one compiled program over the whole batch and all nudge points.
Noise and pulse keys come from ``fold_in(PRNGKey(seed), call_counter)``; the counter is part
of the checkpointed state, so a resumed run draws the same noise as an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np

from ..drivers import (
    Capabilities,
    ChipDescription,
    CrossbarInfo,
    NudgeSchedule,
    Settled,
    UpdateReport,
)
from ..drivers.validate import (
    check_delta,
    check_inputs,
    check_outer_product,
    check_schedule,
    check_state,
)
from ..errors import OutOfRange, SpecError, UnsupportedCapability
from ..physics import (
    coincidence_step,
    normalised_scale_S,
    write_verify,
)
from ..spec import SEED_MAX, Circuit, check_fits
from ._chip import Chip, Crossbar, fabricate
from ._pairs import update_pair as _update_pair
from ._pairs import visible_after as _visible
from ._phases import NudgePlan, dac, free_phase, measure, nudge_phases, nudge_schedule
from ._settle import post_signals
from ._tiki_taka import tiki_taka_step

POST_KEY = 7001
"""``fold_in(phase key, POST_KEY)``: the reads behind the conv crossbars' post-synaptic
signals (a key no settle step uses: steps fold in ``0 .. steps``)."""

__all__ = ["EmulatorDriver"]


def _program_pair(card, devices, g_pair, visible, delta_w, g_unit_S, tolerance_S, max_pulses, key):
    k_prog, k_vis = jr.split(key)
    delta_S = 0.5 * delta_w * g_unit_S
    target = jnp.stack([g_pair[0] + delta_S, g_pair[1] - delta_S])
    g_new, rep = write_verify(
        card, devices, g_pair, target, tolerance_S=tolerance_S, max_pulses=max_pulses, key=k_prog
    )
    return g_new, _visible(card, g_pair, g_new, visible, k_vis), rep


@functools.lru_cache(maxsize=64)
def _schedule_values(
    betas: tuple[complex, ...], noisy: bool, start: str
) -> tuple[jax.Array, NudgePlan]:
    """A schedule's values on the device and its plan, kept for the schedules a run reuses
    (no host-to-device copy of the nudges per call)."""
    values, plan = nudge_schedule(betas, noisy=noisy, start=start)  # type: ignore[arg-type]
    return jnp.asarray(values), plan


@eqx.filter_jit
def _settle_schedule(
    chip: Chip,
    x: jax.Array,
    y: jax.Array,
    base_key: jax.Array,
    call: jax.Array,
    betas: jax.Array,
    plan: NudgePlan,
    *,
    free_steps: int,
    nudge_steps: int,
) -> Settled:
    """DAC, free phase, nudge schedule and ADC readout in one compiled call (no host round
    trip between the phases). Noise keys: ``fold_in(base_key, call)`` split in two.
    ``betas`` ``(K,)`` are data and ``plan`` their static structure (``nudge_schedule``): one
    compile per shape, whatever ``|beta|``."""
    k_free, k_nudge = jr.split(jr.fold_in(base_key, call))
    noisy = chip.noisy
    x = dac(chip, x)
    free = free_phase(chip, x, steps=free_steps, key=k_free if noisy else None)
    free_read = measure(chip, free)
    # Conv crossbars' post-synaptic signals, from the periphery's analog signals (a fresh
    # read each, like the logits); none for an MLP.
    free_post = post_signals(chip, free.states, key=jr.fold_in(k_free, POST_KEY))
    if plan.where:
        pts = nudge_phases(
            chip, free, y, betas, plan, steps=nudge_steps, key=k_nudge if noisy else None
        )
        pts_true = pts
        pts = measure(chip, pts)  # type: ignore[arg-type]
        betas_a, states, logits, residual = pts.betas, pts.states, pts.logits, pts.residual
        post = post_signals(chip, pts_true.states, key=jr.fold_in(k_nudge, POST_KEY))
    else:
        betas_a = jnp.zeros(0, jnp.complex64)
        states = tuple(jnp.zeros((0, *s.shape), s.dtype) for s in free.states)
        logits = None if free.logits is None else jnp.zeros((0, *free.logits.shape))
        residual = jnp.zeros((0, x.shape[0]))
        post = {n: jnp.zeros((0, *v.shape), v.dtype) for n, v in free_post.items()}
    return Settled(
        free_states=free_read.states,
        free_logits=free_read.logits,
        free_residual=free.residual,
        betas=betas_a,
        states=states,
        logits=logits,
        residual=residual,
        free_post=free_post or None,
        post=post or None,
    )


@eqx.filter_jit
def _outer_product_step(
    card, xb: Crossbar, cols, rows, lr, n_updates, base_key, call, mode, bit_length
):
    """Validate (finite factors), update, refresh and write-noise one crossbar in one compiled
    call; ``ok`` is False for non-finite factors (the caller then keeps the old chip)."""
    ok = jnp.all(jnp.isfinite(rows)) & jnp.all(jnp.isfinite(cols))
    if not xb.has_bias:
        cols = cols.at[:, -1].set(0.0)
    visible = jnp.stack([xb.g_plus_S, xb.g_minus_S])
    key = jr.fold_in(base_key, call)

    # Non-finite factors are zeroed (a NaN pulse count would never end a pulse loop); the
    # driver then discards the result, so no branch is needed here.
    cols, rows = jnp.where(ok, cols, 0.0), jnp.where(ok, rows, 0.0)
    hidden, vis, rep = _update_pair(
        card,
        xb.devices,
        xb.hidden_S,
        visible,
        cols,
        rows,
        lr,
        xb.g_unit_S,
        n_updates,
        mode,
        bit_length,
        key,
    )
    return hidden, vis[0], vis[1], rep, ok


@eqx.filter_jit
def _program_step(card, xb: Crossbar, delta_w, tolerance_S, max_pulses, base_key, call):
    """Validate (finite request), write-verify and write-noise one crossbar in one compiled
    call; returns the new conductances, the report, the requested and realised norms (weight
    units) and ``ok`` (False for a non-finite request: the caller keeps the old chip)."""
    ok = jnp.all(jnp.isfinite(delta_w))
    delta_w = jnp.where(ok, delta_w, 0.0)
    if not xb.has_bias:
        delta_w = delta_w.at[:, -1].set(0.0)
    visible = jnp.stack([xb.g_plus_S, xb.g_minus_S])
    hidden, vis, rep = _program_pair(
        card,
        xb.devices,
        xb.hidden_S,
        visible,
        delta_w,
        xb.g_unit_S,
        tolerance_S,
        max_pulses,
        jr.fold_in(base_key, call),
    )
    change = ((vis[0] - vis[1]) - (visible[0] - visible[1])) / xb.g_unit_S
    if not xb.has_bias:
        change = change.at[:, -1].set(0.0)
    return hidden, vis[0], vis[1], rep, (jnp.linalg.norm(delta_w), jnp.linalg.norm(change)), ok


DEFAULT_UNROLL = 1


def _int_option(
    options: dict[str, str], name: str, default: int, minimum: int, maximum: int | None = None
) -> int:
    if name not in options:
        return int(default)
    try:
        value = int(options[name])
    except ValueError:
        value = minimum - 1
    if value < minimum or (maximum is not None and value > maximum):
        upper = "" if maximum is None else f" and <= {maximum}"
        raise SpecError(
            f"--driver emulator: option {name}: expected an integer >= {minimum}{upper}, "
            f"found {options[name]!r}"
        )
    return value


class EmulatorDriver:
    """Drive an emulated chip in process.

    Open it with :meth:`open` (the entry-point factory) or construct it from a loaded
    circuit. ``options`` (from ``--driver emulator:KEY=VALUE,...``): ``chip_seed`` overrides
    the circuit's fabrication seed; ``program_max_pulses`` (default 200) is the pulse budget
    of write-verify programming; ``devices`` how many local JAX devices share the batch
    (default all); ``unroll`` settle steps per iteration of the compiled loop (default
    :data:`DEFAULT_UNROLL`; a speed setting only, results are the same).
    """

    name = "emulator"

    def __init__(self, circuit: Circuit, *, seed: int, options: dict[str, str] | None = None):
        options = dict(options or {})
        known = {"chip_seed", "program_max_pulses", "devices", "unroll"}
        unknown = set(options) - known
        if unknown:
            raise SpecError(
                f"--driver emulator: unknown option(s) {sorted(unknown)}; known: {sorted(known)}"
            )
        self.circuit = circuit
        self.seed = int(seed)
        self.chip_seed = _int_option(options, "chip_seed", circuit.spec.seed, 0, SEED_MAX)
        self.program_max_pulses = _int_option(options, "program_max_pulses", 200, 1)
        # The batch axis is sharded over all local JAX devices (GPUs, or CPU devices made with
        # XLA_FLAGS=--xla_force_host_platform_device_count=K); devices=1 keeps one device.
        n_dev = _int_option(options, "devices", len(jax.devices()), 1)
        if n_dev > len(jax.devices()):
            raise SpecError(
                f"--driver emulator: devices={n_dev}, but JAX sees {len(jax.devices())} device(s)"
            )
        unroll = _int_option(options, "unroll", DEFAULT_UNROLL, 1)
        self.mesh = None
        if n_dev > 1:
            self.mesh = jax.sharding.Mesh(np.asarray(jax.devices()[:n_dev]), ("batch",))
        # Every path that fabricates a chip (train, serve, sweeps, stability maps, the kit)
        # refuses one that cannot fit before allocating it; one sample at one point.
        check_fits(circuit.spec, batch=1, points=1, path=circuit.path, text=circuit.text)
        self.chip, self.clipped_at_fabrication = fabricate(
            circuit.spec, dict(circuit.devices), self.chip_seed, fast_devices=circuit.fast_devices
        )
        config = dataclasses.replace(self.chip.config, unroll=unroll)
        self.chip = dataclasses.replace(self.chip, config=config)
        self._calls = 0
        self._base_key = jr.PRNGKey(self.seed)
        self._updates: dict[str, int] = {n: 0 for n in self.chip.crossbars}
        self._x: jax.Array | None = None
        self._y: jax.Array | None = None
        self._closed = False
        self._desc = self.describe()  # what the shared validators check calls against

    @classmethod
    def open(
        cls, circuit: Circuit, *, seed: int, options: dict[str, str] | None = None
    ) -> EmulatorDriver:
        """Entry-point factory: ``analog_hep.drivers`` -> ``emulator``."""
        return cls(circuit, seed=seed, options=options)

    # -- description -------------------------------------------------------------------------

    def describe(self) -> ChipDescription:
        cfg = self.chip.config
        xbs = []
        for i, name in enumerate(cfg.crossbar_names):
            n_out, n_in = cfg.crossbar_shape(name)
            post = -1 if name == "readout" else i + 1
            pre = len(cfg.layers) - 1 if name == "readout" else i
            has_bias = self.chip.crossbars[name].has_bias
            geom = cfg.geometry(name)
            xbs.append(CrossbarInfo(name, n_out, n_in, has_bias, pre, post, geometry=geom))
        dyn = self.circuit.spec.dynamics
        # Max pooling is not holomorphic either: such a chip settles at real nudges only.
        holomorphic = cfg.holomorphic
        return ChipDescription(
            name=cfg.name,
            driver=self.name,
            layers=cfg.layers,
            classes=cfg.classes,
            loss=cfg.loss,  # type: ignore[arg-type]
            crossbars=tuple(xbs),
            capabilities=Capabilities(
                complex_nudges=holomorphic,
                previous_start=True,
                outer_product_update=True,
                program_delta=True,
                checkpoint=True,
                update_schemes=self._update_schemes(),
            ),
            free_steps=cfg.free_steps,
            nudge_steps=cfg.nudge_steps,
            dt_s=dyn.dt_s if dyn.mode == "continuous" else None,
            holomorphic=holomorphic,
            extra={
                "chip_seed": self.chip_seed,
                "noisy": self.chip.noisy,
                "dw_min": self._pulse_steps(),
                # Most pulses one device gets from one update call (the pulse trains' length).
                "pulse_cap": int(self.circuit.spec.periphery.bit_length),
                **self._tiki_taka_extra(),
            },
        )

    def _update_schemes(self) -> tuple[str, ...]:
        """``("tiki_taka",)`` when the crossbars have a fast array (the spec allows all or
        none): ``apply_outer_product`` then pulses ``A`` and transfers; else ``("direct",)``."""
        if any(xb.tiki_taka is not None for xb in self.chip.crossbars.values()):
            return ("tiki_taka",)
        return ("direct",)

    def _tiki_taka_extra(self) -> dict[str, Any]:
        """``{"tiki_taka": {crossbar: settings}}`` (plain JSON) for a Tiki-Taka chip: the
        crossbar's ``tiki_taka`` block as given, plus ``fast_card``, the name of ``A``'s card."""
        out = {}
        for name, xb in self.chip.crossbars.items():
            if xb.tiki_taka is not None:
                out[name] = {**xb.tiki_taka.spec.settings(), "fast_card": xb.tiki_taka.card.name}
        return {"tiki_taka": out} if out else {}

    def _pulse_steps(self) -> dict[str, float]:
        """One pulse's mean weight change per crossbar (the mixed-precision scheme's
        ``dw_min``); crossbars of ideal devices (exact updates) are left out. The devices'
        steps are drawn once at fabrication, so this is computed once."""
        if getattr(self, "_steps", None) is None:
            steps = {}
            for name, xb in self.chip.crossbars.items():
                step = coincidence_step(self.circuit.devices[name], xb.devices, xb.g_unit_S)
                if step is not None:
                    steps[name] = step
            self._steps = steps
        return dict(self._steps)

    # -- settling ----------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise UnsupportedCapability("this emulator driver is closed")

    def load_inputs(self, x: Any, y: Any | None) -> None:
        self._check_open()
        cfg = self.chip.config
        # Host inputs are checked on the host (no device round trip); device arrays on device.
        check_inputs(self._desc, x, y)
        self._x = jnp.asarray(x, jnp.float32)  # the DAC is applied inside the settle call
        batch = self._x.shape[0]
        y = jnp.zeros((batch, cfg.classes)) if y is None else y
        self._y = jnp.asarray(y, jnp.float32)
        if self.mesh is not None and batch % self.mesh.size == 0:
            rows = jax.sharding.NamedSharding(self.mesh, jax.sharding.PartitionSpec("batch"))
            self._x = jax.device_put(self._x, rows)
            self._y = jax.device_put(self._y, rows)

    def run_schedule(self, schedule: NudgeSchedule) -> Settled:
        self._check_open()
        if self._x is None or self._y is None:
            raise UnsupportedCapability("load_inputs must be called before run_schedule")
        cfg = self.chip.config
        check_schedule(self._desc, schedule)  # complex nudges need a holomorphic activation
        self._calls += 1
        betas, plan = _schedule_values(
            tuple(complex(b) for b in schedule.betas), self.chip.noisy, schedule.start
        )
        return _settle_schedule(
            self.chip,
            self._x,
            self._y,
            self._base_key,
            np.asarray(self._calls, np.int32),
            betas,
            plan,
            free_steps=schedule.free_steps or cfg.free_steps,
            nudge_steps=schedule.nudge_steps or cfg.nudge_steps,
        )

    # -- updates -----------------------------------------------------------------------------

    def _set_pair(
        self, name: str, hidden: jax.Array, g_plus_S: jax.Array, g_minus_S: jax.Array
    ) -> None:
        xb = self.chip.crossbars[name]
        new = dataclasses.replace(xb, g_plus_S=g_plus_S, g_minus_S=g_minus_S, hidden_S=hidden)
        self.chip = dataclasses.replace(self.chip, crossbars={**self.chip.crossbars, name: new})

    def apply_outer_product(self, name: str, rows: Any, cols: Any, *, lr: float) -> UpdateReport:
        self._check_open()
        # Finite factors are checked inside the compiled update (no copy to the host).
        check_outer_product(self._desc, name, rows, cols, lr, finite=False)
        xb = self.chip.crossbars[name]
        rows = jnp.asarray(rows, jnp.float32)
        cols = jnp.asarray(cols, jnp.float32)
        if xb.tiki_taka is not None:
            return self._apply_tiki_taka(name, rows, cols, lr)
        per = self.circuit.spec.periphery
        hidden, g_plus, g_minus, rep, ok = _outer_product_step(
            self.circuit.devices[name],
            xb,
            cols,
            rows,
            jnp.float32(lr),
            np.asarray(self._updates[name] + 1, np.int32),
            self._base_key,
            np.asarray(self._calls + 1, np.int32),
            per.update_mode,
            per.bit_length,
        )
        report = self._count_update(name, ok, rep)
        self._set_pair(name, hidden, g_plus, g_minus)
        return report

    def _count_update(self, name: str, ok: Any, rep: Any) -> UpdateReport:
        """The step's one transfer to the host: refuse non-finite factors (the chip is then
        left as it was), count the update, and report it."""
        ok, rep = jax.device_get((ok, rep))
        if not ok:
            raise OutOfRange(f"{name}: update factors must be finite (found NaN or inf)")
        self._calls += 1
        self._updates[name] += 1
        return UpdateReport(
            crossbar=name,
            pulses=int(rep.pulses_applied),
            clipped_bound=int(rep.n_clipped_bound),
            clipped_request=int(rep.n_clipped_request),
            requested_norm=float(rep.requested_norm),
            realised_norm=float(rep.realised_norm),
        )

    def _apply_tiki_taka(
        self, name: str, rows: jax.Array, cols: jax.Array, lr: float
    ) -> UpdateReport:
        """``apply_outer_product`` on a Tiki-Taka crossbar: pulses into ``A``, and a transfer
        into ``C`` on every ``transfer_every``-th update (``_tiki_taka.tiki_taka_step``)."""
        per = self.circuit.spec.periphery
        new, rep, ok = tiki_taka_step(
            self.circuit.devices[name],
            self.chip.crossbars[name],
            cols,
            rows,
            jnp.float32(lr),
            np.asarray(self._updates[name] + 1, np.int32),
            self._base_key,
            np.asarray(self._calls + 1, np.int32),
            per.update_mode,
            per.bit_length,
        )
        report = self._count_update(name, ok, rep)
        self.chip = dataclasses.replace(self.chip, crossbars={**self.chip.crossbars, name: new})
        return report

    def program_delta(self, name: str, delta_w: Any) -> UpdateReport:
        self._check_open()
        # A finite request is checked inside the compiled write-verify (no copy to the host).
        check_delta(self._desc, name, delta_w, finite=False)
        xb = self.chip.crossbars[name]
        delta_w = jnp.asarray(delta_w, jnp.float32)
        card = self.circuit.devices[name]
        tolerance_S = 0.5 * max(
            float(getattr(card.response, "dw_min", 0.0)) * normalised_scale_S(card),
            1e-6 * (card.conductance.g_max_S - card.conductance.g_min_S),
        )
        hidden, g_plus, g_minus, rep, norms, ok = _program_step(
            card,
            xb,
            delta_w,
            tolerance_S,
            self.program_max_pulses,
            self._base_key,
            np.asarray(self._calls + 1, np.int32),
        )
        ok, rep, (requested, realised) = jax.device_get((ok, rep, norms))
        if not ok:
            raise OutOfRange(f"{name}: delta_W must be finite (found NaN or inf)")
        self._calls += 1
        self._set_pair(name, hidden, g_plus, g_minus)
        return UpdateReport(
            crossbar=name,
            pulses=int(rep.total_pulses),
            clipped_bound=int(rep.n_failed),
            clipped_request=0,
            requested_norm=float(requested),
            realised_norm=float(realised),
        )

    # -- weights and state -------------------------------------------------------------------

    def read_weights(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        return {n: (np.asarray(w), np.asarray(b)) for n, (w, b) in self.chip.weights().items()}

    def state_dict(self) -> dict[str, np.ndarray]:
        state: dict[str, np.ndarray] = {"calls": np.asarray(self._calls, np.int64)}
        for n, xb in self.chip.crossbars.items():
            state[f"{n}/g_plus_S"] = np.asarray(xb.g_plus_S)
            state[f"{n}/g_minus_S"] = np.asarray(xb.g_minus_S)
            state[f"{n}/hidden_S"] = np.asarray(xb.hidden_S)
            state[f"{n}/updates"] = np.asarray(self._updates[n], np.int64)
            tt = xb.tiki_taka
            if tt is not None:
                state[f"{n}/tiki_taka/g_plus_S"] = np.asarray(tt.g_plus_S)
                state[f"{n}/tiki_taka/g_minus_S"] = np.asarray(tt.g_minus_S)
                state[f"{n}/tiki_taka/hidden_S"] = np.asarray(tt.hidden_S)
                state[f"{n}/tiki_taka/buffer"] = np.asarray(tt.buffer)
                state[f"{n}/tiki_taka/pointer"] = np.asarray(tt.pointer, np.int64)
                state[f"{n}/tiki_taka/column_reads"] = np.asarray(tt.column_reads, np.int64)
                state[f"{n}/tiki_taka/transfers"] = np.asarray(tt.transfers, np.int64)
        return state

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        check_state(self.state_dict(), state)  # keys, shapes and dtypes of this chip's own
        self._calls = int(state["calls"])
        for n in self.chip.crossbars:
            pair = jnp.stack(
                [jnp.asarray(state[f"{n}/g_plus_S"]), jnp.asarray(state[f"{n}/g_minus_S"])]
            )
            self._set_pair(n, jnp.asarray(state[f"{n}/hidden_S"]), pair[0], pair[1])
            self._updates[n] = int(state[f"{n}/updates"])
            if self.chip.crossbars[n].tiki_taka is not None:
                self._load_tiki_taka(n, state)

    def _load_tiki_taka(self, name: str, state: dict[str, np.ndarray]) -> None:
        """Crossbar ``name``'s fast array and transfer state from ``state``."""
        xb = self.chip.crossbars[name]
        assert xb.tiki_taka is not None

        def get(key: str, dtype: Any) -> jax.Array:
            return jnp.asarray(np.asarray(state[f"{name}/tiki_taka/{key}"]).astype(dtype))

        tt = dataclasses.replace(
            xb.tiki_taka,
            g_plus_S=get("g_plus_S", np.float32),
            g_minus_S=get("g_minus_S", np.float32),
            hidden_S=get("hidden_S", np.float32),
            buffer=get("buffer", np.float32),
            pointer=get("pointer", np.int32),
            column_reads=get("column_reads", np.int32),
            transfers=get("transfers", np.int32),
        )
        new = dataclasses.replace(xb, tiki_taka=tt)
        self.chip = dataclasses.replace(self.chip, crossbars={**self.chip.crossbars, name: new})

    def close(self) -> None:
        self._closed = True

    def __enter__(self) -> EmulatorDriver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def emulated_chip(self) -> Chip:
        """The emulator's chip pytree (emulator only; the controller never uses it)."""
        return self.chip
