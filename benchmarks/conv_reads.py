"""Each conv read of a circuit timed alone, against the same products as one matrix product.

    PYTHONPATH=. python benchmarks/conv_reads.py [CIRCUIT] [--rows R] [--repeats K]

For every conv crossbar of CIRCUIT (default circuits/cifar_vgg5.yaml) on R rows (default
128, Table 2's batch): the forward read and the transposed read exactly as the emulator
calls them (``analog_hep._conv.conv_read`` / ``conv_transpose``: an XLA convolution and its
linear transpose), and two formulations of the same numbers as one matrix product each:
forward ``patches @ W^T`` and transposed ``(d^T W)`` at every position followed by a
col2im of ``k x k`` shifted adds. It prints time and GFLOP/s of each, and the largest
relative difference between the formulations (they compute the same sums). Compiled ahead;
the best of K runs. A diagnostic for docs/performance.md ("Conv chips"), not a test.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

from analog_hep import _conv as conv
from analog_hep._geometry import ConvGeometry
from analog_hep._numerics import matmul
from analog_hep.spec import load_circuit


def convT_gemm(d: jax.Array, w: jax.Array, g: ConvGeometry) -> jax.Array:
    """``W^T d`` at every position as one ``(R P, C_out) @ (C_out, C_in k k)`` product, then
    each kernel offset's column outputs added onto the input pixels it covers (col2im)."""
    r = d.shape[0]
    c, h, wd = g.in_shape
    k, p, s = g.kernel, g.padding, g.stride
    ho, wo = g.conv_hw
    rows = d.reshape(r, g.channels, ho * wo).transpose(0, 2, 1).reshape(r * ho * wo, g.channels)
    v = matmul(rows, w).reshape(r, ho, wo, c, k, k)
    buf = jnp.zeros((r, c, h + 2 * p, wd + 2 * p), d.dtype)
    for ky in range(k):
        for kx in range(k):
            part = v[:, :, :, :, ky, kx].transpose(0, 3, 1, 2)
            ys = slice(ky, ky + s * (ho - 1) + 1, s)
            xs = slice(kx, kx + s * (wo - 1) + 1, s)
            buf = buf.at[:, :, ys, xs].add(part)
    return buf[:, :, p : p + h, p : p + wd].reshape(r, g.in_size)


def conv_gemm(x: jax.Array, w: jax.Array, g: ConvGeometry) -> jax.Array:
    """The forward read as ``patches @ W^T`` (one product over rows x positions)."""
    y = matmul(conv.patches(x, g), w.T)
    return y.transpose(0, 2, 1).reshape(x.shape[0], g.conv_size)


def timed(fn, *args, repeats: int) -> tuple[jax.Array, float]:
    compiled = jax.jit(fn).lower(*args).compile()
    best, out = np.inf, None
    for _ in range(repeats):
        t = time.perf_counter()
        out = jax.block_until_ready(compiled(*args))
        best = min(best, time.perf_counter() - t)
    return out, best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("circuit", nargs="?", default="circuits/cifar_vgg5.yaml")
    ap.add_argument("--rows", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    spec = load_circuit(args.circuit).spec
    rng = np.random.default_rng(0)
    print(f"{spec.name}, {args.rows} rows, {jax.devices()[0]}, best of {args.repeats}")
    print(
        f"{'crossbar':<8} {'read':<10} {'GFLOP':>7} {'XLA conv ms':>12} {'GFLOP/s':>8} "
        f"{'as GEMM ms':>11} {'GFLOP/s':>8} {'speed-up':>8} {'rel. diff':>9}"
    )
    for name, g in zip(spec.crossbar_names, spec.geometries, strict=True):
        if g is None:
            continue
        w = jnp.asarray(rng.standard_normal((g.channels, g.n_in), np.float32) / np.sqrt(g.n_in))
        x = jnp.asarray(rng.random((args.rows, g.in_size), np.float32))
        d = jnp.asarray(rng.random((args.rows, g.conv_size), np.float32))
        gflop = 2 * args.rows * g.channels * g.n_in * g.positions / 1e9
        for label, ref_fn, alt_fn, a in (
            ("forward", lambda a, w, g=g: conv.conv_read(a, w, g), conv_gemm, x),
            ("transposed", lambda a, w, g=g: conv.conv_transpose(a, w, g), convT_gemm, d),
        ):
            ref, t_ref = timed(ref_fn, a, w, repeats=args.repeats)
            alt, t_alt = timed(lambda a, w, f=alt_fn, g=g: f(a, w, g), a, w, repeats=args.repeats)
            diff = float(jnp.max(jnp.abs(ref - alt)) / jnp.max(jnp.abs(ref)))
            print(
                f"{name:<8} {label:<10} {gflop:>7.3g} {t_ref * 1e3:>12.1f} {gflop / t_ref:>8.1f} "
                f"{t_alt * 1e3:>11.1f} {gflop / t_alt:>8.1f} {t_ref / t_alt:>8.1f} {diff:>9.1e}",
                flush=True,
            )


if __name__ == "__main__":
    main()
