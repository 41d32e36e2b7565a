"""Time the crossbar outer-product update (``analog_hep.physics.outer_product_update``).

Default: a 512x512 crossbar (2 x 512 x 513 devices with the bias column), batch 20, bit
length 31, stochastic pulse trains, on the idealized_rpu card (constant step, c2c 0.3,
d2d 0.3) and the om_rram_array card (soft bounds, log-normal d2d, additive c2c). The request
is scaled so that the largest per-sample entry asks for ``--load`` coincidences (default 10;
31 or more saturates every pulse train). Prints compile time and the median time per update
over ``--repeats`` calls (after one warm-up), for per-pulse and lumped c2c noise and for the
expected and pulse-count modes.

    python benchmarks/bench_update.py [--n 512] [--batch 20] [--bit-length 31] [--json]
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import jax.random as jr
import yaml

from analog_hep.physics import draw_devices, outer_product_update
from analog_hep.spec._device import DeviceCard

DEVICES = Path(__file__).resolve().parents[1] / "devices"


def load(name: str) -> DeviceCard:
    return DeviceCard.model_validate(yaml.safe_load((DEVICES / f"{name}.yaml").read_text()))


def bench(card: DeviceCard, args: argparse.Namespace, mode: str, c2c: str) -> dict:
    n_out, n_in1 = args.n, args.n + 1
    key = jr.PRNGKey(0)
    dev = draw_devices(card, (2, n_out, n_in1), key=jr.fold_in(key, 1))
    g = 0.5 * (dev.b_min_S + dev.b_max_S)
    x = jr.uniform(jr.fold_in(key, 2), (args.batch, n_in1), jnp.float32, -1.0, 1.0)
    d = jr.uniform(jr.fold_in(key, 3), (args.batch, n_out), jnp.float32, -1.0, 1.0)
    g_unit = (card.conductance.g_max_S - card.conductance.g_min_S) / 2.0
    dw1 = float(jnp.mean(dev.dw_up_S + dev.dw_down_S)) / g_unit  # balanced coincidence step
    lr = jnp.float32(args.load * dw1)  # |x|, |d| <= 1: largest request ~ load coincidences
    upd = jax.jit(
        functools.partial(
            outer_product_update, card, mode=mode, bit_length=args.bit_length, c2c=c2c
        )
    )
    t0 = time.perf_counter()
    compiled = upd.lower(dev, g, x, d, lr=lr, g_unit_S=g_unit, key=key).compile()
    t_compile = time.perf_counter() - t0
    out = compiled(dev, g, x, d, lr=lr, g_unit_S=g_unit, key=key)
    jax.block_until_ready(out)
    times = []
    rep = out[1]
    for i in range(args.repeats):
        k = jr.fold_in(key, 100 + i)
        t0 = time.perf_counter()
        g_new, rep = compiled(dev, g, x, d, lr=lr, g_unit_S=g_unit, key=k)
        jax.block_until_ready(g_new)
        times.append(time.perf_counter() - t0)
    return {
        "card": card.name,
        "mode": mode,
        "c2c": c2c,
        "compile_s": round(t_compile, 3),
        "per_update_s": round(statistics.median(times), 4),
        "min_s": round(min(times), 4),
        "pulses_applied": int(rep.pulses_applied),
        "realised_over_requested": round(float(rep.realised_over_requested), 4),
        "n_clipped_request": int(rep.n_clipped_request),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=512)
    p.add_argument("--batch", type=int, default=20)
    p.add_argument("--bit-length", type=int, default=31)
    p.add_argument("--load", type=float, default=10.0)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--cards", default="idealized_rpu,om_rram_array")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    rows = []
    for name in args.cards.split(","):
        card = load(name)
        for mode, c2c in (
            ("stochastic", "per_pulse"),
            ("stochastic", "lumped"),
            ("expected", "per_pulse"),
            ("pulse_count", "per_pulse"),
        ):
            rows.append(bench(card, args, mode, c2c))
            if not args.json:
                r = rows[-1]
                print(
                    f"{r['card']:<15} {r['mode']:<11} c2c={r['c2c']:<9} compile "
                    f"{r['compile_s']:7.2f} s  per update {r['per_update_s'] * 1e3:9.1f} ms  "
                    f"pulses {r['pulses_applied']:>9}  realised/requested "
                    f"{r['realised_over_requested']:.3f}"
                )
    info = {
        "device": str(jax.devices()[0]),
        "crossbar": f"2 x {args.n} x {args.n + 1}",
        "batch": args.batch,
        "bit_length": args.bit_length,
        "load": args.load,
    }
    if args.json:
        print(json.dumps({"setup": info, "results": rows}))
    else:
        print(json.dumps(info))


if __name__ == "__main__":
    main()
