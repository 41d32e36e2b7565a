#!/usr/bin/env bash
# Where a training step's compile time goes on a GPU, as one prepared script (issue 7: the
# H100 compiled the Table 1 step in 16-51 s against the < 15 s goal). For the slowest
# (batch 128, noise 0) and a batch-20 noisy case it runs benchmarks/compile_probe.py with
# XLA's defaults, without GEMM autotuning, and without Triton GEMM fusions, then twice with
# JAX's persistent compilation cache (the second run loads what the first compiled).
# One JSON line per run in $OUT/compile.jsonl (or ./gpu_out).
#
#   bash benchmarks/gpu_compile.sh
source "$(dirname "$0")/_gpu_env.sh"
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>&1 | tee "$out/gpu.txt"
probe() {  # label, XLA_FLAGS, probe arguments...
  local label=$1 flags=$2
  shift 2
  printf '{"label": "%s", "xla_flags": "%s"} ' "$label" "$flags" | tee -a "$out/compile.jsonl"
  XLA_FLAGS="$flags" timeout "${PROBE_TIMEOUT_S:-100}" python3 benchmarks/compile_probe.py "$@" \
    2>>"$out/log.txt" | tee -a "$out/compile.jsonl"
  echo "exit $?" | tee -a "$out/compile.jsonl"
}
for case in "--batch 128 --noise 0" "--batch 20 --noise 0.04"; do
  probe default "" $case
  probe autotune0 "--xla_gpu_autotune_level=0" $case
  probe no_triton_gemm "--xla_gpu_enable_triton_gemm=false" $case
done
rm -rf /tmp/jax_cache
probe cache_cold "" --batch 128 --noise 0 --cache /tmp/jax_cache
probe cache_warm "" --batch 128 --noise 0 --cache /tmp/jax_cache
