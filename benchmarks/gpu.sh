#!/usr/bin/env bash
# The GPU check of docs/performance.md, as one prepared script (issue 7): the card, JAX's
# view of it, gradient exactness on the GPU, `analog-hep bench --json`, then the Table 1
# cases again with the settle loop unrolled (a GPU pays a launch per loop iteration).
# Results go to $OUT (or ./gpu_out).
#
#   bash benchmarks/gpu.sh
#
# Wheels of packages the GPU image lacks (pydantic and its helpers) may be placed in .whl/;
# they are installed into /tmp/site first. Each stage has its own time limit so that a slow
# stage still leaves the others' results.
source "$(dirname "$0")/_gpu_env.sh"
{
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
  python3 -c "import jax, jaxlib; print('jax', jax.__version__, jax.devices())"
} 2>&1 | tee "$out/gpu.txt"
grad="gradcheck mnist_mlp --points 10 --beta 0.1 --batch 10 --free-steps 1000 --nudge-steps 500"
timeout 90 python3 -m analog_hep $grad --json >"$out/gradcheck.json" 2>>"$out/log.txt"
python3 -c "import json,sys; d=json.load(open(sys.argv[1])); \
print('gradcheck cosine', d['cosine_total'], 'rel_error', d['rel_error_total'])" \
  "$out/gradcheck.json" 2>&1 | tee -a "$out/gpu.txt"
timeout "${BENCH_TIMEOUT_S:-200}" python3 -m analog_hep bench --json >"$out/bench.json" \
  2> >(tee "$out/bench_table.txt" >&2)
echo "bench exit $?"
for k in ${UNROLLS:-8 32}; do
  timeout 70 python3 -m analog_hep bench --table1-only --unroll "$k" --json \
    >"$out/bench_unroll$k.json" 2> >(tee "$out/bench_unroll$k.txt" >&2)
  echo "bench --unroll $k exit $?"
done
