"""Deploy targets: one module each, found by the registry, all following one interface."""

from __future__ import annotations

import dataclasses
import sys
import textwrap
from pathlib import Path

import nin_edge.export.targets as targets_package
import onnx
import pytest
from nin_edge.export import Deploy, ExportConfig, run_export, verify_export
from nin_edge.export import cli as export_cli
from nin_edge.export.targets import Target, get_target, targets
from nin_edge.export.targets.onnx import OnnxOptions
from nin_edge.runtime.core.errors import ConfigError

from tests.conftest import assert_one_line_error, run_cli


def test_every_module_of_the_package_is_a_registered_target():
    package = Path(__file__).resolve().parents[1] / "export" / "targets"
    modules = {p.stem for p in package.glob("*.py")} - {"__init__", "base"}
    found = targets()
    assert set(found) == {"bundle", "onnx", "triton", "web"} and modules == set(found)
    for name, target in found.items():
        assert isinstance(target, Target) and target.name == name
        assert dataclasses.is_dataclass(target.options_type)
        assert target.options_type.__dataclass_params__.frozen


def test_an_unknown_target_is_refused_with_the_known_ones():
    with pytest.raises(
        ConfigError, match="deploy target 'tflite' is not known; expected one of bundle, onnx, triton, web"
    ):
        get_target("tflite")


@pytest.mark.slow
def test_the_onnx_target_writes_the_verified_model_and_nothing_before(tmp_path):
    out = tmp_path / "n.onnx"
    model = verify_export(ExportConfig(output=str(out), input_size=70, random_init=True, check_batch_sizes=(1,)))
    assert not out.exists()  # verifying writes nothing
    assert model.metadata.input_size == 70 and len(model.metadata.labels) == 10
    report = get_target("onnx").write(model, OnnxOptions(), out)
    assert out.read_bytes() == model.data and report.file_bytes == len(model.data)
    assert {p.key for p in onnx.load(str(out)).metadata_props} >= {"labels", "input_size"}


def test_targets_check_their_destination_before_any_work(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        get_target("onnx").check(OnnxOptions(), tmp_path / "no" / "n.onnx")
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="exists and is a regular file, not a folder"):
        get_target("bundle").check(get_target("bundle").options_type(), tmp_path / "file")
    with pytest.raises(ConfigError, match="bundle precision must be one of"):
        get_target("bundle").check(get_target("bundle").options_type(precisions=("int4",)), tmp_path / "b")


@pytest.mark.slow
def test_a_library_caller_adds_targets_to_an_export_without_touching_the_pipeline(tmp_path):
    config = ExportConfig(output=str(tmp_path / "n.onnx"), input_size=70, random_init=True, check_batch_sizes=(1,))
    summary = run_export(dataclasses.replace(config, deploy=(Deploy("onnx", str(tmp_path / "copy.onnx")),)))
    assert (tmp_path / "copy.onnx").read_bytes() == (tmp_path / "n.onnx").read_bytes()
    assert [r.output for r in summary.deployed] == [str(tmp_path / "copy.onnx")]
    assert "deployed" in summary.to_dict() and "deployed" not in run_export(config).to_dict()


def test_an_unknown_or_mistyped_extra_target_is_refused_before_any_work(tmp_path):
    config = ExportConfig(output=str(tmp_path / "n.onnx"))
    with pytest.raises(ConfigError, match="deploy target 'tflite' is not known"):
        dataclasses.replace(config, deploy=(Deploy("tflite", str(tmp_path / "m.tflite")),)).validate()
    with pytest.raises(ConfigError, match="deploy target 'onnx' takes OnnxOptions, got dict"):
        dataclasses.replace(config, deploy=(Deploy("onnx", str(tmp_path / "c.onnx"), {}),)).validate()


#: A whole new deploy target, as its one module would be: options, check, write, its flags and their hook.
NEW_TARGET = textwrap.dedent(
    """
    from dataclasses import dataclass, replace

    import click
    from nin_edge.export.config import Deploy
    from nin_edge.runtime.core.errors import ConfigError


    @dataclass(frozen=True)
    class TfliteOptions:
        quantize: bool = False


    class TfliteTarget:
        name = "tflite"
        options_type = TfliteOptions
        cli_options = (
            click.Option(["--tflite"], type=click.Path(), default=None, help="Also write a TFLite model here."),
            click.Option(["--tflite-quantize"], is_flag=True, help="TFLite: quantize the weights."),
        )

        def check(self, options, out):
            pass

        def write(self, model, options, out):
            raise NotImplementedError

        def from_cli(self, config, values):
            if values["tflite"] is None:
                if values["tflite_quantize"]:
                    raise ConfigError("--tflite-quantize shapes the TFLite model: give --tflite FILE too")
                return config
            target = Deploy(self.name, values["tflite"], TfliteOptions(quantize=values["tflite_quantize"]))
            return replace(config, deploy=(*config.deploy, target))


    TARGET = TfliteTarget()
    """
)


@pytest.fixture
def new_target_module(tmp_path, monkeypatch):
    """``tflite.py`` dropped into the targets package (an extra folder on its ``__path__``): nothing else."""
    folder = tmp_path / "more_targets"
    folder.mkdir()
    (folder / "tflite.py").write_text(NEW_TARGET)
    monkeypatch.setattr(targets_package, "__path__", [*targets_package.__path__, str(folder)])
    targets.cache_clear()
    yield
    targets.cache_clear()
    sys.modules.pop("nin_edge.export.targets.tflite", None)


def test_a_new_target_module_brings_its_flags_to_nin_export_without_touching_the_cli(
    new_target_module, tmp_path, monkeypatch
):
    assert "tflite" in targets()
    help_text = run_cli(export_cli.main, ["--help"]).stdout
    assert "--tflite PATH" in help_text and "Also write a TFLite model here." in help_text
    assert "--tflite-quantize" in help_text and "--triton-repo" in help_text  # beside the others
    exported: list[ExportConfig] = []
    monkeypatch.setattr(export_cli, "run_export", lambda config: exported.append(config) or _Rendered())
    out = tmp_path / "n.onnx"
    args = ["--output", out, "--random-init", "--input-size", "70", "--check-batch-sizes", "1"]
    done = run_cli(export_cli.main, [*args, "--tflite", tmp_path / "m.tflite", "--tflite-quantize"])
    assert (done.exit_code, done.stdout) == (0, "exported\n")
    options_type = get_target("tflite").options_type
    assert exported[0].deploy == (Deploy("tflite", str(tmp_path / "m.tflite"), options_type(quantize=True)),)
    exported[0].validate()  # the pipeline takes the Deploy: the registry resolves it and its options type
    assert run_cli(export_cli.main, args).exit_code == 0 and exported[1].deploy == ()  # main flag absent: none
    assert_one_line_error(
        run_cli(export_cli.main, [*args, "--tflite-quantize"]),
        "--tflite-quantize shapes the TFLite model: give --tflite FILE too",
    )
    assert len(exported) == 2  # the target's hook refused before any export


class _Rendered:
    def render(self, fmt: str) -> str:
        return "exported"
