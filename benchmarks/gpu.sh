#!/usr/bin/env bash
# Everything a GPU owner measures, in one command (needs `pip install 'nin-edge[gpu]'`):
#   bash benchmarks/gpu.sh [OUT_DIR] [FASHION_MNIST_DIR]
# 1. CUDA against CPU on the first 1,000 test images (FP32, FP16): agreement, node placement, IO binding;
# 2. nin-bench on CUDA, FP32 and FP16 models, batches 1-256, with PyTorch eager on the GPU beside it;
# 3. torch.compile rows for NiN; 4. TensorRT FP32 / FP16 rows where the TensorRT libraries load;
# 5. nin-serve on CUDA under 1, 8 and 32 concurrent clients, every answer checked.
# Each step writes JSON into OUT_DIR; a failing step is reported and the others still run.
set -uo pipefail
out=${1:-gpu-results}
data=${2:-}
batches=1,8,32,64,128,256
mkdir -p "$out"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failed=()

step() {  # step NAME COMMAND...: run, time and record a failure without stopping
    local name=$1
    shift
    echo "== $name" >&2
    local t0=$SECONDS
    if ! "$@"; then
        failed+=("$name")
    fi
    echo "== $name took $((SECONDS - t0)) s" >&2
}

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > "$out/nvidia-smi.csv" 2>&1
if [ -n "$data" ]; then
    step gpu-check python3 -m nin_edge.benchmarks.gpu_check --data "$data" --format json --cache-dir "$work/cache" \
        --output "$out/gpu-check.json"
fi
step bench-cuda nin-bench --provider cuda --precision fp32,fp16 --batch-sizes "$batches" --torch \
    --cache-dir "$work/cache" --format json --output "$out/bench-cuda.json"
step bench-compile nin-bench --provider cuda --models nin --batch-sizes 1,32,256 --torch-compile \
    --cache-dir "$work/cache" --format json --output "$out/bench-compile.json"
if python3 -c "import ctypes; ctypes.CDLL('libnvinfer.so.10')" 2>/dev/null; then
    step bench-tensorrt nin-bench --provider tensorrt --batch-sizes "$batches" --cache-dir "$work/cache" \
        --format json --output "$out/bench-tensorrt-fp32.json"
    step bench-tensorrt-fp16 nin-bench --provider tensorrt --tensorrt-fp16 --batch-sizes "$batches" \
        --cache-dir "$work/cache" --format json --output "$out/bench-tensorrt-fp16.json"
else
    echo "TensorRT libraries (libnvinfer.so.10) not found: no TensorRT rows (pip install tensorrt-cu13)" | tee "$out/tensorrt-skipped.txt" >&2
fi
step export nin-export --output "$work/nin.onnx" --format json
serve_args=(--provider cuda --clients 1,8,32 --seconds 3 --max-batch 32 --format json)
[ -n "$data" ] && serve_args+=(--data "$data")
step serving sh -c 'python3 -m nin_edge.benchmarks.serving "$@" > "'"$out"'/serving-cuda.json"' _ "$work/nin.onnx" "${serve_args[@]}"

if [ ${#failed[@]} -gt 0 ]; then
    echo "failed steps: ${failed[*]}" >&2
    exit 1
fi
