# Sourced by the prepared GPU scripts: output folder ($OUT or ./gpu_out) in $out, wheels of
# packages the GPU image lacks (pydantic and its helpers, placed in .whl/) installed into
# /tmp/site, and this checkout on PYTHONPATH.
set -uo pipefail
out=${OUT:-gpu_out}
mkdir -p "$out"
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
