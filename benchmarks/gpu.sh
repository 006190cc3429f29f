#!/usr/bin/env bash
# One command for a GPU owner: CUDA and TensorRT rows (FP32, and FP16 through TensorRT) at batches
# 1 to 256 for NiN, AlexNet and VGG-11, written to JSON. Needs onnxruntime-gpu (and TensorRT libs).
#   bash benchmarks/gpu.sh [OUT_DIR]
set -euo pipefail
out=${1:-.}
mkdir -p "$out"
batches=1,8,32,64,128,256
nin-bench --provider cuda --batch-sizes "$batches" --torch --format json --output "$out/bench-cuda.json"
nin-bench --provider tensorrt --batch-sizes "$batches" --format json --output "$out/bench-tensorrt-fp32.json"
nin-bench --provider tensorrt --trt-fp16 --batch-sizes "$batches" --format json --output "$out/bench-tensorrt-fp16.json"
