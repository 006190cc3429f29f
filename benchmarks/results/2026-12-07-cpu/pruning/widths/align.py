"""Speed of NiN 112 INT8 (x86-vnni recipe) and FP32 against block widths: random weights, onnxruntime CPU
(all cores), batch 32, median of 30 runs, best of 3 interleaved rounds.

Usage: python align.py 96/256/384 64/176/272 ...  (the first widths are the baseline)
"""

import sys
import tempfile
import time

import numpy as np
import torch
from nin_edge.export.calibration import CalibrationSet
from nin_edge.export.precision import choose_recipe, quantize_int8
from nin_edge.models.zoo import nin
from nin_edge.runtime.session import plain_session

WIDTHS = [tuple(map(int, w.split("/"))) for w in sys.argv[1:]]
OUT = tempfile.mkdtemp()
rng = np.random.default_rng(0)
calib = CalibrationSet(rng.standard_normal((64, 1, 112, 112)).astype(np.float32), None, "random")
x = rng.standard_normal((32, 1, 112, 112)).astype(np.float32)
sessions = {}
for w in WIDTHS:
    torch.manual_seed(0)
    m = nin(widths=w, input_size=112).eval()
    fp = f"{OUT}/{'-'.join(map(str, w))}.onnx"
    torch.onnx.export(
        m,
        torch.zeros(1, 1, 112, 112),
        fp,
        input_names=["input"],
        output_names=["logits"],
        dynamic_axes={"input": {0: "batch"}},
        opset_version=17,
        dynamo=False,
    )
    q = fp.replace(".onnx", ".int8.onnx")
    quantize_int8(fp32_path=fp, output=q, calibration=calib, recipe=choose_recipe("x86-vnni"))
    for tag, path in (("fp32", fp), ("int8", q)):
        sessions[(w, tag)] = plain_session(path)
times = {k: [] for k in sessions}
for _ in range(3):  # interleaved rounds
    for k, s in sessions.items():
        for _ in range(3):
            s.run(None, {"input": x})
        t = []
        for _ in range(30):
            t0 = time.perf_counter()
            s.run(None, {"input": x})
            t.append(time.perf_counter() - t0)
        times[k].append(np.median(t) * 1e3)
base = min(times[(WIDTHS[0], "fp32")])
for k, v in times.items():
    name = "/".join(map(str, k[0]))
    ms = min(v)
    print(f"{name:>12} {k[1]}  b32 ms {ms:7.2f}  img/s {32e3 / ms:7.0f}  vs first fp32 {base / ms:4.1f}x")
