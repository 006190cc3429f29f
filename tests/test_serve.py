"""Triton: the generated model repository, and nin-serve on a real Triton server (PyTriton)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from nin_edge.benchmarks.serving import free_ports
from nin_edge.export import ExportConfig, run_export
from nin_edge.export.cli import main as export_cli
from nin_edge.export.targets.triton import TritonOptions, write_triton_repo
from nin_edge.runtime import Classifier
from nin_edge.runtime.core.errors import CheckFailedError, ConfigError
from nin_edge.runtime.serving.model_config import read_model_config as read_config

from tests.conftest import assert_one_line_error, run_cli

pytest.importorskip("tritonclient.grpc.model_config_pb2", reason="the serve extra (tritonclient) is not installed")

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

SIZE = 72


@pytest.fixture(scope="module")
def model72(tmp_path_factory):
    from tests.conftest import he_init_nin

    folder = tmp_path_factory.mktemp("serve")
    ckpt = folder / "nin72.pt"
    torch.save(he_init_nin(SIZE).state_dict(), ckpt)
    out = folder / "nin72.onnx"
    run_export(ExportConfig(weights=str(ckpt), input_size=SIZE, output=str(out), check_batch_sizes=(1,)))
    return out


def test_config_round_trip_matches_the_onnx_file(model72, tmp_path):
    labels = tuple(f"c{i}" for i in range(10))
    repo = write_triton_repo(
        onnx_model=model72,
        repository=tmp_path / "repo",
        labels=labels,
        options=TritonOptions(
            name="nin", max_batch=32, preferred_batch_sizes=(4, 8), queue_delay_us=500, instance_count=2
        ),
    )
    cfg = read_config(repo.config_path)
    model = onnx.load(str(tmp_path / "repo" / "nin" / "1" / "model.onnx"))
    assert (tmp_path / "repo" / "nin" / "1" / "model.onnx").read_bytes() == model72.read_bytes()
    assert cfg.name == "nin" and cfg.platform == "onnxruntime_onnx" and cfg.max_batch_size == 32
    onnx_in = model.graph.input[0].type.tensor_type
    assert cfg.input[0].name == model.graph.input[0].name == "input"
    assert list(cfg.input[0].dims) == [d.dim_value for d in onnx_in.shape.dim[1:]] == [1, SIZE, SIZE]
    assert cfg.output[0].name == "logits" and list(cfg.output[0].dims) == [10]
    from tritonclient.grpc import model_config_pb2 as pb

    assert pb.DataType.Name(cfg.input[0].data_type) == "TYPE_FP32"
    assert cfg.output[0].label_filename == "labels.txt"
    assert (tmp_path / "repo" / "nin" / "labels.txt").read_text().splitlines() == list(labels)
    assert list(cfg.dynamic_batching.preferred_batch_size) == [4, 8]
    assert cfg.dynamic_batching.max_queue_delay_microseconds == 500
    assert (
        cfg.instance_group[0].count == 2 and pb.ModelInstanceGroup.Kind.Name(cfg.instance_group[0].kind) == "KIND_CPU"
    )
    assert not cfg.optimization.execution_accelerators.gpu_execution_accelerator


def test_tensorrt_accelerator_profile_matches_max_batch(model72, tmp_path):
    repo = write_triton_repo(
        onnx_model=model72,
        repository=tmp_path,
        labels=(),
        options=TritonOptions(max_batch=64, instance_kind="gpu", tensorrt=True, tensorrt_fp16=True),
    )
    (trt,) = read_config(repo.config_path).optimization.execution_accelerators.gpu_execution_accelerator
    assert trt.name == "tensorrt" and trt.parameters["precision_mode"] == "FP16"
    assert trt.parameters["trt_profile_min_shapes"] == f"input:1x1x{SIZE}x{SIZE}"
    assert trt.parameters["trt_profile_max_shapes"] == f"input:64x1x{SIZE}x{SIZE}"


def test_no_batching_keeps_the_batch_axis_in_dims(model72, tmp_path):
    repo = write_triton_repo(onnx_model=model72, repository=tmp_path, labels=(), options=TritonOptions(max_batch=0))
    cfg = read_config(repo.config_path)
    assert cfg.max_batch_size == 0 and list(cfg.input[0].dims) == [-1, 1, SIZE, SIZE]
    assert list(cfg.output[0].dims) == [-1, 10] and not cfg.HasField("dynamic_batching")


def test_fixed_batch_model_is_refused_for_batching(tmp_path):
    from tests.conftest import foreign_model

    fixed = foreign_model(tmp_path / "fixed.onnx", shape=(1, 1, 8, 8))
    with pytest.raises(CheckFailedError, match="has a fixed first axis"):
        write_triton_repo(onnx_model=fixed, repository=tmp_path / "r", labels=(), options=TritonOptions(max_batch=8))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (TritonOptions(max_batch=8, preferred_batch_sizes=(16,)), "must lie in 1..8"),
        (TritonOptions(tensorrt=True), "the TensorRT accelerator needs --instance-kind gpu"),
        (TritonOptions(name="a/b"), "--triton-name 'a/b': expected a plain name of letters, digits"),
        (TritonOptions(instance_kind="tpu"), "instance kind must be one of cpu, gpu, got .tpu."),
    ],
)
def test_bad_triton_options(model72, tmp_path, options, message):
    with pytest.raises(ConfigError, match=message):
        write_triton_repo(onnx_model=model72, repository=tmp_path, labels=(), options=options)


def test_export_cli_writes_the_repository(tmp_path):
    result = run_cli(
        export_cli,
        [
            "--input-size",
            SIZE,
            "--output",
            tmp_path / "n.onnx",
            "--triton-repo",
            tmp_path / "repo",
            "--max-batch",
            16,
            "--preferred-batch-sizes",
            "4,8",
            "--check-batch-sizes",
            1,
        ],
    )
    assert result.exit_code == 0, result.stderr
    assert "Triton model repository" in result.stdout
    assert read_config(tmp_path / "repo" / "nin" / "config.pbtxt").max_batch_size == 16
    (tmp_path / "file").write_text("x")
    assert_one_line_error(
        run_cli(
            export_cli, ["--input-size", SIZE, "--output", tmp_path / "m.onnx", "--triton-repo", tmp_path / "file"]
        ),
        "exists and is not a folder",
    )
    assert not (tmp_path / "m.onnx").exists()


def start_server(model: Path, log: Path) -> dict:
    """Start ``nin-serve`` in its own process group and wait until Triton says the model is ready."""
    pytest.importorskip("pytriton", reason="the serve extra (nvidia-pytriton) is not installed")
    import tritonclient.http as httpclient

    http, grpc, metrics = free_ports(3)
    exe = Path(sys.executable).with_name("nin-serve")
    ports = ["--http-port", str(http), "--grpc-port", str(grpc), "--metrics-port", str(metrics)]
    # A file, not a pipe: Triton's stub processes inherit it, and a pipe nobody drains can stall them.
    stderr = log.with_name(log.name + ".stderr")
    with stderr.open("w") as err:
        proc = subprocess.Popen(
            [str(exe), str(model), *ports, "--max-batch", "16", "--queue-delay-us", "20000", "--batch-log", str(log)],
            stdout=subprocess.DEVNULL,
            stderr=err,
            start_new_session=True,
        )
    client = httpclient.InferenceServerClient(url=f"127.0.0.1:{http}")
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            if client.is_model_ready("nin"):
                return {
                    "url": f"http://127.0.0.1:{http}",
                    "grpc": f"127.0.0.1:{grpc}",
                    "proc": proc,
                    "log": log,
                    "model": model,
                    "stderr": stderr,
                }
        except Exception:  # not listening yet
            pass
        if proc.poll() is not None:
            pytest.fail(f"nin-serve exited early: {stderr.read_text()[-2000:]}")
        time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGKILL)
    pytest.fail("Triton did not become ready in 90 s")


@pytest.fixture(scope="module")
def server(model72, tmp_path_factory):
    started = start_server(model72, tmp_path_factory.mktemp("serve-log") / "batches.txt")
    yield started
    if started["proc"].poll() is None:
        os.killpg(started["proc"].pid, signal.SIGKILL)


def test_concurrent_requests_are_batched_and_exact(server):
    import tritonclient.http as httpclient

    clf = Classifier(server["model"], "cpu")
    rng = np.random.default_rng(0)
    images = [rng.random((1, 1, SIZE, SIZE), dtype=np.float32) for _ in range(32)]
    address = server["url"].split("://")[1]

    def ask(x):
        client = httpclient.InferenceServerClient(url=address)
        inp = httpclient.InferInput("input", list(x.shape), "FP32")
        inp.set_data_from_numpy(x)
        return client.infer("nin", [inp]).as_numpy("logits")

    with ThreadPoolExecutor(max_workers=32) as pool:
        answers = list(pool.map(ask, images))
    for x, got in zip(images, answers, strict=False):
        np.testing.assert_allclose(got, clf.logits(x), atol=1e-5)
    sizes = [int(line) for line in server["log"].read_text().split()]
    assert sum(sizes) == 32
    assert max(sizes) > 1, f"no request was batched: {sizes}"


def test_nin_infer_through_triton_matches_in_process(server, tmp_path):
    from nin_edge.runtime.cli.infer import main as infer_cli

    np.save(tmp_path / "x.npy", np.random.default_rng(1).random((3, 1, SIZE, SIZE), dtype=np.float32))
    local = run_cli(infer_cli, [server["model"], tmp_path / "x.npy", "--format", "json", "--top-k", 3])
    remote = run_cli(
        infer_cli,
        [server["model"], tmp_path / "x.npy", "--format", "json", "--top-k", 3, "--triton-url", server["url"]],
    )
    assert remote.exit_code == 0, remote.stderr
    import json

    a, b = json.loads(local.stdout), json.loads(remote.stdout)
    assert b["providers"] == [f"triton {server['url']}"]
    for ra, rb in zip(a["results"], b["results"], strict=False):
        assert [p["label"] for p in ra["top"]] == [p["label"] for p in rb["top"]]
        assert [p["probability"] for p in ra["top"]] == pytest.approx([p["probability"] for p in rb["top"]], abs=1e-5)
    assert_one_line_error(
        run_cli(infer_cli, [server["model"], tmp_path / "x.npy", "--triton-url", "http://127.0.0.1:1"]),
        "cannot reach Triton",
    )


def test_nin_infer_with_defaults_sends_batches_the_server_takes(server, tmp_path):
    """nin-infer's --max-batch (32) is more than the server's (16): it reads the server's and splits."""
    from nin_edge.runtime.cli.infer import main as infer_cli
    from nin_edge.runtime.serving.triton import TritonClassifier

    x = np.random.default_rng(2).random((40, 1, SIZE, SIZE), dtype=np.float32)
    np.save(tmp_path / "x.npy", x)
    before = len(server["log"].read_text().split()) if server["log"].exists() else 0
    remote = run_cli(
        infer_cli, [server["model"], tmp_path / "x.npy", "--format", "json", "--triton-url", server["url"]]
    )
    assert remote.exit_code == 0, remote.stderr
    assert len(json.loads(remote.stdout)["results"]) == 40
    sizes = [int(n) for n in server["log"].read_text().split()[before:]]
    assert sum(sizes) == 40 and max(sizes) <= 16, sizes
    clf = Classifier(server["model"], "cpu")
    triton = TritonClassifier(server["url"], "nin", clf)
    assert triton.max_batch == 16
    np.testing.assert_allclose(triton.logits(x[:17]), clf.logits(x[:17]), atol=1e-5)


def _ask_raw(address: str, x: np.ndarray):
    """One request on its own HTTP client: ``("ok", logits)`` or ``(status, message)``."""
    import tritonclient.http as httpclient
    from tritonclient.utils import InferenceServerException

    client = httpclient.InferenceServerClient(url=address)
    inp = httpclient.InferInput("input", list(x.shape), "FP32")
    inp.set_data_from_numpy(x)
    try:
        return "ok", client.infer("nin", [inp]).as_numpy("logits")
    except InferenceServerException as exc:
        return exc.status(), exc.message()


def test_a_bad_request_fails_alone_with_a_400_and_no_traceback(server):
    clf = Classifier(server["model"], "cpu")
    rng = np.random.default_rng(2)
    images = [rng.random((1, 1, SIZE, SIZE), dtype=np.float32) for _ in range(36)]
    for k in range(0, 36, 6):
        images[k][0, 0, 3, 3] = np.nan
    for k in range(3, 36, 12):
        images[k] = np.full((1, 1, SIZE, SIZE), 3e38, np.float32)  # finite, but the logits are not
    address = server["url"].split("://")[1]
    with ThreadPoolExecutor(max_workers=36) as pool:
        answers = list(pool.map(lambda x: _ask_raw(address, x), images))
    sizes = [int(line) for line in server["log"].read_text().split()]
    assert max(sizes) > 1, f"no request was batched, so nothing was isolated: {sizes}"
    for k, (x, (status, got)) in enumerate(zip(images, answers, strict=True)):
        if k % 6 == 0:
            assert (status, got) == ("400", "input 'input': 1 value is NaN or infinite; expected finite numbers")
        elif k % 12 == 3:
            assert status == "400" and "logits for image 0 are NaN or infinite" in got, (status, got)
            assert "Traceback" not in got and "/" not in got
        else:
            assert status == "ok", (k, got)
            np.testing.assert_allclose(got, clf.logits(x), atol=1e-5)


def _post_json(url: str, body: dict) -> tuple[int, dict]:
    import urllib.error
    import urllib.request

    request = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@pytest.mark.parametrize("batch", [2**31, 2**40])
def test_a_json_request_claiming_a_huge_batch_is_a_400_and_the_server_stays_up(server, batch):
    """Triton's JSON parser allocates the claimed shape first (std::bad_alloc killed it); the front refuses it."""
    url = f"{server['url']}/v2/models/nin/infer"
    huge = {"inputs": [{"name": "input", "shape": [batch, 1, SIZE, SIZE], "datatype": "FP32", "data": [0.0]}]}
    status, answer = _post_json(url, huge)
    assert status == 400
    assert answer == {
        "error": f"input 'input': shape [{batch}, 1, {SIZE}, {SIZE}] claims {batch * SIZE * SIZE:,} values; this "
        f"server takes at most 16 images of 1x{SIZE}x{SIZE} ({16 * SIZE * SIZE:,} values) per request"
    }
    # Triton would read the first of two equal keys, Python the last: such a request is refused whole.
    twice = json.dumps(huge["inputs"][0]).replace('"shape"', '"shape": [1, 1, 1, 1], "shape"', 1)
    status, answer = _post_json(url, {"inputs": [json.loads(twice, object_pairs_hook=list)]})
    assert status == 400
    x = np.random.default_rng(4).random((1, 1, SIZE, SIZE), dtype=np.float32)
    good = {"inputs": [{"name": "input", "shape": list(x.shape), "datatype": "FP32", "data": x.ravel().tolist()}]}
    status, answer = _post_json(url, good)
    assert status == 200, answer
    # gRPC requests reach Triton directly: it checks their byte size against the shape first.
    import grpc
    from tritonclient.grpc import service_pb2, service_pb2_grpc

    stub = service_pb2_grpc.GRPCInferenceServiceStub(grpc.insecure_channel(server["grpc"]))
    for typed in (False, True):
        request = service_pb2.ModelInferRequest(model_name="nin")
        tensor = request.inputs.add(name="input", datatype="FP32", shape=[batch, 1, SIZE, SIZE])
        if typed:
            tensor.contents.fp32_contents.append(0.0)
        else:
            request.raw_input_contents.append(b"\0\0\0\0")
        with pytest.raises(grpc.RpcError, match="input byte size mismatch"):
            stub.ModelInfer(request, timeout=60)
    expected = Classifier(server["model"], "cpu").logits(x)
    np.testing.assert_allclose(np.array(answer["outputs"][0]["data"]).reshape(1, -1), expected, atol=1e-5)
    assert server["proc"].poll() is None


def _tritonservers(group: int) -> list[int]:
    """Live ``tritonserver`` processes of a process group."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        comm = text[text.find("(") + 1 : text.rfind(")")]
        state, _ppid, pgrp = text[text.rfind(")") + 2 :].split(" ", 3)[:3]
        if comm == "tritonserver" and state != "Z" and int(pgrp) == group:
            pids.append(int(stat.parent.name))
    return pids


def _interrupt_and_check(proc: subprocess.Popen, stderr: Path) -> None:
    """Ctrl-C: nin-serve exits 130 with "interrupted" and no tritonserver of its group is left."""
    os.killpg(proc.pid, signal.SIGINT)
    try:
        proc.wait(timeout=60)
        time.sleep(0.5)
        left = _tritonservers(proc.pid)
    finally:
        with contextlib.suppress(ProcessLookupError):  # nothing of the group is left: as it should be
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, stderr.read_text()[-2000:]
    assert stderr.read_text().strip().splitlines()[-1] == "interrupted"
    assert "Traceback" not in stderr.read_text()
    assert left == [], f"tritonserver still running after nin-serve exited: {left}"


def test_ctrl_c_stops_the_server_and_exits_130(server):
    _interrupt_and_check(server["proc"], server["stderr"])


def test_ctrl_c_while_triton_starts_stops_it_and_exits_130(model72, tmp_path):
    http, grpc, metrics = free_ports(3)
    exe = Path(sys.executable).with_name("nin-serve")
    ports = ["--http-port", str(http), "--grpc-port", str(grpc), "--metrics-port", str(metrics)]
    stderr = tmp_path / "stderr"
    with stderr.open("w") as err:
        proc = subprocess.Popen(
            [str(exe), str(model72), *ports],
            stderr=err,
            start_new_session=True,
            # SIGINT as a terminal user has it, even when pytest runs as a background job (SIGINT ignored).
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
    deadline = time.monotonic() + 60
    while not _tritonservers(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)  # Triton is starting: PyTriton waits in its connect()
    _interrupt_and_check(proc, stderr)


def test_a_dying_server_makes_nin_serve_exit_non_zero_with_the_reason(model72, tmp_path):
    started = start_server(model72, tmp_path / "log.txt")
    proc = started["proc"]
    try:
        (triton,) = _tritonservers(proc.pid)
        os.kill(triton, signal.SIGSEGV)  # Triton prints "Signal (11) received." and dies
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    last = started["stderr"].read_text().strip().splitlines()[-1]
    assert proc.returncode == 1, last
    assert last.startswith("error: Triton Inference Server stopped while serving nin (")
    assert "Signal (11) received" in last and "supervisor restarts nin-serve" in last
