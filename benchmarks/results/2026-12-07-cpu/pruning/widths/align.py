"""Speed of NiN 112 INT8 (x86-vnni recipe) and FP32 against block widths: random weights, ORT 2 threads, b32."""
import sys, time, json, numpy as np, torch, onnxruntime as ort
from nin_edge.models.zoo import nin
from nin_edge.export.precision import quantize_int8, choose_recipe
from nin_edge.export.calibration import CalibrationSet

WIDTHS = [tuple(map(int, w.split("/"))) for w in sys.argv[1:]]
rng = np.random.default_rng(0)
calib = CalibrationSet(rng.standard_normal((64, 1, 112, 112)).astype(np.float32), None, "random")
x = rng.standard_normal((32, 1, 112, 112)).astype(np.float32)
sessions = {}
for w in WIDTHS:
    torch.manual_seed(0)
    m = nin(widths=w, input_size=112).eval()
    fp = f"/work/runs/align/{'-'.join(map(str,w))}.onnx"
    torch.onnx.export(m, torch.zeros(1, 1, 112, 112), fp, input_names=["input"], output_names=["logits"],
                      dynamic_axes={"input": {0: "batch"}}, opset_version=17, dynamo=False)
    q = fp.replace(".onnx", ".int8.onnx")
    quantize_int8(fp32_path=fp, output=q, calibration=calib, recipe=choose_recipe("x86-vnni"))
    for tag, path in (("fp32", fp), ("int8", q)):
        so = ort.SessionOptions(); so.intra_op_num_threads = 2
        sessions[(w, tag)] = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
times = {k: [] for k in sessions}
for _ in range(3):  # interleaved rounds
    for k, s in sessions.items():
        for _ in range(3): s.run(None, {"input": x})
        t = []
        for _ in range(30):
            t0 = time.perf_counter(); s.run(None, {"input": x}); t.append(time.perf_counter() - t0)
        times[k].append(np.median(t) * 1e3)
base = min(times[(WIDTHS[0], "fp32")])
for k, v in times.items():
    print(f"{'/'.join(map(str,k[0])):>12} {k[1]}  b32 ms {min(v):7.2f}  img/s {32e3/min(v):7.0f}  vs first fp32 {base/min(v):4.1f}x")
