"""Will a circuit's chip, and a training step on it, fit in this machine's memory?

``check``, ``train`` and ``gradcheck`` call :func:`check_fits` before fabricating a chip, so
that ``layers: [64, 2000000000]`` is refused with the figure instead of failing inside XLA
with ``RESOURCE_EXHAUSTED``. The estimate counts the arrays the emulator allocates (see
:mod:`analog_hep.emulator._chip`); it is a lower bound of the real peak (XLA's temporaries
come on top), good to a small factor, which is what refusing the impossible needs.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import SpecError
from ._circuit import CircuitSpec

__all__ = [
    "MemoryEstimate",
    "available_memory",
    "check_fits",
    "estimate_memory",
    "format_bytes",
]

# Bytes per crossbar cell (one weight or bias, a differential pair of devices): G+, G- and
# the two hidden conductances (4 float32), and a DeviceArray of shape (2, ...) per cell with 7
# float32 parameters and one bool flag per device (emulator/_chip.py, physics/_device_array.py).
CHIP_BYTES_PER_CELL = 4 * 4 + 2 * (7 * 4 + 1)
# A Tiki-Taka crossbar's cell also has a fast pair (as much again) and its buffer H (float32).
TIKI_TAKA_BYTES_PER_CELL = CHIP_BYTES_PER_CELL + 4
# Per neuron: gain and offset mismatch (float32 each).
CHIP_BYTES_PER_NEURON = 2 * 4
# A training step's per-cell working memory: the effective weights (float32), the complex
# gradient estimate (complex64), the optimizer's momentum (float32) and the pulse update's
# requested and realised changes (2 float32).
STEP_BYTES_PER_CELL = 4 + 8 + 4 + 2 * 4
# Per neuron, per sample and per nudge point (plus the free state): the state, its
# pre-activation, the transposed feedback, the previous state, the noise draw and the kept
# settled state, all complex64.
STEP_BYTES_PER_ACTIVITY = 6 * 8
# Per conv crossbar, per sample and per settled state, for each of its ``C_out H_conv W_conv``
# values before pooling: the read at every position, the periphery's ``J_pool(z)^T s`` driven
# back for the transposed read, and the post-synaptic signal kept for the learning signal
# (emulator/_settle.py), complex64 each.
STEP_BYTES_PER_CONV_VALUE = 3 * 8
# Per conv crossbar, per sample and per settled state: the input patches the learning signal
# multiplies, ``H_conv W_conv x C_in k k`` values (complex64; hep/_signals.py).
STEP_BYTES_PER_PATCH_VALUE = 8


@dataclass(frozen=True)
class MemoryEstimate:
    """Estimated memory of a chip and of one training step on it, in bytes.

    **Fields:** ``cells`` crossbar cells (weights and biases, each a device pair);
    ``neurons`` neuron units (all layers and the readout); ``chip_bytes`` conductance,
    device and neuron arrays; ``step_bytes`` a training step's working memory at ``batch``
    samples and ``points`` nudge points.
    """

    cells: int
    neurons: int
    batch: int
    points: int
    chip_bytes: int
    step_bytes: int

    @property
    def total_bytes(self) -> int:
        """Chip and step together, bytes."""
        return self.chip_bytes + self.step_bytes


def _cells(spec: CircuitSpec, *, tiki_taka: bool = False) -> int:
    """Crossbar cells: ``n_out x (n_in + bias)`` per crossbar (``W{i}`` is
    ``layers[i+1] x layers[i]``, a conv crossbar ``C_out x C_in k k``, the readout
    ``classes x layers[-1]``; ``tiki_taka``: those of the crossbars with a fast array only)."""
    total = 0
    for name, (n_out, n_in) in spec.crossbar_shapes.items():
        xspec = spec.crossbar(name)
        if tiki_taka and xspec.tiki_taka is None:
            continue
        total += n_out * (n_in + (1 if xspec.bias else 0))
    return total


def _conv_bytes_per_state(spec: CircuitSpec) -> int:
    """Bytes the conv crossbars add to a training step per sample and settled state: their
    reads before pooling and their patches; 0 for an MLP."""
    return sum(
        g.conv_size * STEP_BYTES_PER_CONV_VALUE + g.positions * g.n_in * STEP_BYTES_PER_PATCH_VALUE
        for g in spec.geometries
        if g is not None
    )


def estimate_memory(spec: CircuitSpec, *, batch: int, points: int) -> MemoryEstimate:
    """Estimate the chip's memory and a training step's working memory (bytes).

    **Arguments:** ``spec`` the circuit; ``batch`` samples per step; ``points`` nudge points
    per sample (the free state is counted on top).

    **Returns:** a :class:`MemoryEstimate` (exact integers: no overflow for any layer size).
    A conv crossbar is one ``C_out x C_in k k`` array (its cells), read at every output
    position: its reads and patches count per sample and state in the step.

    >>> from analog_hep.spec import load_circuit
    >>> estimate_memory(load_circuit("toy").spec, batch=10, points=8).cells
    68
    """
    cells = _cells(spec)
    neurons = sum(spec.layers[1:]) + (
        spec.readout.classes if "readout" in spec.crossbar_names else 0
    )
    chip = cells * CHIP_BYTES_PER_CELL + neurons * CHIP_BYTES_PER_NEURON
    chip += _cells(spec, tiki_taka=True) * TIKI_TAKA_BYTES_PER_CELL
    states = batch * (points + 1)
    activity = states * (sum(spec.layers) + spec.readout.classes)
    step = cells * STEP_BYTES_PER_CELL + activity * STEP_BYTES_PER_ACTIVITY
    step += states * _conv_bytes_per_state(spec)
    return MemoryEstimate(cells, neurons, batch, points, chip, step)


def format_bytes(n: float) -> str:
    """``1536`` -> ``1.5 KiB``: a byte count in binary units."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(n) < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} PiB"  # pragma: no cover


def _meminfo_available() -> int | None:
    """``MemAvailable`` of /proc/meminfo in bytes (Linux), else ``None``."""
    try:
        text = Path("/proc/meminfo").read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    match = re.search(r"^MemAvailable:\s+(\d+)\s+kB", text, re.MULTILINE)
    return int(match.group(1)) * 1024 if match else None


def _cgroup_available() -> int | None:
    """Room left under a cgroup v2 memory limit (a container's), else ``None``."""
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text(encoding="ascii").strip()
        used = Path("/sys/fs/cgroup/memory.current").read_text(encoding="ascii").strip()
    except OSError:
        return None
    if not limit.isdigit() or not used.isdigit():
        return None  # "max": no limit
    return max(int(limit) - int(used), 0)


def _host_available() -> int | None:
    """Bytes of host memory this process can still use, or ``None`` if unknown."""
    figures = [f for f in (_meminfo_available(), _cgroup_available()) if f is not None]
    if not figures:
        try:
            figures = [os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")]
        except (ValueError, OSError, AttributeError):
            return None
    return min(figures)


def _device_available() -> tuple[int, str] | None:
    """Free memory of JAX's first accelerator (``memory_stats``), or ``None`` on CPU."""
    import jax  # only when a circuit is checked: card checks stay light

    device = jax.devices()[0]
    if device.platform == "cpu":
        return None
    try:
        stats = device.memory_stats() or {}
    except Exception:  # a backend without memory_stats: fall back to host memory
        return None
    limit = stats.get("bytes_limit")
    if not limit:
        return None
    free = int(limit) - int(stats.get("bytes_in_use", 0))
    return free, f"on {device.platform} device {device.device_kind}"


def available_memory() -> tuple[int | None, str]:
    """``(bytes, where)``: free memory of the JAX accelerator if there is one, else of this
    machine (the smaller of ``MemAvailable`` and a container's cgroup limit); ``None`` bytes
    when neither can be read."""
    device = _device_available()
    if device is not None:
        return device
    return _host_available(), "in this machine's memory"


def _key_line(text: str | None, key: str) -> int:
    """Line of the top-level ``key:`` in a circuit's YAML text (1 if not found)."""
    for number, line in enumerate((text or "").splitlines(), start=1):
        if line.startswith(f"{key}:"):
            return number
    return 1


def check_fits(
    spec: CircuitSpec,
    *,
    batch: int,
    points: int,
    path: str | None = None,
    text: str | None = None,
) -> MemoryEstimate:
    """Refuse a circuit whose chip and training step cannot fit in the available memory.

    **Arguments:** ``spec`` the circuit; ``batch`` and ``points`` of a step; ``path`` and
    ``text`` the circuit file and its YAML, to name the ``layers`` line (a conv chip's
    ``blocks`` line) in the message.

    **Returns:** the :class:`MemoryEstimate` (when it fits, or when the free memory is unknown).

    **Raises:** :class:`SpecError` ``FILE:LINE: layers: ...`` (``blocks: ...``) with the
    estimate and the memory available.
    """
    est = estimate_memory(spec, batch=batch, points=points)
    free, where = available_memory()
    if free is None or est.total_bytes <= free:
        return est
    name = path or spec.name
    key = "layers" if spec.blocks is None else "blocks"  # what sizes a conv chip: its blocks
    raise SpecError(
        f"{name}:{_key_line(text, key)}: {key}: this chip cannot fit {where}: it needs about "
        f"{format_bytes(est.total_bytes)} (chip {format_bytes(est.chip_bytes)} for "
        f"{est.cells:,} device pairs at {CHIP_BYTES_PER_CELL} B each; a training step "
        f"{format_bytes(est.step_bytes)} at batch {batch} x {points + 1} settled states), "
        f"above the {format_bytes(free)} available; use smaller {key} or a smaller --batch"
    )
