"""Render the pruning table (docs/pruning.md) from the measured JSON files in a results folder.

usage: table.py RESULTS_DIR MODEL[=LABEL] ...   (files: bench.json, eval-MODEL-fp32.json, eval-MODEL-int8.json,
web-MODEL.json)
"""

import json
import sys
from pathlib import Path

root = Path(sys.argv[1])
bench = json.loads((root / "bench.json").read_text())["results"]


def row(model, precision, batch):
    for r in bench:
        wanted = (model, precision, batch, "onnxruntime")
        if (r["model"], r["precision"], r["batch_size"], r["backend"]) == wanted:
            return r
    raise SystemExit(f"no bench row for {model} {precision} {batch}")


def acc(model, precision):
    d = json.loads((root / f"eval-{model}-{precision}.json").read_text())
    return d["results"][-1]["accuracy"], d["images"]


def web(model):
    d = json.loads((root / f"web-{model}.json").read_text())
    rows = [r for r in d["latency"] if r["where"].startswith("browser")]
    return {(r["precision"], r["threads"]): r["model_p50_ms"] for r in rows}, d


models = [a.split("=")[0] for a in sys.argv[2:]]
labels = {a.split("=")[0]: (a.split("=", 1)[1] if "=" in a else a) for a in sys.argv[2:]}
base = row(models[0], "fp32", 32)
HEAD = (
    "model",
    "file FP32 / INT8",
    "params",
    "MACs / image",
    "test accuracy FP32 (INT8)",
    "ORT FP32 b1 ms",
    "ORT FP32 b32 img/s",
    "ORT INT8 b1 ms",
    "ORT INT8 b32 img/s",
    "INT8 b32 vs unpruned FP32",
    "browser WASM model p50 ms FP32 / INT8 (1 thread)",
)
print("| " + " | ".join(HEAD) + " |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
for m in models:
    f1, f32, i1, i32 = row(m, "fp32", 1), row(m, "fp32", 32), row(m, "int8", 1), row(m, "int8", 32)
    (a32, n), (a8, _) = acc(m, "fp32"), acc(m, "int8")
    w, _ = web(m)
    files = json.loads((root / f"export-{m}.json").read_text())["files"]
    print(
        f"| {labels[m]} | {files['model.onnx'] / 1e6:.1f} / {files['model.int8.onnx'] / 1e6:.1f} MB "
        f"| {f1['params']:,} | {f1['macs'] / 1e6:.0f} M | {a32:.4f} ({a8:.4f}) on {n:,} "
        f"| {f1['p50_ms']:.2f} | {f32['throughput']:.0f} "
        f"| {i1['p50_ms']:.2f} | {i32['throughput']:.0f} | {i32['throughput'] / base['throughput']:.1f}x "
        f"| {w.get(('fp32', 1), float('nan')):.2f} / {w.get(('int8', 1), float('nan')):.2f} |"
    )
