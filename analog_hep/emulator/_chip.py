"""The emulated chip as a JAX pytree, and ``fabricate``: one draw of a circuit's chip.

A chip is a set of crossbars (differential device pairs, ``W = (G+ - G-) / g_unit``), per-
neuron gain/offset mismatch, and per-line read-direction gain mismatch of the periphery.
Everything random (initial weights, device-to-device spread, stuck faults, neuron and
periphery mismatch) is drawn here, once, from ``seed``: same seed, bitwise same chip.
A crossbar with a ``tiki_taka`` block also has a fast array ``A`` (:class:`TikiTaka`),
drawn from keys of its own, so the rest of the chip is drawn exactly as without it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass

import equinox as eqx
import jax.numpy as jnp
import jax.random as jr
import numpy as np
from jaxtyping import Array, Float, Int, PRNGKeyArray

from .._geometry import ConvGeometry
from ..physics import (
    DeviceArray,
    draw_devices,
    is_holomorphic,
    program_conductance,
    visible_conductance,
    write_noise_std_S,
)
from ..spec import CircuitSpec, DeviceCard, InitSpec, MappingSpec, TikiTakaSpec

__all__ = ["Chip", "ChipConfig", "Crossbar", "TikiTaka", "fabricate", "initial_weights"]

FAST_KEY = 3000
"""``fold_in(PRNGKey(seed), FAST_KEY + i)``: the draws of crossbar ``i``'s fast array (the
other draws use 1000 + i and 2000 + l, so adding Tiki-Taka changes none of them)."""


@dataclass(frozen=True)
class ChipConfig:
    """Static description of a chip (hashable: part of the compiled program's identity).

    Sizes are neuron counts; ``rate`` is ``dt / tau`` (1 for discrete dynamics);
    ``neuron_noise``/``read_noise`` say whether those noises are drawn at all (their stds
    are array leaves of :class:`Chip`, so chips of different noise levels can be vmapped).
    ``unroll``: settle steps per iteration of the compiled loop (how the emulator computes,
    not what: results are the same; docs/performance.md says when it pays).
    ``geometries``: per crossbar, its :class:`~analog_hep._geometry.ConvGeometry` or
    ``None`` (dense); empty for an MLP.
    """

    name: str
    layers: tuple[int, ...]
    classes: int
    loss: str
    activation: str
    activation_params: tuple[tuple[str, float], ...]
    neuron_noise: bool
    read_noise: bool
    rate: float
    free_steps: int
    nudge_steps: int
    dac_bits: int | None
    input_range: tuple[float, float]
    adc_bits: int | None
    activity_range: tuple[float, float]
    crossbar_names: tuple[str, ...]
    unroll: int = 1
    geometries: tuple[ConvGeometry | None, ...] = ()

    @classmethod
    def from_spec(cls, spec: CircuitSpec) -> ChipConfig:
        act = spec.neuron.activation
        params = tuple(
            (k, float(getattr(act, k))) for k in ("a", "b") if getattr(act, k) is not None
        )
        free, nudge = spec.dynamics.steps
        p = spec.periphery
        return cls(
            name=spec.name,
            layers=tuple(spec.layers),
            classes=spec.readout.classes,
            loss=spec.readout.loss,
            activation=act.name,
            activation_params=params,
            neuron_noise=spec.neuron.noise_std > 0,
            read_noise=p.read_noise_std > 0,
            rate=float(spec.dynamics.rate),
            free_steps=free,
            nudge_steps=nudge,
            dac_bits=p.dac_bits,
            input_range=tuple(map(float, p.input_range)),  # type: ignore[arg-type]
            adc_bits=p.adc_bits,
            activity_range=tuple(map(float, p.activity_range)),  # type: ignore[arg-type]
            crossbar_names=spec.crossbar_names,
            geometries=spec.geometries if spec.blocks is not None else (),
        )

    @property
    def holomorphic(self) -> bool:
        """Whether the dynamics are holomorphic: a holomorphic activation and no max
        pooling (hEP with N > 2 is exact only then)."""
        return is_holomorphic(self.activation) and all(
            g is None or g.holomorphic for g in self.geometries
        )

    def geometry(self, name: str) -> ConvGeometry | None:
        """The conv geometry of crossbar ``name``, ``None`` for a dense one."""
        if not self.geometries:
            return None
        return self.geometries[self.crossbar_names.index(name)]

    def crossbar_shape(self, name: str) -> tuple[int, int]:
        """``(n_out, n_in)`` of a crossbar (without its bias column); ``(C_out, C_in k k)``
        for a conv crossbar."""
        g = self.geometry(name)
        if g is not None:
            return g.channels, g.n_in
        if name == "readout":
            return self.classes, self.layers[-1]
        i = int(name[1:])
        return self.layers[i + 1], self.layers[i]


class TikiTaka(eqx.Module):
    """The fast array ``A`` of a Tiki-Taka crossbar and its transfer state (docs/devices.md,
    "Tiki-Taka").

    **Fields:**

    - ``g_plus_S``, ``g_minus_S``: ``Float[Array, "n_out n_in+1"]`` ``A``'s visible
      conductances (S); ``hidden_S``: ``(2, n_out, n_in+1)`` its persistent ones;
      ``devices``: its :class:`DeviceArray` ``(2, n_out, n_in+1)``.
    - ``buffer``: ``Float[Array, "n_out n_in+1"]`` the digital buffer ``H`` (weight units of
      ``C``).
    - ``pointer``: int32 scalar, the next column a transfer reads.
    - ``column_reads``: ``Int[Array, "n_in+1"]`` reads of each column so far (the chopper
      sign of column ``j`` is ``(-1)^floor(column_reads[j] / chopper_period)``).
    - ``transfers``: int32 scalar, transfers done.
    - ``g_unit_S`` (static): ``A``'s siemens per weight unit, ``(g_max_S - g_min_S) / w_max``
      of its card and the crossbar's mapping; ``read_noise_rel`` (static): its card's
      per-read relative noise, seen by settles when ``gamma > 0``; ``card`` (static): ``A``'s
      device card; ``spec`` (static): the crossbar's :class:`TikiTakaSpec`.
    """

    g_plus_S: Float[Array, "n_out n_in1"]
    g_minus_S: Float[Array, "n_out n_in1"]
    hidden_S: Float[Array, "2 n_out n_in1"]
    devices: DeviceArray
    buffer: Float[Array, "n_out n_in1"]
    pointer: Int[Array, ""]
    column_reads: Int[Array, " n_in1"]
    transfers: Int[Array, ""]
    g_unit_S: float = eqx.field(static=True)
    read_noise_rel: float = eqx.field(static=True)
    card: DeviceCard = eqx.field(static=True)
    spec: TikiTakaSpec = eqx.field(static=True)

    def weights_full(self) -> Float[Array, "n_out n_in1"]:
        """``W_A = (A+ - A-) / g_unit_A`` (dimensionless), bias column included."""
        return (self.g_plus_S - self.g_minus_S) / self.g_unit_S


class Crossbar(eqx.Module):
    """One crossbar of differential device pairs, bias as an extra column driven at 1.

    **Fields:**

    - ``g_plus_S``, ``g_minus_S``: ``Float[Array, "n_out n_in+1"]`` conductances (S) as the
      array reads them (the *visible* conductances: hidden state plus write noise, re-drawn
      whenever a device is written); the last column is the bias row driven at 1.
    - ``hidden_S``: ``Float[Array, "2 n_out n_in+1"]`` the persistent conductances of the
      ``G+``/``G-`` devices that pulses move (equal to the visible ones without write noise).
    - ``devices``: :class:`DeviceArray` with shape ``(2, n_out, n_in+1)`` (``G+``, ``G-``).
    - ``forward_gain``: ``(n_out,)`` gain of each output line when read forward (``W s``).
    - ``transpose_gain``: ``(n_in,)`` gain of each input line when read transposed (``W^T s``).
    - ``g_unit_S``: siemens per weight unit (static); ``has_bias`` (static);
      ``read_noise_rel``: per-read relative conductance noise of the devices (static).
    - ``tiki_taka``: the fast array ``A`` and transfer state of a Tiki-Taka crossbar
      (:class:`TikiTaka`), else ``None``; the fields above are then the slow array ``C``.
    """

    g_plus_S: Float[Array, "n_out n_in1"]
    g_minus_S: Float[Array, "n_out n_in1"]
    hidden_S: Float[Array, "2 n_out n_in1"]
    devices: DeviceArray
    forward_gain: Float[Array, " n_out"]
    transpose_gain: Float[Array, " n_in"]
    g_unit_S: float = eqx.field(static=True)
    has_bias: bool = eqx.field(static=True)
    read_noise_rel: float = eqx.field(static=True)
    tiki_taka: TikiTaka | None = None

    def weights_full(self) -> Float[Array, "n_out n_in1"]:
        """Effective weights, bias column included (dimensionless): ``(G+ - G-) / g_unit``,
        plus ``gamma W_A`` for a Tiki-Taka crossbar with ``gamma > 0``."""
        w = (self.g_plus_S - self.g_minus_S) / self.g_unit_S
        tt = self.tiki_taka
        if tt is not None and tt.spec.gamma != 0.0:  # gamma = 0 reads C bitwise
            w = w + jnp.float32(tt.spec.gamma) * tt.weights_full()
        return w

    def weights(self) -> tuple[Float[Array, "n_out n_in"], Float[Array, " n_out"]]:
        """Effective weights ``(W, b) = (G+ - G-) / g_unit`` (dimensionless); for a Tiki-Taka
        crossbar ``W = C + gamma A``."""
        w = self.weights_full()
        b = w[:, -1] if self.has_bias else jnp.zeros(w.shape[0], w.dtype)
        return w[:, :-1], b


class Chip(eqx.Module):
    """A fabricated chip: crossbars by name, neuron mismatch per neuron layer, config.

    ``neuron_gain[l]``, ``neuron_offset[l]``: ``(layers[l+1],)`` for neuron layer ``l+1``
    (``s = sigma(gain * u + offset)``); ``noise_std``: neuron noise std per settle step on
    the pre-activation; ``read_noise_std``: additive periphery noise per crossbar read.
    """

    crossbars: dict[str, Crossbar]
    neuron_gain: tuple[Float[Array, " n"], ...]
    neuron_offset: tuple[Float[Array, " n"], ...]
    noise_std: Float[Array, ""]
    read_noise_std: Float[Array, ""]
    config: ChipConfig = eqx.field(static=True)

    def weights(self) -> dict[str, tuple[Array, Array]]:
        """Effective ``{name: (W, b)}`` of every crossbar."""
        return {name: xb.weights() for name, xb in self.crossbars.items()}

    def without_noise(self) -> Chip:
        """The same chip (same devices and mismatch) with neuron and read noise switched off:
        the chip whose fixed point defines the ground-truth gradient."""
        cfg = dataclasses.replace(self.config, neuron_noise=False, read_noise=False)
        xbs = {
            n: dataclasses.replace(
                x,
                read_noise_rel=0.0,
                tiki_taka=None
                if x.tiki_taka is None
                else dataclasses.replace(x.tiki_taka, read_noise_rel=0.0),
            )
            for n, x in self.crossbars.items()
        }
        zero = jnp.zeros((), jnp.float32)
        return dataclasses.replace(
            self, crossbars=xbs, config=cfg, noise_std=zero, read_noise_std=zero
        )

    @property
    def noisy(self) -> bool:
        """Whether settling draws noise (neuron noise, periphery or device read noise)."""
        dev = any(x.read_noise_rel > 0 or _fast_read_noise(x) for x in self.crossbars.values())
        return self.config.neuron_noise or self.config.read_noise or dev


def _fast_read_noise(xb: Crossbar) -> bool:
    """Whether settles see the read noise of a Tiki-Taka crossbar's fast array."""
    tt = xb.tiki_taka
    return tt is not None and tt.spec.gamma > 0 and tt.read_noise_rel > 0


def initial_weights(
    init: InitSpec, shape: tuple[int, int], *, key: PRNGKeyArray
) -> tuple[Float[Array, "n_out n_in"], Float[Array, " n_out"]]:
    """Draw initial ``(W, b)`` of a crossbar of ``shape = (n_out, n_in)`` from ``init``."""
    n_out, n_in = shape
    kw, kb = jr.split(key)
    if init.scheme in ("normal", "fan_in_normal"):
        std = init.std if init.scheme == "normal" else init.gain / np.sqrt(n_in)
        w = std * jr.normal(kw, shape, dtype=jnp.float32)
        b = std * jr.normal(kb, (n_out,), dtype=jnp.float32)
    else:
        bound = init.bound if init.scheme == "uniform" else init.gain / np.sqrt(n_in)
        w = jr.uniform(kw, shape, minval=-bound, maxval=bound, dtype=jnp.float32)
        b = jr.uniform(kb, (n_out,), minval=-bound, maxval=bound, dtype=jnp.float32)
    if init.bias == "zero":
        b = jnp.zeros_like(b)
    return w.astype(jnp.float32), b.astype(jnp.float32)


def _target_pair_S(
    w: Float[Array, "n_out n_in1"], mapping: MappingSpec, card: DeviceCard
) -> tuple[Array, Array, float, Array]:
    """Target ``(G+, G-)`` for weights ``w``, ``g_unit_S`` and how many weights were clipped."""
    g_min_S, g_max_S = card.conductance.g_min_S, card.conductance.g_max_S
    g_unit_S = (g_max_S - g_min_S) / mapping.w_max
    n_clipped = jnp.sum(jnp.abs(w) > mapping.w_max)
    w = jnp.clip(w, -mapping.w_max, mapping.w_max)
    if mapping.scheme == "one_sided":
        g_plus = g_min_S + jnp.maximum(w, 0.0) * g_unit_S
        g_minus = g_min_S + jnp.maximum(-w, 0.0) * g_unit_S
    else:
        mid = 0.5 * (g_min_S + g_max_S)
        g_plus = mid + 0.5 * w * g_unit_S
        g_minus = mid - 0.5 * w * g_unit_S
    return g_plus, g_minus, g_unit_S, n_clipped


def _mismatch(key: PRNGKeyArray, n: int, rel: float) -> Float[Array, " n"]:
    return (
        (1.0 + rel * jr.normal(key, (n,), dtype=jnp.float32)).astype(jnp.float32)
        if rel > 0
        else jnp.ones(n, jnp.float32)
    )


@eqx.filter_jit
def _draw_crossbar(
    init: InitSpec,
    mapping: MappingSpec,
    card: DeviceCard,
    bias: bool,
    shape: tuple[int, int],
    key: PRNGKeyArray,
) -> tuple[Array, Array, DeviceArray, Array]:
    """Initial weights, device draws and programming of one crossbar, in one compiled call
    (eager, these are ~70 small ops that each compile: 10 s on a 2-core CPU)."""
    # The same key split as the chip's other per-crossbar draws (see fabricate).
    k_init, k_dev, k_prog, _, _ = jr.split(key, 5)
    k_prog, k_vis = jr.split(k_prog)
    w, b = initial_weights(init, shape, key=k_init)
    if not bias:
        b = jnp.zeros_like(b)
    wb = jnp.concatenate([w, b[:, None]], axis=1)
    g_plus_t, g_minus_t, _, n_clipped = _target_pair_S(wb, mapping, card)
    dev = draw_devices(card, (2, *wb.shape), key=k_dev)
    hidden = program_conductance(card, dev, jnp.stack([g_plus_t, g_minus_t]), key=k_prog)
    visible = visible_conductance(card, hidden, key=k_vis) if write_noise_std_S(card) else hidden
    return hidden, visible, dev, n_clipped


@eqx.filter_jit
def _draw_fast(
    mapping: MappingSpec, card: DeviceCard, shape: tuple[int, int], key: PRNGKeyArray
) -> tuple[Array, Array, DeviceArray]:
    """Device draws and programming of a fast array ``A`` at zero weight, in one compiled
    call (hidden, visible conductances and devices)."""
    k_dev, k_prog, k_vis = jr.split(key, 3)
    zero = jnp.zeros((shape[0], shape[1] + 1), jnp.float32)
    g_plus_t, g_minus_t, _, _ = _target_pair_S(zero, mapping, card)
    dev = draw_devices(card, (2, *zero.shape), key=k_dev)
    hidden = program_conductance(card, dev, jnp.stack([g_plus_t, g_minus_t]), key=k_prog)
    visible = visible_conductance(card, hidden, key=k_vis) if write_noise_std_S(card) else hidden
    return hidden, visible, dev


def _fast_array(
    name: str,
    tt: TikiTakaSpec,
    mapping: MappingSpec,
    card: DeviceCard,
    fast_devices: Mapping[str, DeviceCard] | None,
    shape: tuple[int, int],
    key: PRNGKeyArray,
) -> TikiTaka:
    """The fast array of crossbar ``name`` at zero weight, with an empty buffer."""
    fast = None if fast_devices is None else fast_devices.get(name)
    if fast is None:
        if tt.fast_device is not None:
            raise ValueError(
                f"crossbar {name!r} has tiki_taka.fast_device {tt.fast_device!r}: pass its card "
                "as fabricate(..., fast_devices=circuit.fast_devices)"
            )
        fast = card
    hidden, visible, dev = _draw_fast(mapping, fast, shape, key)
    n_in1 = shape[1] + 1
    return TikiTaka(
        g_plus_S=visible[0],
        g_minus_S=visible[1],
        hidden_S=hidden,
        devices=dev,
        buffer=jnp.zeros((shape[0], n_in1), jnp.float32),
        pointer=jnp.zeros((), jnp.int32),
        column_reads=jnp.zeros(n_in1, jnp.int32),
        transfers=jnp.zeros((), jnp.int32),
        g_unit_S=float((fast.conductance.g_max_S - fast.conductance.g_min_S) / mapping.w_max),
        read_noise_rel=float(fast.read_noise_rel),
        card=fast,
        spec=tt,
    )


def fabricate(
    spec: CircuitSpec,
    devices: Mapping[str, DeviceCard],
    seed: int,
    *,
    fast_devices: Mapping[str, DeviceCard] | None = None,
) -> tuple[Chip, dict[str, int]]:
    """Sample one chip of a circuit.

    **Arguments:**

    - ``spec``: the validated circuit.
    - ``devices``: the device card of every crossbar, by crossbar name.
    - ``seed``: the only source of randomness (a non-negative integer).
    - ``fast_devices``: the card of every Tiki-Taka crossbar's fast array
      (``Circuit.fast_devices``); may be left out when no crossbar names a
      ``tiki_taka.fast_device`` (``A`` then has the crossbar's card).

    **Returns:** ``(chip, clipped)`` where ``clipped[name]`` counts initial weights beyond the
    mapping's ``w_max`` that were clipped at programming.

    **Raises:** ``ValueError`` when a crossbar's ``fast_device`` card is not given.
    """
    config = ChipConfig.from_spec(spec)
    root = jr.PRNGKey(seed)
    crossbars: dict[str, Crossbar] = {}
    clipped: dict[str, int] = {}
    per = spec.periphery
    for i, name in enumerate(config.crossbar_names):
        xspec = spec.crossbar(name)
        assert xspec.init is not None and xspec.mapping is not None and xspec.bias is not None
        card = devices[name]
        shape = config.crossbar_shape(name)
        k_fwd, k_bwd = jr.split(jr.fold_in(root, 1000 + i), 5)[3:]
        hidden, visible, dev, n_clip = _draw_crossbar(
            xspec.init, xspec.mapping, card, xspec.bias, shape, jr.fold_in(root, 1000 + i)
        )
        g_unit_S = (card.conductance.g_max_S - card.conductance.g_min_S) / xspec.mapping.w_max
        clipped[name] = int(n_clip)
        tiki = None
        if xspec.tiki_taka is not None:
            k_fast = jr.fold_in(root, FAST_KEY + i)
            tiki = _fast_array(
                name, xspec.tiki_taka, xspec.mapping, card, fast_devices, shape, k_fast
            )
        crossbars[name] = Crossbar(
            g_plus_S=visible[0],
            g_minus_S=visible[1],
            hidden_S=hidden,
            devices=dev,
            forward_gain=_mismatch(k_fwd, shape[0], per.forward_gain_mismatch_rel),
            transpose_gain=_mismatch(k_bwd, shape[1], per.transpose_gain_mismatch_rel),
            g_unit_S=float(g_unit_S),
            has_bias=bool(xspec.bias),
            read_noise_rel=float(card.read_noise_rel),
            tiki_taka=tiki,
        )
    gains, offsets = [], []
    for l, n in enumerate(config.layers[1:]):
        k_gain, k_off = jr.split(jr.fold_in(root, 2000 + l))
        gains.append(_mismatch(k_gain, n, spec.neuron.gain_mismatch_rel))
        off = spec.neuron.offset_mismatch * jr.normal(k_off, (n,), dtype=jnp.float32)
        offsets.append(off.astype(jnp.float32))
    chip = Chip(
        crossbars=crossbars,
        neuron_gain=tuple(gains),
        neuron_offset=tuple(offsets),
        noise_std=jnp.asarray(spec.neuron.noise_std, jnp.float32),
        read_noise_std=jnp.asarray(per.read_noise_std, jnp.float32),
        config=config,
    )
    return chip, clipped
