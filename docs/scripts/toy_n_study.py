"""Relative error of hEP (N = 2..32) and classic EP against the exact gradient on the toy
chip, float64, one input (the table in docs/gradients.md). Run: python docs/scripts/toy_n_study.py
"""

import jax

jax.config.update("jax_enable_x64", True)

from analog_hep.spec import load_circuit  # noqa: E402  (after enabling x64)
from analog_hep.studies import gradcheck  # noqa: E402

circuit = load_circuit("toy")
common = dict(batch=1, seed=0, free_steps=400, nudge_steps=400)
print("| abs(beta) | N=2 | N=4 | N=8 | N=16 | N=32 | classic |")
print("|---|---|---|---|---|---|---|")
for beta in [0.1, 0.5, 0.8, 1.0, 1.5]:
    row = []
    for n in [2, 4, 8, 16, 32]:
        r = gradcheck(circuit, method="hep", points=n, beta=beta, **common)
        row.append(f"{r.rel_error_total:.1e}")
    r = gradcheck(circuit, method="classic", points=1, beta=beta, **common)
    row.append(f"{r.rel_error_total:.1e}")
    print(f"| {beta} | " + " | ".join(row) + " |", flush=True)
