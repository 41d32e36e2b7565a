#!/usr/bin/env bash
# The conv-chip GPU check of docs/performance.md ("Conv chips"; issue 14, item 7), as one
# prepared script: the card, then Table 2's chip (circuits/cifar_vgg5.yaml) at batch 128
# through `analog-hep bench --case cifar_vgg5` (free and nudge settles per step, the
# settle's GFLOP/s next to the card's convolution and matrix rates on the same shapes, the
# projected CIFAR-10 epoch next to the paper's 235 s), then each conv read alone
# (benchmarks/conv_reads.py). Results go to $OUT (or ./gpu_out).
#
#   bash benchmarks/gpu_conv.sh            # SETTLE_STEPS=K times K steps per settle (default 5)
#
# Not run yet: no GPU was lent when it was written (the CPU figures are in the docs).
source "$(dirname "$0")/_gpu_env.sh"
{
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
  python3 -c "import jax, jaxlib; print('jax', jax.__version__, jax.devices())"
} 2>&1 | tee "$out/gpu.txt"
timeout "${BENCH_TIMEOUT_S:-300}" python3 -m analog_hep bench --case cifar_vgg5 \
  --settle-steps "${SETTLE_STEPS:-5}" --json >"$out/bench_cifar_vgg5.json" \
  2> >(tee "$out/bench_cifar_vgg5.txt" >&2)
echo "bench cifar_vgg5 exit $?"
timeout "${READS_TIMEOUT_S:-120}" python3 benchmarks/conv_reads.py circuits/cifar_vgg5.yaml \
  --rows 128 --repeats 5 2>&1 | tee "$out/conv_reads.txt"
echo "conv_reads exit $?"
