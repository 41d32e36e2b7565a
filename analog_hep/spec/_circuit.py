"""Circuit specs: the layers, neurons, crossbars, periphery and dynamics of one chip.

A circuit names device cards (by name or path); the cards themselves are resolved and
validated by :mod:`analog_hep.spec._device`. Numbers that are decisions (noise, settle
lengths, learning rates) have no defaults here: the YAML states them, so the HDF5 record of
a run states every assumption.
"""

from __future__ import annotations

import difflib
import math
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, model_validator

from .._geometry import ConvGeometry, GeometryError
from .._hep_settings import (
    MIXED_PRECISION_FIELDS,
    OPTIMIZER_FIELDS,
    CircleReaction,
    Guard,
    HepSchedule,
    HepSettings,
    LrSchedule,
    Method,
    UpdatePath,
    UpdateScheme,
)
from ._base import FieldError, SpecModel
from ._tiki_taka import TikiTakaSpec

__all__ = [
    "DEFAULT_TRAINING",
    "SEED_MAX",
    "AccumulatorBits",
    "ActivationSpec",
    "BlockSpec",
    "CircuitSpec",
    "ConvBlockSpec",
    "CrossbarSpec",
    "CrossbarsSpec",
    "DenseBlockSpec",
    "DynamicsSpec",
    "InitSpec",
    "MappingSpec",
    "MixedPrecisionSpec",
    "NeuronSpec",
    "OptimizerSpec",
    "PeripherySpec",
    "ReadoutSpec",
    "Seed",
    "TrainingSpec",
    "seed_problem",
]

NonNeg = Annotated[float, Field(ge=0.0)]
Pos = Annotated[float, Field(gt=0.0)]
PosInt = Annotated[int, Field(ge=1)]
SEED_MAX = 2**32 - 1
"""Largest seed: a 32-bit unsigned integer, what JAX's ``PRNGKey`` and NumPy take everywhere."""


def seed_problem(value: int) -> str | None:
    """Why ``value`` is not a usable seed (``None`` if it is): the range and the reason."""
    if 0 <= value <= SEED_MAX:
        return None
    return (
        f"expected a seed in 0 ... {SEED_MAX} (2**32 - 1: a 32-bit unsigned integer, as JAX's "
        f"PRNGKey and NumPy take it), found {value}"
    )


def _check_seed(value: int) -> int:
    problem = seed_problem(value)
    if problem is not None:
        raise ValueError(problem)
    return value


Seed = Annotated[int, AfterValidator(_check_seed)]


def _check_bits(value: int) -> int:
    if value == 1 or not 0 <= value <= 32:
        raise ValueError(f"expected 0 (float32) or 2 ... 32 bits (a sign and more), found {value}")
    return value


AccumulatorBits = Annotated[int, AfterValidator(_check_bits)]
"""Bits of a signed fixed-point accumulator: 0 (float32) or 2 ... 32."""


class ActivationSpec(SpecModel):
    """The neuron's transfer function ``sigma`` and its parameters.

    ``shifted_sigmoid``: ``1 / (1 + exp(a u + b))`` (the paper's MLPs use a=-4, b=2);
    ``tanh``; ``dsilu``: ``s(u)(1 + u(1 - s(u)))``; ``holotanh``:
    ``(SiLU_a(u) - SiLU_a(u - 2)) / 2`` with ``SiLU_a(u) = u s(a u)``; ``relu`` and
    ``hardtanh`` are allowed for comparison and flagged non-holomorphic.
    """

    name: Literal["shifted_sigmoid", "tanh", "dsilu", "holotanh", "relu", "hardtanh"]
    a: float | None = None
    b: float | None = None

    @model_validator(mode="after")
    def _params(self) -> ActivationSpec:
        needs = {"shifted_sigmoid": ("a", "b"), "holotanh": ("a",)}.get(self.name, ())
        for p in ("a", "b"):
            value = getattr(self, p)
            if p in needs and value is None:
                raise ValueError(f"activation {self.name!r} needs parameter {p!r}")
            if p not in needs and value is not None:
                raise FieldError((p,), f"activation {self.name!r} takes no parameter {p!r}")
        return self


class NeuronSpec(SpecModel):
    """Neurons: ``s_i = sigma(g_i u_i + c_i + noise)``, with per-neuron mismatch drawn once."""

    activation: ActivationSpec
    gain_mismatch_rel: NonNeg = Field(description="std of g_i around 1 (dimensionless)")
    offset_mismatch: NonNeg = Field(description="std of c_i (pre-activation units)")
    noise_std: NonNeg = Field(description="Gaussian noise std per settling step on u")


class ReadoutSpec(SpecModel):
    """The loss. ``cross_entropy``: a readout crossbar to ``classes`` logits inside Phi;
    ``mse``: the last neuron layer has ``classes`` units and is nudged towards the target."""

    classes: Annotated[int, Field(ge=2)]
    loss: Literal["cross_entropy", "mse"]


class InitSpec(SpecModel):
    """Initial weights (weight units), programmed into the devices at fabrication.

    ``normal``: N(0, std^2); ``uniform``: U(-bound, bound); ``fan_in_normal``:
    N(0, (gain / sqrt(n_in))^2); ``fan_in_uniform``: U(+-gain / sqrt(n_in)). Biases are drawn
    from the same law when ``bias`` is ``same`` and start at zero when it is ``zero``.
    """

    scheme: Literal["normal", "uniform", "fan_in_normal", "fan_in_uniform"]
    std: Pos | None = None
    bound: Pos | None = None
    gain: Pos | None = None
    bias: Literal["same", "zero"]

    @model_validator(mode="after")
    def _params(self) -> InitSpec:
        needs = {
            "normal": "std",
            "uniform": "bound",
            "fan_in_normal": "gain",
            "fan_in_uniform": "gain",
        }[self.scheme]
        for p in ("std", "bound", "gain"):
            if p == needs and getattr(self, p) is None:
                raise ValueError(f"init scheme {self.scheme!r} needs {p!r}")
            if p != needs and getattr(self, p) is not None:
                raise FieldError((p,), f"init scheme {self.scheme!r} takes no {p!r}")
        return self


class MappingSpec(SpecModel):
    """Weight-to-conductance map ``W = (G+ - G-) / g_unit``, ``g_unit = (g_max - g_min) / w_max``.

    ``one_sided``: ``G+- = g_min + relu(+-W) g_unit``; ``balanced``:
    ``G+- = (g_min + g_max)/2 +- W g_unit / 2``. Weights beyond ``+-w_max`` are clipped at
    programming and the clip is reported.
    """

    scheme: Literal["one_sided", "balanced"]
    w_max: Pos = Field(description="weight (dimensionless) represented by the full range")


class CrossbarSpec(SpecModel):
    """One crossbar (all fields optional so that overrides can name only what differs)."""

    device: str | None = Field(default=None, description="device card name or path")
    init: InitSpec | None = None
    mapping: MappingSpec | None = None
    bias: bool | None = Field(default=None, description="has a bias row driven at 1")
    tiki_taka: TikiTakaSpec | None = Field(
        default=None,
        description="Tiki-Taka update (a fast array A and transfers to this array); an "
        "override's block replaces the default's whole",
    )


class CrossbarsSpec(SpecModel):
    """A default crossbar and per-crossbar overrides by name (``W0``, ``W1``, ..., ``readout``)."""

    default: CrossbarSpec
    overrides: dict[str, CrossbarSpec] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _complete_default(self) -> CrossbarsSpec:
        fields = ("device", "init", "mapping", "bias")
        missing = [k for k in fields if getattr(self.default, k) is None]
        if missing:
            raise FieldError(
                ("default",),
                f"the default crossbar must give {', '.join(missing)} (only overrides may "
                "leave fields out)",
            )
        return self


class PeripherySpec(SpecModel):
    """DAC/ADC resolution, read noise and read-direction gain mismatch (all optional)."""

    dac_bits: Annotated[int, Field(ge=1, le=32)] | None = None
    input_range: tuple[float, float] = Field(default=(0.0, 1.0), strict=False)
    adc_bits: Annotated[int, Field(ge=1, le=32)] | None = None
    activity_range: tuple[float, float] = Field(default=(0.0, 1.0), strict=False)
    read_noise_std: NonNeg = Field(
        default=0.0, description="additive noise per crossbar read on each output line"
    )
    forward_gain_mismatch_rel: NonNeg = 0.0
    transpose_gain_mismatch_rel: NonNeg = 0.0
    update_mode: Literal["stochastic", "expected", "pulse_count"] = Field(
        default="stochastic",
        description="how the pulse generator realises an outer-product update (RPU scheme)",
    )
    bit_length: Annotated[int, Field(ge=1, le=1024)] = Field(
        default=31, description="pulse slots per update (aihwkit's default BL is 31)"
    )

    @model_validator(mode="after")
    def _ranges(self) -> PeripherySpec:
        for name in ("input_range", "activity_range"):
            lo, hi = getattr(self, name)
            if not lo < hi:
                raise FieldError(
                    (name,), f"{name} must be [low, high] with low < high, found {[lo, hi]}"
                )
        return self


class DynamicsSpec(SpecModel):
    """How the circuit settles.

    ``discrete``: synchronous steps ``s <- sigma(dPhi/ds)``; give ``free_steps`` and
    ``nudge_steps``. ``continuous``: ``tau ds/dt = -s + sigma(dPhi/ds)`` integrated with
    step ``dt_s``; give ``tau_s``, ``dt_s``, ``free_time_s`` and ``nudge_time_s``.
    ``dt_s = tau_s`` recovers the discrete map.
    """

    mode: Literal["discrete", "continuous"]
    free_steps: PosInt | None = None
    nudge_steps: PosInt | None = None
    tau_s: Pos | None = None
    dt_s: Pos | None = None
    free_time_s: Pos | None = None
    nudge_time_s: Pos | None = None

    @model_validator(mode="after")
    def _mode_fields(self) -> DynamicsSpec:
        fields = {
            "discrete": ("free_steps", "nudge_steps"),
            "continuous": ("tau_s", "dt_s", "free_time_s", "nudge_time_s"),
        }
        for mode, names in fields.items():
            for n in names:
                given = getattr(self, n) is not None
                if mode == self.mode and not given:
                    raise ValueError(f"dynamics mode {self.mode!r} needs {n!r}")
                if mode != self.mode and given:
                    raise FieldError(
                        (n,), f"dynamics mode {self.mode!r} takes no {n!r} (that is {mode})"
                    )
        if self.mode == "continuous":
            assert self.dt_s is not None and self.tau_s is not None
            if self.dt_s > self.tau_s:
                raise FieldError(
                    ("dt_s",),
                    f"dt_s must be at most tau_s (explicit Euler is unstable beyond), found "
                    f"dt_s={self.dt_s!r} > tau_s={self.tau_s!r}",
                )
        return self

    @property
    def rate(self) -> float:
        """Euler fraction ``dt / tau`` per step (1 for the discrete map)."""
        if self.mode == "discrete":
            return 1.0
        assert self.dt_s is not None and self.tau_s is not None
        return self.dt_s / self.tau_s

    @property
    def steps(self) -> tuple[int, int]:
        """``(free, nudge)`` settle lengths in steps."""
        if self.mode == "discrete":
            assert self.free_steps is not None and self.nudge_steps is not None
            return self.free_steps, self.nudge_steps
        assert self.dt_s and self.free_time_s and self.nudge_time_s
        return (
            max(1, round(self.free_time_s / self.dt_s)),
            max(1, round(self.nudge_time_s / self.dt_s)),
        )


class OptimizerSpec(SpecModel):
    """The digital side of learning: optax SGD with optional momentum and schedule.

    ``lr`` multiplies the gradient estimate (dimensionless weights per unit gradient);
    ``schedule``: ``constant`` or ``cosine`` (decays to 0 over the run).
    """

    name: Literal["sgd"]
    lr: Pos
    momentum: Annotated[float, Field(ge=0.0, lt=1.0)]
    schedule: LrSchedule


_HEP = HepSettings()  # the defaults live in analog_hep._hep_settings, nowhere else


class MixedPrecisionSpec(SpecModel):
    """The digital accumulator of ``update_scheme: mixed_precision`` (Nandakumar et al.,
    Front. Neurosci. 2020; docs/devices.md, "Update schemes"). Units of one device pulse's
    weight change ``dw_min`` (dimensionless weights)."""

    threshold: Pos = Field(
        default=_HEP.mp_threshold, description="pulses are sent once |chi| >= threshold dw_min"
    )
    accumulator_bits: AccumulatorBits = Field(
        default=_HEP.mp_accumulator_bits,
        description="bits of the signed fixed-point accumulator (0: float32)",
    )
    max_pulses: Annotated[int, Field(ge=1, le=1024)] = Field(
        default=_HEP.mp_max_pulses, description="most pulses per weight and step"
    )
    dw_min: NonNeg = Field(
        default=_HEP.mp_dw_min,
        description="weight change of one pulse (0: as the chip describes it)",
    )


class TrainingSpec(SpecModel):
    """How ``analog-hep train`` trains this chip (command-line options override these).

    The hEP settings are :class:`analog_hep._hep_settings.HepSettings` (their meaning and
    defaults are written there; ``lr``, ``momentum`` and ``schedule`` are grouped under
    ``optimizer``), with their ranges checked here; ``batch`` and ``epochs`` are the run's.
    ``method``, ``points``, ``beta``, ``batch``, ``epochs``, ``optimizer`` and
    ``residual_tol`` are required in a section; the others default as in ``HepSettings``.
    ``tests/test_train.py`` checks that the fields here and there agree.
    """

    method: Method
    points: PosInt
    beta: Pos
    batch: PosInt
    epochs: PosInt
    optimizer: OptimizerSpec
    residual_tol: Pos
    online_periods: PosInt = _HEP.online_periods
    online_steps: PosInt = _HEP.online_steps
    update: UpdatePath = _HEP.update
    fallback_fraction: Annotated[float, Field(ge=0.0, le=1.0)] = _HEP.fallback_fraction
    circle_check: CircleReaction = _HEP.circle_check
    hep_schedule: HepSchedule = _HEP.hep_schedule
    ramp_points: Annotated[int, Field(ge=0, le=64)] = _HEP.ramp_points
    guard: Guard = _HEP.guard
    update_scheme: UpdateScheme = _HEP.update_scheme
    mixed_precision: MixedPrecisionSpec = MixedPrecisionSpec()

    def hep_settings(self) -> HepSettings:
        """The section's hEP settings (the optimizer's and the accumulator's flattened in)."""

        def get(name: str) -> object:
            if name in OPTIMIZER_FIELDS:
                return getattr(self.optimizer, name)
            if name in MIXED_PRECISION_FIELDS:
                return getattr(self.mixed_precision, MIXED_PRECISION_FIELDS[name])
            return getattr(self, name)

        return HepSettings(**{name: get(name) for name in _HEP.__dataclass_fields__})


DEFAULT_TRAINING = TrainingSpec(
    method=_HEP.method,
    points=_HEP.points,
    beta=_HEP.beta,
    batch=20,
    epochs=10,
    optimizer=OptimizerSpec(name="sgd", lr=_HEP.lr, momentum=_HEP.momentum, schedule=_HEP.schedule),
    residual_tol=_HEP.residual_tol,
)
"""The training settings of a circuit without a ``training`` section (each can be overridden
on the command line): the hEP defaults of :class:`analog_hep._hep_settings.HepSettings`
(hEP with 6 points at |beta| = 0.4, SGD lr 0.2, residual tolerance 0.5: the digits
circuit's measured settings), batch 20 and 10 epochs (docs/specs.md)."""


class ConvBlockSpec(SpecModel):
    """A conv crossbar: ``C_out x (C_in k k)`` conductances (plus a bias column) read at
    every output position of a convolution, then pooled in the periphery (docs/specs.md,
    "Conv chips"). ``in_channels`` is optional: given, it must match the layer before;
    ``temperature`` is softmax pooling's alone (1 when not given)."""

    kind: Literal["conv"]
    channels: PosInt = Field(description="output channels C_out (crossbar rows)")
    kernel: PosInt = Field(description="square kernel side k (pixels)")
    stride: PosInt = 1
    padding: Annotated[int, Field(ge=0)] = 0
    pool: Literal["none", "softmax", "average", "max"] = "none"
    pool_size: PosInt | None = Field(
        default=None, description="pooling window and stride (default 2 with a pooling)"
    )
    temperature: Pos | None = Field(
        default=None, description="softmax pooling temperature T (activity units; default 1)"
    )
    in_channels: PosInt | None = None

    @model_validator(mode="after")
    def _pool_fields(self) -> ConvBlockSpec:
        if self.temperature is not None and self.pool != "softmax":
            raise FieldError(
                ("temperature",),
                f"pool {self.pool!r} takes no temperature (only softmax pooling has one)",
            )
        return self

    def geometry(self, in_shape: tuple[int, int, int]) -> ConvGeometry:
        """This block read from a layer of shape ``in_shape`` (``GeometryError`` if unusable)."""
        size = self.pool_size if self.pool_size is not None else (1 if self.pool == "none" else 2)
        return ConvGeometry(
            in_shape=in_shape,
            channels=self.channels,
            kernel=self.kernel,
            stride=self.stride,
            padding=self.padding,
            pool=self.pool,
            pool_size=size,
            temperature=1.0 if self.temperature is None else self.temperature,
        )


class DenseBlockSpec(SpecModel):
    """A dense crossbar onto ``units`` neurons (the layer before is read flattened)."""

    kind: Literal["dense"]
    units: PosInt


BlockSpec = Annotated[ConvBlockSpec | DenseBlockSpec, Field(discriminator="kind")]


def _block_layers(
    input_shape: tuple[int, int, int], blocks: tuple[ConvBlockSpec | DenseBlockSpec, ...]
) -> tuple[int, ...]:
    """Flattened layer sizes of a conv chip, inputs first; a block that cannot follow the
    layer before raises :class:`FieldError` at that block's offending field."""
    shape: tuple[int, ...] = tuple(input_shape)
    sizes = [math.prod(shape)]
    dense_at: int | None = None
    for i, blk in enumerate(blocks):
        if isinstance(blk, DenseBlockSpec):
            if dense_at is None:
                dense_at = i
            shape = (blk.units,)
            sizes.append(blk.units)
            continue
        if dense_at is not None:
            raise FieldError(
                ("blocks", i, "kind"),
                f"a conv block after the dense block blocks[{dense_at}]: conv blocks come "
                "first (a dense layer has no image shape to convolve)",
            )
        before = "input_shape" if i == 0 else f"blocks[{i - 1}]'s output"
        if blk.in_channels is not None and blk.in_channels != shape[0]:
            raise FieldError(
                ("blocks", i, "in_channels"),
                f"in_channels {blk.in_channels} does not match the {shape[0]} channels of "
                f"the layer before ({before}, shape {list(shape)})",
            )
        try:
            geometry = blk.geometry(shape)  # type: ignore[arg-type]
        except GeometryError as e:
            where = f" ({before} is {list(shape)})" if i > 0 else ""
            raise FieldError(("blocks", i, e.field), f"{e}{where}") from None
        shape = geometry.out_shape
        sizes.append(geometry.out_size)
    return tuple(sizes)


class CircuitSpec(SpecModel):
    """A whole chip: ``layers[0]`` inputs, then neuron layers, then the readout.

    An MLP gives ``layers``; a conv chip gives ``input_shape`` ``(C, H, W)`` and ``blocks``
    (conv blocks, then dense blocks), and ``layers`` is filled in with the flattened sizes.
    """

    name: str = Field(min_length=1)
    description: str = ""
    seed: Seed
    layers: tuple[PosInt, ...] = Field(default=(), strict=False)
    input_shape: tuple[PosInt, PosInt, PosInt] | None = Field(default=None, strict=False)
    blocks: tuple[BlockSpec, ...] | None = Field(default=None, strict=False)
    readout: ReadoutSpec
    neuron: NeuronSpec
    crossbars: CrossbarsSpec
    periphery: PeripherySpec = PeripherySpec()
    dynamics: DynamicsSpec
    training: TrainingSpec | None = None

    @model_validator(mode="after")
    def _blocks(self) -> CircuitSpec:
        if self.blocks is None:
            if self.input_shape is not None:
                raise FieldError(
                    ("input_shape",), "input_shape needs blocks (a conv chip); an MLP gives layers"
                )
            if len(self.layers) < 2:
                raise FieldError(
                    ("layers",),
                    f"expected at least 2 layer sizes (inputs, then neurons), found "
                    f"{list(self.layers)}; a conv chip gives input_shape and blocks instead",
                )
            return self
        if self.layers:
            raise FieldError(
                ("layers",),
                "give either layers (an MLP) or input_shape and blocks (a conv chip), not both",
            )
        if self.input_shape is None:
            raise FieldError(
                ("blocks",),
                "blocks need a top-level input_shape: [channels, height, width] of the inputs",
            )
        if not self.blocks:
            raise FieldError(("blocks",), "expected at least one block")
        object.__setattr__(self, "layers", _block_layers(self.input_shape, self.blocks))
        return self

    @property
    def geometries(self) -> tuple[ConvGeometry | None, ...]:
        """Per crossbar (in :attr:`crossbar_names` order): its conv geometry, or ``None``
        for a dense crossbar (the readout is always dense)."""
        out: list[ConvGeometry | None] = []
        shape: tuple[int, ...] = tuple(self.input_shape or ())
        for blk in self.blocks or ():
            if isinstance(blk, ConvBlockSpec):
                g = blk.geometry(shape)  # type: ignore[arg-type]
                out.append(g)
                shape = g.out_shape
            else:
                out.append(None)
                shape = (blk.units,)
        n = len(self.crossbar_names)
        return (*out, *([None] * (n - len(out))))

    @property
    def layer_shapes(self) -> tuple[tuple[int, ...], ...]:
        """Each layer's shape: ``(C, H, W)`` for the input and conv outputs, ``(n,)`` else."""
        shapes: list[tuple[int, ...]] = []
        geoms = self.geometries
        for i, n in enumerate(self.layers):
            if i < len(geoms) and geoms[i] is not None:
                shapes.append(geoms[i].in_shape)  # type: ignore[union-attr]
            elif i > 0 and geoms[i - 1] is not None:
                shapes.append(geoms[i - 1].out_shape)  # type: ignore[union-attr]
            else:
                shapes.append((n,))
        return tuple(shapes)

    @model_validator(mode="after")
    def _shapes(self) -> CircuitSpec:
        if self.readout.loss == "mse" and self.layers[-1] != self.readout.classes:
            if self.blocks:  # a conv chip: blame the last block's size
                last = self.blocks[-1]
                field = "units" if isinstance(last, DenseBlockSpec) else "channels"
                raise FieldError(
                    ("blocks", len(self.blocks) - 1, field),
                    f"loss 'mse' nudges the last layer towards one-hot targets, so the last "
                    f"block must give readout.classes ({self.readout.classes}) activities, "
                    f"found {self.layers[-1]}",
                )
            raise FieldError(
                ("layers", len(self.layers) - 1),
                f"loss 'mse' nudges the last layer towards one-hot targets, so layers[-1] must "
                f"equal readout.classes ({self.readout.classes}), found {self.layers[-1]}",
            )
        names = self.crossbar_names
        for key in self.crossbars.overrides:
            if key not in names:
                close = difflib.get_close_matches(key, names, n=1)
                hint = f"did you mean {close[0]!r}? " if close else ""
                raise FieldError(
                    ("crossbars", "overrides", key),
                    f"unknown crossbar {key!r}; {hint}this circuit has {', '.join(names)}",
                )
        tiki = [n for n in names if self.crossbar(n).tiki_taka is not None]
        if tiki and len(tiki) != len(names):
            plain = [n for n in names if n not in tiki]
            raise FieldError(
                ("crossbars", "overrides", tiki[0], "tiki_taka"),
                f"tiki_taka must be on every crossbar or on none (a chip trains with one update "
                f"scheme), found it on {', '.join(tiki)} but not on {', '.join(plain)}: put it "
                "under crossbars.default",
            )
        return self

    @property
    def crossbar_names(self) -> tuple[str, ...]:
        """``W0 .. W{L-1}`` between layers, then ``readout`` for cross-entropy circuits."""
        names = tuple(f"W{i}" for i in range(len(self.layers) - 1))
        return (*names, "readout") if self.readout.loss == "cross_entropy" else names

    @property
    def crossbar_shapes(self) -> dict[str, tuple[int, int]]:
        """``(n_out, n_in)`` of each crossbar, bias column apart, in :attr:`crossbar_names`
        order: ``W{i}`` is ``layers[i+1] x layers[i]``, a conv crossbar ``C_out x (C_in k k)``
        (one array read at every output position), ``readout`` ``classes x layers[-1]``."""
        layers = self.layers
        shapes: dict[str, tuple[int, int]] = {}
        for i, (name, g) in enumerate(zip(self.crossbar_names, self.geometries, strict=True)):
            if g is not None:
                shapes[name] = (g.channels, g.n_in)
            elif name == "readout":
                shapes[name] = (self.readout.classes, layers[-1])
            else:
                shapes[name] = (layers[i + 1], layers[i])
        return shapes

    def crossbar(self, name: str) -> CrossbarSpec:
        """The default crossbar with this crossbar's overrides applied (all fields set)."""
        over = self.crossbars.overrides.get(name)
        base = self.crossbars.default
        if over is None:
            return base
        fields = ("device", "init", "mapping", "bias", "tiki_taka")
        return base.model_copy(
            update={k: getattr(over, k) for k in fields if getattr(over, k) is not None}
        )
