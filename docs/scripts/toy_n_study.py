import jax; jax.config.update("jax_enable_x64", True)
from analog_hep.spec import load_circuit
from analog_hep.studies import gradcheck
c = load_circuit('toy')
print("| abs(beta) | N=2 | N=4 | N=8 | N=16 | N=32 | classic |")
print("|---|---|---|---|---|---|---|")
for beta in [0.1, 0.5, 0.8, 1.0, 1.5]:
    row=[]
    for N in [2,4,8,16,32]:
        r = gradcheck(c, method='hep', points=N, beta=beta, batch=1, seed=0, free_steps=400, nudge_steps=400)
        row.append(f"{r.rel_error_total:.1e}")
    r = gradcheck(c, method='classic', points=1, beta=beta, batch=1, seed=0, free_steps=400, nudge_steps=400)
    row.append(f"{r.rel_error_total:.1e}")
    print(f"| {beta} | " + " | ".join(row) + " |", flush=True)
