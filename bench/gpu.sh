#!/usr/bin/env bash
# The GPU check of issue 11, in one go, on a machine with a CUDA device:
#   1. the `cuda` tests (tests/test_cuda.py: AMP training, fast paths vs reference, a two-trial search on half a
#      GPU each, the ONNX export of a CUDA-trained checkpoint);
#   2. bench/throughput.py on the GPU: the Lite/Dite presets at 256x192, float32 and bf16 autocast, fast paths
#      and reference side by side.
# It prints the figures and keeps them in $OUT (default bench/gpu-out/): pytest.txt, throughput.jsonl, gpu.txt.
#   bash bench/gpu.sh                     # from the repository root, after `make setup` (or any env with hrnas)
#   PYTHON=python3 OUT=/tmp/gpu bash bench/gpu.sh
set -uo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}
OUT=${OUT:-bench/gpu-out}
BATCH=${BATCH:-32}
ITERS=${ITERS:-20}
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

if ! "$PYTHON" -c 'import torch' 2>/dev/null; then
    echo "error: $PYTHON cannot import torch: run make setup first, or set PYTHON to an environment with hrnas" >&2
    exit 2
fi
if ! "$PYTHON" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
    echo "error: torch $("$PYTHON" -c 'import torch; print(torch.__version__)') sees no CUDA device:" \
        "bench/gpu.sh needs a GPU machine and a CUDA build of torch" >&2
    exit 2
fi
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || true
  "$PYTHON" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda,
        torch.cuda.get_device_name(0), "capability", torch.cuda.get_device_capability(0),
        "native bf16" if torch.cuda.get_device_capability(0) >= (8, 0) else "no native bf16: fp16 autocast")'; } | tee "$OUT/gpu.txt"

echo "== cuda tests"
"$PYTHON" -m pytest -m cuda -rs -q tests/test_cuda.py 2>&1 | tee "$OUT/pytest.txt"
tests=${PIPESTATUS[0]}

echo "== training throughput on the GPU (batch $BATCH, $ITERS timed steps per configuration)"
status=0
for amp in off bf16; do
    "$PYTHON" bench/throughput.py --device cuda --amp "$amp" --batch "$BATCH" --iters "$ITERS" --warmup 5 \
        --input 256x192 --arch naive-litehrnet-18 --arch litehrnet-18 --arch litehrnet-30 --arch ditehrnet-18 \
        --arch ditehrnet-30 --json-out "$OUT/throughput.jsonl" || status=$?
done
echo "figures: $OUT/ (tests exit $tests, throughput exit $status)"
[ "$tests" -eq 0 ] && [ "$status" -eq 0 ]
