"""The driver contract's argument checks, for every driver and both ends of the wire.

A driver checks every argument against its own :class:`ChipDescription` before anything
reaches the chip, and raises the typed errors of :mod:`analog_hep.errors`:
:class:`OutOfRange` for a value outside what the chip takes (shape, name, NaN or infinite
values, ``|beta| > beta_max``, ``B > max_batch``, ``K > max_points``) and
:class:`UnsupportedCapability` for something the chip cannot do (complex nudges,
``start="previous"``, an update path or checkpoints it lacks). The emulator, the remote
client (before any I/O), the server (before the served driver) and the example driver of
``examples/toy_chip_driver`` all use these functions, so a call refused by one is refused
by all, with the same error type and message.

Two checks look at what a chip says rather than what it is asked: :func:`check_description`
(a conv crossbar's shapes are its geometry's; the remote client checks every description it
receives, the conformance kit the driver's) and :func:`check_post` (a settle's
post-synaptic signals cover every conv crossbar, with their shapes; the remote client checks
every ``run_schedule`` reply, the kit every settle).

Arrays may be NumPy arrays, ``jax.Array`` s (checked where they are: a device array's
finiteness costs one scalar copy, never the array) or anything ``np.asarray`` takes; they
must hold real numbers. Units: activities, weights, beta and ``lr`` are dimensionless
(the chip's own scale); step counts are steps.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from typing import Any

import numpy as np

from .._geometry import ConvGeometry
from ..errors import OutOfRange, UnsupportedCapability
from ._protocol import ChipDescription, CrossbarInfo, NudgeSchedule, Settled

__all__ = [
    "MAX_POINTS",
    "MAX_STEPS",
    "check_checkpoint",
    "check_conv_crossbar",
    "check_delta",
    "check_description",
    "check_finite",
    "check_inputs",
    "check_lr",
    "check_outer_product",
    "check_post",
    "check_schedule",
    "check_state",
    "find_crossbar",
]

MAX_STEPS = 10_000_000  # settle lengths beyond this are refused (a typo, not a schedule)
MAX_POINTS = 100_000  # nudge points per schedule beyond this are refused


# -- values ----------------------------------------------------------------------------------


def real_number(v: Any) -> float | None:
    """``v`` as a finite float, or ``None`` when it is not a finite real number (bools,
    strings and integers beyond the float range are not)."""
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Real):
        return None
    try:
        f = float(v)
    except OverflowError:
        return None
    return f if math.isfinite(f) else None


def short(v: Any) -> str:
    """``repr(v)`` cut to 60 characters (a hostile value can be huge); arrays by dtype and
    shape."""
    if hasattr(v, "shape") and hasattr(v, "dtype"):
        return f"an array {v.dtype} {tuple(v.shape)}"
    text = repr(v)
    return text if len(text) <= 60 else text[:57] + "..."


def _real_array(a: Any, what: str) -> Any:
    """``a`` as an array of real numbers: NumPy and JAX arrays as they are (no copy, no
    transfer), anything else through ``np.asarray``."""
    if not (hasattr(a, "shape") and hasattr(a, "dtype") and hasattr(a, "ndim")):
        try:
            a = np.asarray(a)
        except (TypeError, ValueError, OverflowError):
            raise OutOfRange(f"{what} must be an array of real numbers") from None
    if np.dtype(a.dtype).kind not in "biuf":
        raise OutOfRange(f"{what} must hold real numbers, found dtype {a.dtype}")
    return a


def check_finite(a: Any, what: str) -> None:
    """:class:`OutOfRange` if the array ``a`` holds a NaN or an infinity (a ``jax.Array``
    is checked on its device)."""
    if getattr(a, "size", 1) == 0:
        return
    if isinstance(a, np.ndarray) or not hasattr(a, "__array_namespace__"):
        ok = bool(np.isfinite(np.asarray(a)).all())
    else:
        xp = a.__array_namespace__()
        ok = bool(xp.all(xp.isfinite(a)))
    if not ok:
        raise OutOfRange(f"{what} holds NaN or infinite values; nothing was sent to the chip")


def check_lr(lr: Any, *, crossbar: str) -> float:
    """``lr`` (the update's learning rate, dimensionless) as a finite float;
    :class:`OutOfRange` naming ``crossbar`` otherwise."""
    f = real_number(lr)
    if f is None:
        raise OutOfRange(f"{crossbar}: lr must be a finite number, found {short(lr)}")
    return f


# -- the chip's description ------------------------------------------------------------------


def find_crossbar(desc: ChipDescription, name: Any) -> CrossbarInfo:
    """The crossbar of ``desc`` called ``name``; :class:`OutOfRange` if the chip has none."""
    if not isinstance(name, str):  # an array here would compare elementwise
        raise OutOfRange(f"a crossbar name must be a string, found {type(name).__name__}")
    for c in desc.crossbars:
        if c.name == name:
            return c
    raise OutOfRange(f"no crossbar {name!r}; this chip has {list(desc.crossbar_names)}")


def check_conv_crossbar(desc: ChipDescription, c: CrossbarInfo) -> None:
    """A conv crossbar's description agrees with its geometry: ``n_out = channels``,
    ``n_in = C_in k k``, layer ``pre`` of ``in_size`` and layer ``post`` of ``out_size``
    activities (a conv crossbar drives a layer, never the logits).

    **Raises:** :class:`OutOfRange` naming the crossbar, the field, what it should be and
    what it is.
    """
    g = c.geometry
    if not isinstance(g, ConvGeometry):
        raise OutOfRange(
            f"crossbar {c.name!r}: geometry must be a ConvGeometry or None, found "
            f"{type(g).__name__}"
        )
    n_layers = len(desc.layers)
    if not (0 <= c.pre < n_layers and 0 < c.post < n_layers):
        raise OutOfRange(
            f"conv crossbar {c.name!r}: pre {c.pre} and post {c.post} must be layers "
            f"(0 .. {n_layers - 1}; a conv crossbar drives a layer, not the logits)"
        )
    want = {
        "n_out": (c.n_out, g.channels, "its geometry's channels"),
        "n_in": (c.n_in, g.n_in, f"its geometry's C_in k k = {g.in_shape[0]}*{g.kernel}**2"),
        f"layers[{c.pre}]": (
            desc.layers[c.pre],
            g.in_size,
            f"the input {'x'.join(map(str, g.in_shape))} it reads",
        ),
        f"layers[{c.post}]": (
            desc.layers[c.post],
            g.out_size,
            f"the output {'x'.join(map(str, g.out_shape))} it drives (pool {g.pool})",
        ),
    }
    for field, (found, expected, why) in want.items():
        if found != expected:
            raise OutOfRange(
                f"conv crossbar {c.name!r}: {field} is {found}, expected {expected} ({why})"
            )


def check_description(desc: ChipDescription) -> None:
    """What the contract requires of a description beyond its types: every conv crossbar
    agrees with its geometry (:func:`check_conv_crossbar`). Dense crossbars are not checked
    here (the conformance kit's ``structure`` check compares them with the circuit).

    **Raises:** :class:`OutOfRange`.
    """
    for c in desc.crossbars:
        if c.geometry is not None:
            check_conv_crossbar(desc, c)


def _signal_shapes(
    signals: Any, want: Mapping[str, tuple[int, ...]], key: str, chip: str
) -> Mapping[str, Any]:
    """``signals`` a mapping with exactly the names of ``want``, each of its shape."""
    if not isinstance(signals, Mapping):
        raise OutOfRange(
            f"chip {chip!r}: Settled.{key} must map every conv crossbar "
            f"{sorted(want)} to its post-synaptic signal, found {short(signals)}"
        )
    if set(signals) != set(want):
        missing = sorted(set(want) - set(signals))
        extra = sorted(map(str, set(signals) - set(want)))
        raise OutOfRange(
            f"chip {chip!r}: Settled.{key} must hold the conv crossbars {sorted(want)}: "
            f"missing {missing}, extra {extra[:5]}"
        )
    for name, shape in want.items():
        a = signals[name]
        found = tuple(getattr(a, "shape", ()))
        if not hasattr(a, "dtype") or found != shape:
            raise OutOfRange(
                f"chip {chip!r}: Settled.{key}[{name!r}] must be {shape} (C_out H_conv W_conv "
                f"= {shape[-1]} per sample), found {short(a)}"
            )
    return signals


def check_post(desc: ChipDescription, s: Settled) -> None:
    """The post-synaptic signals of a :class:`Settled` for a batch of ``B`` and ``K`` points
    (``B`` from ``free_residual``, ``K`` from ``betas``): a chip with conv crossbars returns
    ``free_post`` ``{name: (B, conv_size)}`` and ``post`` ``{name: (K, B, conv_size)}`` for
    every conv crossbar (no other names); a chip without returns ``None`` (or empty
    mappings) for both.

    **Raises:** :class:`OutOfRange` naming the field, the crossbar and the shapes.
    """
    geoms = {c.name: c.geometry for c in desc.crossbars if c.geometry is not None}
    if not geoms:
        for key in ("free_post", "post"):
            v = getattr(s, key)
            if v is not None and not (isinstance(v, Mapping) and not v):
                raise OutOfRange(
                    f"chip {desc.name!r} has no conv crossbars: Settled.{key} must be None, "
                    f"found {short(v)}"
                )
        return
    b = int(np.shape(s.free_residual)[0]) if np.ndim(s.free_residual) >= 1 else -1
    k = int(np.shape(s.betas)[0]) if np.ndim(s.betas) >= 1 else -1
    _signal_shapes(
        s.free_post, {n: (b, g.conv_size) for n, g in geoms.items()}, "free_post", desc.name
    )
    _signal_shapes(s.post, {n: (k, b, g.conv_size) for n, g in geoms.items()}, "post", desc.name)


def check_checkpoint(desc: ChipDescription) -> None:
    """:class:`UnsupportedCapability` unless the chip can save and restore its state."""
    if not desc.capabilities.checkpoint:
        raise UnsupportedCapability(f"chip {desc.name!r} cannot save or restore its state")


# -- the operations --------------------------------------------------------------------------


def check_inputs(desc: ChipDescription, x: Any, y: Any | None) -> None:
    """``x`` ``(B, n_0)`` and ``y`` ``(B, classes)`` (or ``None``) real and finite, with
    ``1 <= B <= max_batch``."""
    x = _real_array(x, "inputs x")
    if x.ndim != 2 or x.shape[1] != desc.layers[0] or x.shape[0] < 1:
        raise OutOfRange(f"inputs must be (batch >= 1, {desc.layers[0]}), found {tuple(x.shape)}")
    mb = desc.capabilities.max_batch
    if mb is not None and x.shape[0] > mb:
        raise OutOfRange(f"batch of {x.shape[0]} exceeds the chip's max_batch {mb}")
    check_finite(x, "inputs x")
    if y is not None:
        y = _real_array(y, "targets y")
        if tuple(y.shape) != (x.shape[0], desc.classes):
            raise OutOfRange(
                f"targets must be (batch, classes) = {(x.shape[0], desc.classes)}, found "
                f"{tuple(y.shape)}"
            )
        check_finite(y, "targets y")


def _check_steps(key: str, v: Any) -> None:
    if v is not None and (type(v) is not int or not 1 <= v <= MAX_STEPS):
        raise OutOfRange(f"{key} must be None or an integer in [1, {MAX_STEPS}], found {v!r}")


def check_schedule(desc: ChipDescription, s: NudgeSchedule) -> None:
    """At most ``max_points`` betas, every one finite, within ``beta_max``, real unless
    ``complex_nudges``; step counts ``None`` or integers in ``[1, MAX_STEPS]``; ``start``
    ``free``, or ``previous`` with ``previous_start``."""
    caps = desc.capabilities
    if caps.max_points is not None and len(s.betas) > caps.max_points:
        raise OutOfRange(
            f"{len(s.betas)} nudge points exceed the chip's max_points {caps.max_points}"
        )
    if len(s.betas) > MAX_POINTS:
        raise OutOfRange(f"{len(s.betas)} nudge points exceed {MAX_POINTS}")
    for b in s.betas:
        b = complex(b)
        if not (math.isfinite(b.real) and math.isfinite(b.imag)):
            raise OutOfRange(f"beta {b} is not finite")
        size = math.hypot(b.real, b.imag)  # abs() overflows near the float limit
        if caps.beta_max is not None and size > caps.beta_max:
            raise OutOfRange(f"|beta| = {size:.6g} exceeds the chip's beta_max {caps.beta_max}")
    if s.is_complex and not caps.complex_nudges:
        raise UnsupportedCapability(
            f"chip {desc.name!r} cannot settle at complex beta (no complex_nudges): use real "
            "nudges (symmetric or classic EP)"
        )
    _check_steps("free_steps", s.free_steps)
    _check_steps("nudge_steps", s.nudge_steps)
    if s.start not in ("free", "previous"):
        raise OutOfRange(f"start must be 'free' or 'previous', found {s.start!r}")
    if s.start == "previous" and not caps.previous_start:
        raise UnsupportedCapability(f"chip {desc.name!r} cannot settle from the previous point")


def check_outer_product(
    desc: ChipDescription, name: Any, rows: Any, cols: Any, lr: Any, *, finite: bool = True
) -> None:
    """The chip has ``outer_product_update``; crossbar ``name`` known; ``rows`` ``(R,
    n_out)`` and ``cols`` ``(R, n_in + 1)`` real (finite unless ``finite=False``: the caller
    then checks that itself, as the emulator does inside its compiled update); ``lr`` a
    finite number."""
    if not desc.capabilities.outer_product_update:
        raise UnsupportedCapability(f"chip {desc.name!r} has no parallel outer-product update")
    xb = find_crossbar(desc, name)
    rows, cols = _real_array(rows, "rows"), _real_array(cols, "cols")
    if (
        rows.ndim != 2
        or cols.ndim != 2
        or rows.shape[1] != xb.n_out
        or cols.shape[1] != xb.n_in + 1
    ):
        raise OutOfRange(
            f"{name}: rows must be (R, {xb.n_out}) and cols (R, {xb.n_in + 1}), found "
            f"{tuple(rows.shape)} and {tuple(cols.shape)}"
        )
    if rows.shape[0] != cols.shape[0]:
        raise OutOfRange(
            f"{name}: rows and cols need the same R, found {rows.shape[0]}, {cols.shape[0]}"
        )
    check_lr(lr, crossbar=name)
    if finite:
        check_finite(rows, f"{name}: rows")
        check_finite(cols, f"{name}: cols")


def check_delta(desc: ChipDescription, name: Any, delta_w: Any, *, finite: bool = True) -> None:
    """The chip has ``program_delta``; crossbar ``name`` known; ``delta_w`` ``(n_out, n_in +
    1)`` real (finite unless ``finite=False``, as for :func:`check_outer_product`)."""
    if not desc.capabilities.program_delta:
        raise UnsupportedCapability(f"chip {desc.name!r} cannot program per-device deltas")
    xb = find_crossbar(desc, name)
    delta_w = _real_array(delta_w, "delta_w")
    if tuple(delta_w.shape) != (xb.n_out, xb.n_in + 1):
        raise OutOfRange(
            f"{name}: delta must be {(xb.n_out, xb.n_in + 1)}, found {tuple(delta_w.shape)}"
        )
    if finite:
        check_finite(delta_w, f"{name}: delta_w")


def check_state(reference: Mapping[str, Any], state: Any) -> None:
    """``state`` is a mapping of NumPy arrays with exactly the keys of ``reference`` (the
    chip's own ``state_dict()``), each with its shape and dtype."""
    if not isinstance(state, Mapping):
        raise OutOfRange("a state dict must be an object of arrays")
    if set(state) != set(reference):
        missing, extra = sorted(set(reference) - set(state)), sorted(set(state) - set(reference))
        raise OutOfRange(
            f"state dict keys differ from the chip's: missing {missing[:5]}, extra {extra[:5]}"
        )
    for k, ref in reference.items():
        a = state[k]
        ref = np.asarray(ref)
        if not isinstance(a, np.ndarray) or a.shape != ref.shape or a.dtype != ref.dtype:
            found = (a.shape, a.dtype) if isinstance(a, np.ndarray) else type(a).__name__
            raise OutOfRange(f"state {k!r} must be {ref.shape} {ref.dtype}, found {found}")
