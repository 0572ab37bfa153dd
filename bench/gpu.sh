#!/usr/bin/env bash
# The GPU check, in one go (at most 10 minutes on one GPU), on a machine with a CUDA device:
#   1. the `cuda` tests (tests/test_cuda.py: AMP training, fast paths vs reference, a two-trial search on half a
#      GPU each, the ONNX export of a CUDA-trained checkpoint);
#   2. training throughput (bench/throughput.py): the Lite/Dite presets at 256x192, float32 and AMP (the precision
#      --amp auto picks for this GPU), beside the CPU figure of one preset;
#   3. a supernet step against the standalone step, sandwich steps with their new subnets built when run against
#      prefetched, and a score (bench/supernet.py --device cuda);
#   4. a two-trial search on the GPU (half a GPU per trial), on coco-mini.
# It prints the figures and keeps them in $OUT (default bench/gpu-out/): gpu.txt, pytest.txt, throughput.jsonl,
# supernet.txt, search.txt.
#   bash bench/gpu.sh                     # from the repository root, after `make setup` (or any env with hrnas)
#   PYTHON=python3 OUT=/tmp/gpu bash bench/gpu.sh
#   bash bench/gpu.sh --dry-run           # every step on the CPU at tiny sizes: no figure of it is a GPU figure
set -uo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}
OUT=${OUT:-bench/gpu-out}
DRY=0
[ "${1:-}" = "--dry-run" ] && DRY=1
if [ "$DRY" = 1 ]; then
    DEVICE=cpu; AMP=bf16; BATCH=2; ITERS=1; WARMUP=0; INPUT=64x64; ARCHS="--arch litehrnet-18"
    SUPERNET="--arch litehrnet-18 --random 0 --iters 1 --batch 2 --calibration 4 --sandwich-steps 1"
    GPUS=""; REF="--no-reference"
else
    DEVICE=cuda; AMP=auto; BATCH=${BATCH:-32}; ITERS=${ITERS:-20}; WARMUP=5; INPUT=256x192
    ARCHS="--arch naive-litehrnet-18 --arch litehrnet-18 --arch litehrnet-30 --arch ditehrnet-18 --arch ditehrnet-30"
    SUPERNET="--iters 5"; GPUS="--gpus-per-trial 0.5"; REF=""  # fast paths and reference side by side
fi
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

if ! "$PYTHON" -c 'import torch' 2>/dev/null; then
    echo "error: $PYTHON cannot import torch: run make setup first, or set PYTHON to an environment with hrnas" >&2
    exit 2
fi
if [ "$DRY" = 1 ]; then
    echo "dry run: every step on the CPU at tiny sizes; no figure below is a GPU figure" | tee "$OUT/gpu.txt"
else
    if ! "$PYTHON" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
        echo "error: torch $("$PYTHON" -c 'import torch; print(torch.__version__)') sees no CUDA device:" \
            "bench/gpu.sh needs a GPU machine and a CUDA build of torch (or --dry-run to try it on the CPU)" >&2
        exit 2
    fi
    { nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || true
      "$PYTHON" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda,
            torch.cuda.get_device_name(0), "capability", torch.cuda.get_device_capability(0),
            "native bf16" if torch.cuda.get_device_capability(0) >= (8, 0) else "no native bf16: fp16 autocast")'
    } | tee "$OUT/gpu.txt"
fi
status=0
step() {  # a step's name, then its command; its exit status is kept, the next step runs anyway
    local name=$1; shift
    echo "== $name"
    "$@" || { echo "   ($name exited $?)"; status=1; }
}

step "cuda tests" bash -c "'$PYTHON' -m pytest -m cuda -rs -q -p no:cacheprovider tests/test_cuda.py 2>&1 | tee '$OUT/pytest.txt'; exit \${PIPESTATUS[0]}"
rm -f "$OUT/throughput.jsonl"
for amp in off "$AMP"; do
    # shellcheck disable=SC2086
    step "training throughput on $DEVICE, --amp $amp (batch $BATCH, $ITERS timed steps)" \
        "$PYTHON" bench/throughput.py --device "$DEVICE" --amp "$amp" --batch "$BATCH" --iters "$ITERS" \
        --warmup "$WARMUP" --input "$INPUT" $ARCHS $REF --json-out "$OUT/throughput.jsonl"
done
step "the CPU figure beside it (litehrnet-18, 2 threads)" "$PYTHON" bench/throughput.py --device cpu --batch "$BATCH" \
    --iters 1 --warmup 0 --input "$INPUT" --arch litehrnet-18 --no-reference --json-out "$OUT/throughput.jsonl"
# shellcheck disable=SC2086
step "a supernet step and a score on $DEVICE" bash -c "'$PYTHON' bench/supernet.py --device $DEVICE $SUPERNET 2>&1 | tee '$OUT/supernet.txt'; exit \${PIPESTATUS[0]}"
SEARCH_DIR=$(mktemp -d)
MINI="tests/data/coco-mini/test_coco.json:tests/data/coco-mini"
# shellcheck disable=SC2086
step "a two-trial search on $DEVICE" bash -c "'$PYTHON' experiments/search.py --budget 0.5G --trials 2 --epochs 1 \
    --data $MINI --input 64x64 --storage '$SEARCH_DIR' --experiment gpu-check $GPUS --json 2>&1 | tail -5 \
    | tee '$OUT/search.txt'; exit \${PIPESTATUS[0]}"
rm -rf "$SEARCH_DIR"
echo "figures: $OUT/ (exit $status)"
exit "$status"
