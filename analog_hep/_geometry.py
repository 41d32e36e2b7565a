"""Geometry of a convolutional crossbar: how one physical array is read over image positions.

A conv crossbar is one array of ``n_out = C_out`` rows and ``n_in = C_in k k`` columns (plus a
bias column), time-multiplexed over the output positions of a convolution, as analog chips
(and aihwkit) map convolutions: at each position the input patch drives the columns and the
rows give one output pixel of every channel. Pooling (``pool``, window ``pool_size``, stride
``pool_size``) then acts in the periphery on the ``(C_out, H_conv, W_conv)`` read.

Layouts (all flattened channel-major, ``(C, H, W)`` order): a layer's state is a vector of
``C H W`` activities; a patch is ``(C_in, k, k)`` flattened, the same order as the columns
of the crossbar's ``W`` viewed as ``(C_out, C_in, k, k)``.

Pure Python (no JAX): the driver contract carries it (:class:`~analog_hep.drivers.CrossbarInfo`
``geometry``); the JAX reads are in :mod:`analog_hep._conv`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

__all__ = ["HOLOMORPHIC_POOLS", "POOLS", "ConvGeometry", "GeometryError", "Pool"]

Pool = Literal["none", "softmax", "average", "max"]
POOLS: tuple[str, ...] = ("none", "softmax", "average", "max")
HOLOMORPHIC_POOLS: frozenset[str] = frozenset({"none", "softmax", "average"})
"""Poolings that keep the dynamics holomorphic (max pooling is not: hEP N > 2 is refused)."""


class GeometryError(ValueError):
    """A geometry that gives no usable crossbar; ``field`` names the offending field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class ConvGeometry:
    """One conv crossbar's geometry (hashable: part of a compiled program's identity).

    - ``in_shape``: ``(C_in, H, W)`` of the layer the crossbar reads.
    - ``channels``: ``C_out``, the crossbar's rows.
    - ``kernel``, ``stride``, ``padding``: square kernel side, stride and zero padding
      (pixels).
    - ``pool``: ``none``, ``softmax`` (``sum x e^{x/T} / sum e^{x/T}`` per window;
      Stergiou et al. 2021, holomorphic), ``average`` or ``max`` (not holomorphic);
      ``pool_size``: window side and stride (1 for ``none``); ``temperature``: ``T`` of
      softmax pooling (activity units).
    """

    in_shape: tuple[int, int, int]
    channels: int
    kernel: int
    stride: int = 1
    padding: int = 0
    pool: Pool = "none"
    pool_size: int = 1
    temperature: float = 1.0

    def __post_init__(self) -> None:
        problem = self._problem()
        if problem is not None:
            raise GeometryError(*problem)

    def _problem(self) -> tuple[str, str] | None:
        """``(field, why)`` if this geometry gives no usable crossbar, else ``None``.

        ``field`` is the conv block's field to blame (the spec points at its line); ``why``
        says what was found and what is needed, with the numbers that decide it.
        """
        c, h, w = self.in_shape
        if min(c, h, w) < 1:
            return "in_shape", (
                f"expected a positive [channels, height, width], found {list(self.in_shape)}"
            )
        for field, value, low in (
            ("channels", self.channels, 1),
            ("kernel", self.kernel, 1),
            ("stride", self.stride, 1),
            ("padding", self.padding, 0),
            ("pool_size", self.pool_size, 1),
        ):
            if value < low:
                return field, f"expected {field} >= {low}, found {value}"
        if self.pool not in POOLS:
            return "pool", f"expected one of {', '.join(POOLS)}, found {self.pool!r}"
        if (self.pool == "none") != (self.pool_size == 1):
            return "pool_size", (
                f"pool {self.pool!r} with pool_size {self.pool_size}: a pooling needs "
                "pool_size >= 2, no pooling pool_size 1"
            )
        if not self.temperature > 0:
            return "temperature", f"expected a temperature > 0, found {self.temperature}"
        hc, wc = self.conv_hw
        k, s, p, ps = self.kernel, self.stride, self.padding, self.pool_size
        if hc < 1 or wc < 1:  # whatever the stride: the kernel does not fit the padded input
            return "kernel", (
                f"kernel {k} is larger than its padded input {h + 2 * p}x{w + 2 * p} (input "
                f"{h}x{w}, padding {p}): the convolution has no output position"
            )
        conv = f"the convolution's output {hc}x{wc} (input {h}x{w}, kernel {k}, stride {s}, "
        conv += f"padding {p})"
        if ps > min(hc, wc):
            empty = f"pool_size {ps} is larger than {conv}: the pooled layer is empty"
            if s > 1 and min(h, w) + 2 * p - k + 1 >= ps:  # stride 1 would leave a window
                return "stride", f"stride {s} is too large: {empty}"
            return "pool_size", empty
        if hc % ps or wc % ps:
            return "pool_size", (
                f"pool_size {ps} does not divide {conv}: the pooling windows must tile it "
                "(change the padding, kernel or stride, or the pooling)"
            )
        return None

    @property
    def conv_hw(self) -> tuple[int, int]:
        """``(H_conv, W_conv)``: output positions of the convolution, before pooling."""
        _, h, w = self.in_shape
        k, s, p = self.kernel, self.stride, self.padding
        return (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1

    @property
    def out_shape(self) -> tuple[int, int, int]:
        """``(C_out, H_out, W_out)`` after pooling: the shape of the layer it drives."""
        hc, wc = self.conv_hw
        return self.channels, hc // self.pool_size, wc // self.pool_size

    @property
    def positions(self) -> int:
        """Reads of the array per crossbar read (output positions ``H_conv W_conv``)."""
        hc, wc = self.conv_hw
        return hc * wc

    @property
    def n_in(self) -> int:
        """Columns of the crossbar (without the bias column): ``C_in k k``."""
        return self.in_shape[0] * self.kernel**2

    @property
    def in_size(self) -> int:
        """Activities of the layer it reads, ``C_in H W``."""
        c, h, w = self.in_shape
        return c * h * w

    @property
    def conv_size(self) -> int:
        """Values of one read before pooling, ``C_out H_conv W_conv``."""
        return self.channels * self.positions

    @property
    def out_size(self) -> int:
        """Activities of the layer it drives, ``C_out H_out W_out``."""
        c, h, w = self.out_shape
        return c * h * w

    @property
    def holomorphic(self) -> bool:
        """Whether the pooling is holomorphic (max pooling is not)."""
        return self.pool in HOLOMORPHIC_POOLS

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able fields (the wire and the run record carry these)."""
        d = asdict(self)
        d["in_shape"] = list(self.in_shape)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ConvGeometry:
        """Inverse of :meth:`to_dict`. **Raises** :class:`GeometryError` on a bad geometry."""
        fields = dict(d)
        fields["in_shape"] = tuple(int(v) for v in fields["in_shape"])
        return cls(**fields)
