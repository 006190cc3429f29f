"""OpenVINO execution provider (plugin): registration, device choice, the auto rule, options, errors."""

from __future__ import annotations

import threading
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import onnxruntime as ort
import pytest
from nin_edge.runtime import Classifier, OpenVinoOptions
from nin_edge.runtime import openvino as ov
from nin_edge.runtime.cli.infer import main as infer_cli
from nin_edge.runtime.core.cpu import cpu_flags, cpu_model
from nin_edge.runtime.core.errors import ConfigError, ProviderError
from nin_edge.runtime.profiling import profile_nodes
from nin_edge.runtime.providers import CPU, CUDA, OPENVINO, plan_providers

from tests.conftest import assert_one_line_error, run_cli


def _openvino_here() -> str | None:
    """None when OpenVINO can run a CPU session here, else why not."""
    try:
        ov.register(ort)
        ov.devices(ort, "CPU")
    except ProviderError as exc:
        return str(exc)
    return None


WHY_NOT = _openvino_here()
needs_device = pytest.mark.skipif(WHY_NOT is not None, reason=f"no OpenVINO CPU device here: {WHY_NOT}")


@pytest.mark.parametrize(
    ("flags", "prefers"),
    [("fpu sse avx2 fma", False), ("avx2 avx512f avx512_vnni", True), ("avx2 amx_tile amx_int8", True), ("", False)],
)
def test_auto_rule_follows_the_cpu_features(flags, prefers):
    cpuinfo = f"processor\t: 0\nflags\t\t: {flags}\n"
    assert ov.prefers_openvino(cpu_flags(cpuinfo)) is prefers
    plan = plan_providers("auto", [OPENVINO, CPU], fallback=False, cpu_flags=cpu_flags(cpuinfo))
    assert plan.names == ([OPENVINO, CPU] if prefers else [CPU])
    assert cpu_model(f"model name\t: AMD EPYC 9454\n{cpuinfo}") == "AMD EPYC 9454" and cpu_model(cpuinfo) is None


def test_auto_keeps_gpus_first_and_skips_openvino_it_cannot_use():
    assert plan_providers("auto", [CUDA, OPENVINO, CPU], fallback=False, cpu_flags={"avx512_vnni"}).names == [
        CUDA,
        OPENVINO,
        CPU,
    ]
    assert plan_providers("auto", [CPU], fallback=False, cpu_flags={"avx512_vnni"}).names == [CPU]


def test_aliases_and_the_reason_for_a_missing_openvino():
    for alias in ("openvino", "OV", "OpenVINOExecutionProvider"):
        assert plan_providers(alias, [OPENVINO, CPU], fallback=False).names == [OPENVINO, CPU]
    with pytest.raises(ProviderError, match="no device here"):
        plan_providers("ov", [CPU], fallback=False, why_missing={OPENVINO: "no device here"})
    plan = plan_providers("ov", [CPU], fallback=True, why_missing={OPENVINO: "no device here"})
    assert plan.names == [CPU] and plan.fallback_reason == f"no device here; falling back to {CPU}"


def test_registration_happens_once_from_many_threads(monkeypatch):
    monkeypatch.setattr(ov, "_registered", False)
    calls = []
    fake = SimpleNamespace(
        __version__="1.x", register_execution_provider_library=lambda name, path: calls.append((name, path))
    )
    plugin = SimpleNamespace(get_library_path=lambda: "/lib/plugin.so")
    threads = [threading.Thread(target=ov.register, args=(fake, lambda: plugin)) for _ in range(8)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert calls == [(OPENVINO, "/lib/plugin.so")]


def test_a_missing_extra_says_how_to_install_it(monkeypatch):
    monkeypatch.setattr(ov, "_registered", False)

    def missing():
        raise ImportError("No module named 'onnxruntime_ep_openvino'")

    with pytest.raises(ProviderError, match=r"not installed: pip install 'nin-edge\[openvino\]' \(x86-64 Linux or"):
        ov.register(SimpleNamespace(), missing)


def test_device_choice_and_what_is_offered_instead():
    def device(kind):
        return SimpleNamespace(ep_name=OPENVINO, ep_metadata={"ov_device": kind})

    fake = SimpleNamespace(get_ep_devices=lambda: [device("GPU.0"), SimpleNamespace(ep_name=CPU, ep_metadata={})])
    assert ov.devices(fake, "GPU")[0].ep_metadata["ov_device"] == "GPU.0"
    with pytest.raises(ProviderError, match=r"offers no CPU device on this machine \(it offers: GPU.0\)"):
        ov.devices(fake, "CPU")


def test_a_plugin_session_is_added_for_the_devices_its_catalogue_entry_names(monkeypatch):
    """The session path a machine with an OpenVINO device takes, with onnxruntime faked."""
    from nin_edge.runtime import session
    from nin_edge.runtime.providers import ProviderPlan

    gpu = SimpleNamespace(ep_name=OPENVINO, ep_metadata={"ov_device": "GPU.0"})
    added, built = [], []
    fake_ort = SimpleNamespace(
        get_ep_devices=lambda: [gpu], InferenceSession=lambda data, sess_options: built.append(data) or "session"
    )
    monkeypatch.setattr(session, "ort", fake_ort)
    so = SimpleNamespace(add_provider_for_devices=lambda devices, options: added.append((devices, options)))
    plan = ProviderPlan("ov", ((OPENVINO, {"precision": "FP16"}), (CPU, {})))
    config = session.RuntimeConfig(provider="ov", openvino=OpenVinoOptions(device_type="GPU"))
    assert session._new_session(b"model", "m", so, plan, config) == "session"
    assert added == [([gpu], {"precision": "FP16"})] and built == [b"model"]


def test_options_are_checked_and_named_as_the_provider_expects():
    options = OpenVinoOptions(device_type="CPU", precision="FP16", num_streams=2, num_threads=4, cache_dir="/c")
    assert options.provider_options() == {
        "precision": "FP16",
        "num_streams": "2",
        "num_of_threads": "4",
        "cache_dir": "/c",
    }
    assert OpenVinoOptions().provider_options() == {}
    with pytest.raises(ConfigError, match="openvino device_type must be one of CPU, GPU, NPU, got 'TPU'"):
        Classifier("unused.onnx", openvino=OpenVinoOptions(device_type="TPU"))
    with pytest.raises(ConfigError, match="openvino num_streams must be a positive whole number, got 0"):
        Classifier("unused.onnx", openvino=OpenVinoOptions(num_streams=0))


@pytest.mark.skipif(WHY_NOT is None, reason="OpenVINO runs here; its refusal cannot be seen")
def test_without_a_device_openvino_is_a_one_line_error_or_a_said_fallback(tiny_nin_path, tmp_path):
    image = tmp_path / "x.npy"
    np.save(image, np.zeros((28, 28), np.uint8))
    assert_one_line_error(run_cli(infer_cli, [tiny_nin_path, image, "--provider", "openvino"]), WHY_NOT or "")
    result = run_cli(infer_cli, [tiny_nin_path, image, "--provider", "openvino", "--fallback"])
    assert result.exit_code == 0 and f"falling back to {CPU}" in result.stderr
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        assert Classifier(tiny_nin_path, "ov", fallback=True).providers == [CPU]
    assert not ov.usable(ort)
    with pytest.raises(ProviderError, match="offers no CPU device|not installed"):
        profile_nodes(str(tiny_nin_path), provider="openvino")


@needs_device
def test_openvino_agrees_with_the_cpu_provider_on_real_test_images(tmp_path):
    from nin_edge.export import ExportConfig, run_export
    from nin_edge.models.data import read_idx

    model = tmp_path / "nin.onnx"
    run_export(ExportConfig(output=str(model), check_batch_sizes=(1,)))
    data = Path(__file__).parent / "data"
    images = list(read_idx(data / "t10k-images-idx3-ubyte.gz", 0x803))
    cache = tmp_path / "ov-cache"
    on_ov = Classifier(model, "openvino", openvino=OpenVinoOptions(cache_dir=str(cache)))
    assert on_ov.providers[0] == OPENVINO and on_ov.describe().openvino["cache"] == str(cache)
    assert ov.usable(ort) and profile_nodes(str(model), provider="openvino").placement().get(OPENVINO)
    agree = np.mean(on_ov.logits(images).argmax(1) == Classifier(model, "cpu").logits(images).argmax(1))
    assert agree >= 0.995
    compiled = sorted(p.name for p in cache.rglob("*") if p.is_file())
    assert compiled, "OpenVINO wrote no compiled model into its cache"
    Classifier(model, "openvino", openvino=OpenVinoOptions(cache_dir=str(cache)))
    assert sorted(p.name for p in cache.rglob("*") if p.is_file()) == compiled  # reused, not recompiled
