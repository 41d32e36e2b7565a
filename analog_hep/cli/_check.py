"""``analog-hep check FILE.yaml [--json]``: validate a circuit or a device card and summarise it.

A circuit's summary gives its layers, loss, activation (and whether it is holomorphic),
dynamics, every crossbar (shape, bias, device card, mapping), the parameter count and the
noise and mismatch settings; a conv chip's also gives, per block, the shapes it reads, convolves
and drives, its array, its reads per settle step and its parameters and devices, and flags max
pooling as not holomorphic (hEP with N > 2 is refused on such a chip). A card's summary gives
its source, conductance range, levels and response model. Invalid files exit with code 2 and
one ``FILE:LINE: FIELD: ...`` line.

A circuit's summary also gives the estimated memory of its chip and of a training step (at
the batch and points of its ``training`` section, or the defaults), and a circuit that cannot
fit in this machine's memory (or the JAX accelerator's) is refused with the figure (exit 2).
"""

from __future__ import annotations

import argparse
from typing import Any

from .._geometry import ConvGeometry
from ..spec import (
    DEFAULT_TRAINING,
    Circuit,
    CircuitSpec,
    DeviceCard,
    available_memory,
    check_fits,
    format_bytes,
    load_any,
)
from ..spec.device_models import device_model
from ._json import print_json

__all__ = ["card_summary", "circuit_summary", "memory_summary", "register"]


def register(subparsers: Any) -> None:
    """Add the ``check`` subcommand to the ``analog-hep`` parser."""
    parser = subparsers.add_parser(
        "check",
        help="validate a circuit or device card YAML and print a summary",
        description=(
            "Validate a circuit or a device card (decided by its top-level keys) and print a "
            "summary. Exit code 2 and one FILE:LINE line if the file is invalid."
        ),
    )
    parser.add_argument("file", metavar="FILE.yaml", help="circuit or device card (path or name)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Validate ``args.file``; print its summary (text or JSON); return 0."""
    loaded = load_any(args.file)
    if isinstance(loaded, Circuit):
        memory = memory_summary(loaded)  # refuses a chip that cannot fit, before summarising
        summary = {**circuit_summary(loaded), "memory": memory}
        text = _circuit_text
    else:
        summary = card_summary(loaded, path=args.file)
        text = _card_text
    if args.json:
        print_json(summary, indent=2)
    else:
        print(text(summary))
    return 0


# ---------------------------------------------------------------------------------------------
# Summaries as plain dicts (the --json output); the text output is rendered from them.


def _reads_per_step(index: int, name: str, geometry: ConvGeometry | None) -> dict[str, Any]:
    """Reads of one crossbar's array per settle step and sample: ``forward`` (``W s``),
    ``transposed`` (``W^T s``) and whether they happen on ``nudged_only`` steps.

    A conv array is read once per output position (``H_conv W_conv``) each way; the first
    crossbar is never read transposed (its inputs are clamped); the readout is read only while
    nudged (cross-entropy's nudge ``-beta W^T (softmax(o) - y)``; the free phase skips it).
    """
    reads = 1 if geometry is None else geometry.positions
    return {
        "forward": reads,
        "transposed": 0 if index == 0 else reads,
        "nudged_only": name == "readout",
    }


def _crossbar_blocks(spec: CircuitSpec) -> list[dict[str, Any]]:
    """Per crossbar: its kind, the shapes of the layers it reads and drives, its geometry and
    reads per settle step (the block-level part of a crossbar's summary)."""
    shapes = spec.layer_shapes
    out = []
    for i, (name, g) in enumerate(zip(spec.crossbar_names, spec.geometries, strict=True)):
        readout = name == "readout"
        out.append(
            {
                "kind": "dense" if g is None else "conv",
                "in_shape": list(shapes[-1] if readout else shapes[i]),
                "out_shape": [spec.readout.classes] if readout else list(shapes[i + 1]),
                "conv_shape": None if g is None else [g.channels, *g.conv_hw],
                "geometry": None if g is None else g.to_dict(),
                "reads_per_step": _reads_per_step(i, name, g),
            }
        )
    return out


def memory_summary(circuit: Circuit) -> dict[str, Any]:
    """The estimated memory of the chip and of a training step (bytes), and what is free.

    The step is sized by the circuit's ``training`` section (or the defaults, as ``train``
    would use them). **Raises:** :class:`~analog_hep.errors.SpecError` if it cannot fit.
    """
    training = circuit.spec.training or DEFAULT_TRAINING
    est = check_fits(
        circuit.spec,
        batch=training.batch,
        points=training.points,
        path=circuit.path,
        text=circuit.text,
    )
    free, where = available_memory()
    return {
        "chip_bytes": est.chip_bytes,
        "step_bytes": est.step_bytes,
        "batch": est.batch,
        "points": est.points,
        "available_bytes": free,
        "available_where": where,
    }


def _nonzero(settings: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in settings.items() if v not in (None, 0, 0.0)}


def circuit_summary(circuit: Circuit) -> dict[str, Any]:
    """A JSON-able summary of a validated circuit (the ``check --json`` output).

    Keys: ``kind`` ("circuit"), ``name``, ``description``, ``path``, ``seed``, ``layers``
    (flattened sizes), ``input_shape`` (``[C, H, W]`` of a conv chip, else null),
    ``layer_shapes``, ``readout``, ``activation``, ``dynamics``, ``crossbars`` (one object per
    crossbar, i.e. per block and the readout: ``name``, ``n_out``, ``n_in`` (the array,
    ``C_out x C_in k k`` for a conv crossbar), ``bias``, ``device``, ``response_model``,
    ``mapping_scheme``, ``w_max``, ``init``, ``weights``, ``biases``, ``parameters``,
    ``devices``, ``kind`` (``conv`` or ``dense``), ``in_shape``, ``out_shape`` (the layers
    it reads and drives), ``conv_shape`` (``[C_out, H_conv, W_conv]`` before pooling, null
    for dense), ``geometry`` (null for dense), ``reads_per_step`` (``forward``,
    ``transposed``, ``nudged_only``)), ``parameter_count``, ``weight_count``, ``bias_count``,
    ``device_count``, ``neuron``, ``periphery``, ``devices`` (noise and variation of each
    card), ``holomorphic``, ``non_holomorphic_parts``, ``max_hep_points`` (2 on a
    non-holomorphic chip, else null) and ``outside_dynamics``.
    """
    from ..physics import is_holomorphic  # jax: imported only when a circuit is checked

    spec = circuit.spec
    crossbars = []
    blocks = _crossbar_blocks(spec)
    for (name, (n_out, n_in)), block in zip(spec.crossbar_shapes.items(), blocks, strict=True):
        xb = spec.crossbar(name)
        assert xb.mapping is not None and xb.init is not None and xb.bias is not None
        card = circuit.devices[name]
        weights, biases = n_out * n_in, (n_out if xb.bias else 0)
        crossbars.append(
            {
                "name": name,
                "n_out": n_out,
                "n_in": n_in,
                "bias": xb.bias,
                "device": card.name,
                "response_model": card.response.model,
                "mapping_scheme": xb.mapping.scheme,
                "w_max": xb.mapping.w_max,
                "init": xb.init.model_dump(exclude_none=True),
                "weights": weights,
                "biases": biases,
                "parameters": weights + biases,
                # W = (G+ - G-) / g_unit: every weight and bias is a differential pair.
                "devices": 2 * (weights + biases),
                **block,
            }
        )
    weight_count = sum(c["weights"] for c in crossbars)
    bias_count = sum(c["biases"] for c in crossbars)
    act = spec.neuron.activation
    # Max pooling is not holomorphic either (the plan refuses hEP N > 2 on such a chip).
    max_pools = [f"{c['name']} max pooling" for c in crossbars if _pool(c) == "max"]
    not_holomorphic = ([] if is_holomorphic(act.name) else [f"activation {act.name}"]) + max_pools
    holomorphic = not not_holomorphic
    # ADC/DAC quantise inputs and read-outs, outside the settle dynamics, so they do not
    # break holomorphy in beta; they are listed so that the user sees them.
    outside = [
        f"{part} ({bits} bits)"
        for part, bits in (("dac", spec.periphery.dac_bits), ("adc", spec.periphery.adc_bits))
        if bits is not None
    ]
    dyn = spec.dynamics
    free, nudge = dyn.steps
    return {
        "kind": "circuit",
        "name": spec.name,
        "description": spec.description,
        "path": circuit.path,
        "seed": spec.seed,
        "layers": list(spec.layers),
        "input_shape": None if spec.input_shape is None else list(spec.input_shape),
        "layer_shapes": [list(shape) for shape in spec.layer_shapes],
        "readout": {"classes": spec.readout.classes, "loss": spec.readout.loss},
        "activation": {
            **act.model_dump(exclude_none=True),
            "holomorphic": is_holomorphic(act.name),
        },
        "dynamics": {
            **dyn.model_dump(exclude_none=True),
            "free_steps": free,
            "nudge_steps": nudge,
            "rate": dyn.rate,
        },
        "crossbars": crossbars,
        "parameter_count": weight_count + bias_count,
        "weight_count": weight_count,
        "bias_count": bias_count,
        # W = (G+ - G-) / g_unit: every weight and bias is a differential pair of devices.
        "device_count": 2 * (weight_count + bias_count),
        "neuron": spec.neuron.model_dump(exclude={"activation"}),
        "periphery": spec.periphery.model_dump(mode="json"),
        "devices": {
            card.name: {
                "read_noise_rel": card.read_noise_rel,
                "program_noise_rel": card.program_noise_rel,
                "drift": card.drift.model_dump() if card.drift else None,
                "faults": _nonzero(card.faults.model_dump()),
                "response": _nonzero(card.response.model_dump(exclude={"model"})),
            }
            for card in {c.name: c for c in circuit.devices.values()}.values()
        },
        "holomorphic": holomorphic,
        "non_holomorphic_parts": not_holomorphic,
        # hEP and online with N > 2 points need holomorphic dynamics (hep/_plan.py refuses).
        "max_hep_points": None if holomorphic else 2,
        "outside_dynamics": outside,
    }


def card_summary(card: DeviceCard, *, path: str | None = None) -> dict[str, Any]:
    """A JSON-able summary of a device card (the ``check --json`` output).

    Keys: ``kind`` ("device"), ``name``, ``description``, ``path``, ``source``,
    ``conductance`` (siemens, plus ``g_min_uS``/``g_max_uS``), ``levels``, ``response``
    (``model`` and its parameters), ``response_model`` (from the device-model registry:
    ``pulsed``, ``own_fields`` (the model's own keys; the others every pulsed model has),
    ``fit_device``: whether ``fit-device`` fits it), ``read_noise_rel``,
    ``program_noise_rel``, ``drift``, ``faults``, ``refresh``.
    """
    g = card.conductance
    model = device_model(card.response)
    return {
        "kind": "device",
        "name": card.name,
        "description": card.description,
        "path": path,
        "source": card.source.model_dump(),
        "conductance": {
            "g_min_S": g.g_min_S,
            "g_max_S": g.g_max_S,
            "g_min_uS": g.g_min_S * 1e6,
            "g_max_uS": g.g_max_S * 1e6,
        },
        "levels": g.levels,
        "response": card.response.model_dump(),
        "response_model": {
            "pulsed": model.pulsed,
            "own_fields": list(model.own_fields),
            "fit_device": model.fit is not None,
        },
        "read_noise_rel": card.read_noise_rel,
        "program_noise_rel": card.program_noise_rel,
        "drift": card.drift.model_dump() if card.drift else None,
        "faults": card.faults.model_dump(),
        "refresh": card.refresh.model_dump() if card.refresh else None,
    }


# ---------------------------------------------------------------------------------------------
# Text rendering.


def _kv(settings: dict[str, Any]) -> str:
    return ", ".join(_kv1(k, v) for k, v in settings.items())


def _kv1(key: str, value: Any) -> str:
    if isinstance(value, float):
        return f"{key}={value:g}"
    return f"{key}={'off' if value is None else value}"


def _yes(flag: bool) -> str:
    return "yes" if flag else "no "


def _circuit_text(s: dict[str, Any]) -> str:
    act = s["activation"]
    params = _kv({k: v for k, v in act.items() if k not in ("name", "holomorphic")})
    dyn = s["dynamics"]
    if dyn["mode"] == "discrete":
        dyn_text = f"discrete, free {dyn['free_steps']} / nudge {dyn['nudge_steps']} steps"
    else:
        dyn_text = (
            f"continuous, tau_s={dyn['tau_s']:g}, dt_s={dyn['dt_s']:g}, "
            f"free {dyn['free_time_s']:g} s = {dyn['free_steps']} steps, "
            f"nudge {dyn['nudge_time_s']:g} s = {dyn['nudge_steps']} steps"
        )
    width = max(len(c["name"]) for c in s["crossbars"])
    xb_lines = [
        f"  {c['name']:<{width}}  {c['n_out']:>3} x {c['n_in']:<4} bias {_yes(c['bias'])}  "
        f"device {c['device']} ({c['response_model']})  {c['mapping_scheme']} "
        f"w_max={c['w_max']:g}  init {_kv(c['init'])}"
        for c in s["crossbars"]
    ]
    periphery = s["periphery"]
    dev_lines = [
        f"  device {name}: read_noise_rel={d['read_noise_rel']:g}, "
        f"program_noise_rel={d['program_noise_rel']:g}, drift "
        f"{_kv(d['drift']) if d['drift'] else 'none'}, faults {_kv(d['faults']) or 'none'}"
        for name, d in s["devices"].items()
    ]
    if s["holomorphic"]:
        holo = "yes"
    else:
        holo = (
            f"no ({', '.join(s['non_holomorphic_parts'])}): hEP with N > 2 is refused on this "
            "chip; N = 2 (real nudges) is allowed"
        )
    if s["outside_dynamics"]:
        parts = ", ".join(s["outside_dynamics"])
        holo += f"; quantisers outside the dynamics (no effect on holomorphy): {parts}"
    lines = [
        f"circuit {s['name']}" + (f"  ({s['path']})" if s["path"] else ""),
        *([f"  {s['description']}"] if s["description"] else []),
        f"layers:      {_layers_text(s)}",
        f"readout:     {s['readout']['loss']} over {s['readout']['classes']} classes",
        f"activation:  {act['name']}"
        + (f" ({params})" if params else "")
        + (", holomorphic" if act["holomorphic"] else ", NOT holomorphic"),
        f"dynamics:    {dyn_text}, rate dt/tau={dyn['rate']:g}",
        *(_blocks_text(s["crossbars"]) if s["input_shape"] is not None else []),
        "crossbars:",
        *xb_lines,
        f"parameters:  {s['parameter_count']} ({s['weight_count']} weights, "
        f"{s['bias_count']} biases; {s['device_count']} devices in differential pairs)",
        "noise and mismatch:",
        f"  neurons: {_kv(s['neuron'])}",
        f"  periphery: {_kv({k: v for k, v in periphery.items() if not k.endswith('range')})}",
        *dev_lines,
        *([_memory_text(s["memory"])] if "memory" in s else []),
        f"holomorphic: {holo}",
    ]
    return "\n".join(lines)


def _pool(crossbar: dict[str, Any]) -> str:
    """A crossbar summary's pooling (``none`` for a dense crossbar)."""
    return "none" if crossbar["geometry"] is None else crossbar["geometry"]["pool"]


def _shape_text(shape: list[int]) -> str:
    return "x".join(str(n) for n in shape)


def _layers_text(s: dict[str, Any]) -> str:
    """``64 -> 8 -> 4`` for an MLP; a conv chip's layers with their shapes,
    ``1x8x8 (64) -> 16x4x4 (256) -> ... -> 64``."""
    if s["input_shape"] is None:
        return " -> ".join(str(n) for n in s["layers"])
    return " -> ".join(
        str(n) if len(shape) == 1 else f"{_shape_text(shape)} ({n})"
        for n, shape in zip(s["layers"], s["layer_shapes"], strict=True)
    )


def _blocks_text(crossbars: list[dict[str, Any]]) -> list[str]:
    """Two lines per block of a conv chip: what it computes (shapes in, before pooling, out),
    then its array, its reads per settle step and its parameter and device counts."""
    width = max(len(c["name"]) for c in crossbars)
    lines = ["blocks:"]
    for c in crossbars:
        g = c["geometry"]
        if g is None:
            what = f"dense: {_shape_text(c['in_shape'])} -> {_shape_text(c['out_shape'])}"
        else:
            pool = g["pool"]
            if pool == "none":
                pooling = "no pooling"
            else:
                size = g["pool_size"]
                temp = f" (T={g['temperature']:g})" if pool == "softmax" else ""
                pooling = f"{pool} pooling {size}x{size}{temp}"
            what = (
                f"conv {g['kernel']}x{g['kernel']}, stride {g['stride']}, padding "
                f"{g['padding']}, {pooling}: {_shape_text(c['in_shape'])} -> "
                f"{_shape_text(c['conv_shape'])} -> {_shape_text(c['out_shape'])}"
            )
        r = c["reads_per_step"]
        step = "nudged step" if r["nudged_only"] else "step"
        lines += [
            f"  {c['name']:<{width}}  {what}",
            f"  {'':<{width}}  array {c['n_out']} x {c['n_in']}"
            + (" + bias" if c["bias"] else "")
            + f"; {r['forward']} forward + {r['transposed']} transposed reads per {step}; "
            f"{c['parameters']} parameters ({c['devices']} devices)",
        ]
    return lines


def _memory_text(m: dict[str, Any]) -> str:
    free = m["available_bytes"]
    room = "unknown" if free is None else format_bytes(free)
    return (
        f"memory:      chip ~{format_bytes(m['chip_bytes'])}, training step "
        f"~{format_bytes(m['step_bytes'])} (batch {m['batch']}, {m['points']} points); "
        f"{room} free {m['available_where']}"
    )


def _card_text(s: dict[str, Any]) -> str:
    g = s["conductance"]
    levels = "continuous" if s["levels"] is None else f"{s['levels']} levels"
    response = dict(s["response"])
    model = response.pop("model")
    own = {k: response.pop(k) for k in s["response_model"]["own_fields"]}
    kind = "" if s["response_model"]["pulsed"] else ", no pulses (exact updates)"
    fit = ", fit-device fits it" if s["response_model"]["fit_device"] else ""
    lines = [
        f"device card {s['name']}" + (f"  ({s['path']})" if s["path"] else ""),
        *([f"  {s['description']}"] if s["description"] else []),
        f"paper:       {s['source']['paper']}",
        f"simulator:   {s['source']['simulator']}",
        f"conductance: {g['g_min_uS']:g} to {g['g_max_uS']:g} µS, {levels}",
        f"response:    {model}" + (f" ({_kv(own)})" if own else "") + kind + fit,
        *([f"pulses:      {_kv(response)}"] if response else []),
        f"noise:       read_noise_rel={s['read_noise_rel']:g}, "
        f"program_noise_rel={s['program_noise_rel']:g}",
        f"drift:       {_kv(s['drift']) if s['drift'] else 'none'}",
        f"faults:      {_kv(_nonzero(s['faults'])) or 'none'}",
        f"refresh:     {_kv(s['refresh']) if s['refresh'] else 'none'}",
    ]
    return "\n".join(lines)
