"""nin-prune: structured pruning of a trained NiN, its card's widths through export, runtime, bundle and web
folder, and resume."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch
from nin_edge.export import ExportConfig, run_export
from nin_edge.export.cli import inspect_main
from nin_edge.export.targets.bundle import write_bundle
from nin_edge.export.targets.web import WebConfig, write_web
from nin_edge.models import create_model
from nin_edge.models.checkpoint import TrainedCard, checkpoint_card
from nin_edge.models.cli import prune_main
from nin_edge.models.prune import PruneConfig, build, count_macs, plan_widths, run_prune
from nin_edge.runtime import Classifier
from nin_edge.runtime.core.errors import ConfigError
from nin_edge.runtime.core.metadata import Preprocessing

from tests.conftest import assert_one_line_error, he_init_nin, run_cli
from tests.test_datasets import make_folder

SIZE = 67  # NiN's smallest input keeps these runs fast
FAST = {"batch_size": 32, "lr": 1e-3, "workers": 0}
LABELS = tuple(f"c{i}" for i in range(10))


@pytest.fixture
def carded(tmp_path):
    """A He-initialised NiN saved as nin-train saves it: model name, state_dict and card."""
    card = TrainedCard(LABELS, 1, SIZE, Preprocessing())
    path = tmp_path / "src.pt"
    torch.save({"model": "nin", "state_dict": he_init_nin(SIZE).state_dict(), "card": card.to_dict()}, path)
    return path


def test_widths_build_a_narrower_nin_with_the_books_keys():
    book = create_model("nin", input_size=SIZE)
    narrow = create_model("nin", input_size=SIZE, widths=(8, 16, 24))
    assert list(narrow.state_dict()) == list(book.state_dict())
    assert narrow[0][0].out_channels == 8 and narrow[4][4].out_channels == 24 and narrow[7][0].in_channels == 24
    with pytest.raises(ConfigError, match=r"widths must be 3 positive whole numbers .* got \(8, 0, 24\)"):
        create_model("nin", widths=(8, 0, 24))


def test_the_cards_widths_survive_a_save_and_load():
    card = TrainedCard(LABELS, 1, SIZE, Preprocessing(), model_options={"widths": (8, 16, 24), "head": "wide"})
    saved = card.to_dict()
    assert saved["model_options"] == {"widths": [8, 16, 24], "head": "wide"}
    assert checkpoint_card({"card": saved}, "x.pt") == card


@pytest.mark.slow
def test_prune_only_meets_the_mac_target_and_keeps_the_keys(carded, tmp_path):
    out = tmp_path / "pruned.pt"
    report = run_prune(PruneConfig(weights=str(carded), target_macs=0.5, steps=2, epochs_per_step=0, output=str(out)))
    saved = torch.load(out, weights_only=True)
    card = checkpoint_card(saved, str(out))
    assert card is not None
    widths = card.model_options["widths"]
    assert widths == report.steps[-1].widths and len(report.steps) == 2
    assert all(w < full for w, full in zip(widths, (96, 256, 384), strict=True))
    assert report.steps[0].macs > report.steps[1].macs
    assert report.steps[-1].macs <= 0.5 * report.base_macs
    model = build(card)
    model.load_state_dict(saved["state_dict"], strict=True)  # the card rebuilds its exact architecture
    assert count_macs(model, card)[0] == report.steps[-1].macs
    assert [s["step"] for s in saved["prune"]["done"]] == [1, 2]
    assert all(w % 16 == 0 for step in report.steps for w in step.widths)  # --round-to's default
    assert saved["prune"]["round_to"] == 16


def test_round_to_sets_the_multiple_of_every_planned_width(carded):
    card = checkpoint_card(torch.load(carded, weights_only=True), str(carded))
    assert card is not None
    assert plan_widths(card, 0.5, 2, 1) == [(82, 218, 327), (67, 179, 269)]  # any width, as before --round-to
    assert plan_widths(card, 0.5, 2, 16) == [(80, 224, 336), (64, 176, 272)]
    assert plan_widths(card, 0.25, 1, 16) == [(48, 112, 176)]
    with pytest.raises(ConfigError, match=r"target macs 0.001 is below .* 32 channels .* smaller --round-to"):
        plan_widths(card, 0.001, 1, 32)


@pytest.mark.slow
def test_a_pruned_checkpoint_exports_runs_and_bundles_with_its_widths(carded, tmp_path, tiny_fashion):
    out = tmp_path / "pruned.pt"
    run_prune(PruneConfig(weights=str(carded), target_macs=0.4, steps=1, epochs_per_step=0, output=str(out)))
    saved = torch.load(out, weights_only=True)
    card = checkpoint_card(saved, str(out))
    assert card is not None
    widths = list(card.model_options["widths"])
    onnx_path = tmp_path / "pruned.onnx"
    run_export(ExportConfig(weights=str(out), output=str(onnx_path), check_batch_sizes=(1,)))
    classifier = Classifier(str(onnx_path))
    assert classifier.metadata.model_options == {"widths": widths}
    model = build(card).eval()
    model.load_state_dict(saved["state_dict"])
    x = np.random.default_rng(0).random((1, 1, SIZE, SIZE), dtype=np.float32)
    with torch.no_grad():
        expected = model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(classifier.logits(x), expected, atol=1e-4)
    inspected = run_cli(inspect_main, [onnx_path, "--no-layers", "--format", "json"])
    assert inspected.exit_code == 0, inspected.stderr
    assert json.dumps({"widths": widths}) in inspected.stdout.replace('\\"', '"')
    folder = tmp_path / "bundle"
    write_bundle(
        config=ExportConfig(
            weights=str(out),
            check_batch_sizes=(1,),
            eval_data=str(tiny_fashion),
            eval_size=40,
            min_agreement=0.0,
            allow_chance=True,  # untrained weights: the bundle's gate would refuse them
        ),
        folder=folder,
        precisions=(),
    )
    assert Classifier(str(folder)).metadata.model_options == {"widths": widths}
    site = write_web(WebConfig(source=str(onnx_path), folder=str(tmp_path / "site")))
    assert site.models == {"fp32": "pruned.onnx"}
    shipped = Classifier(str(tmp_path / "site" / "pruned.onnx"))
    np.testing.assert_allclose(shipped.logits(x), expected, atol=1e-4)


@pytest.mark.slow
def test_resume_after_an_interrupted_step_gives_the_uninterrupted_result(tmp_path, tiny_fashion):
    from nin_edge.models.train import TrainConfig, train

    src = tmp_path / "src.pt"
    train(TrainConfig(data=str(tiny_fashion), epochs=1, input_size=SIZE, output=str(src), plot=False, **FAST))
    common = dict(weights=str(src), data=str(tiny_fashion), target_macs=0.5, steps=2, epochs_per_step=1, **FAST)
    common["channels_last"] = True
    straight = run_prune(PruneConfig(output=str(tmp_path / "a.pt"), **common))

    epochs = []

    def stop_in_step_two(stats):
        epochs.append(stats)
        if len(epochs) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_prune(PruneConfig(output=str(tmp_path / "b.pt"), **common), on_epoch=stop_in_step_two)
    assert [s["step"] for s in torch.load(tmp_path / "b.pt", weights_only=True)["prune"]["done"]] == [1]
    resumed = run_prune(PruneConfig(output=str(tmp_path / "b.pt"), resume=str(tmp_path / "b.pt"), **common))
    assert resumed.steps == straight.steps
    a = torch.load(tmp_path / "a.pt", weights_only=True)
    b = torch.load(tmp_path / "b.pt", weights_only=True)
    for key, value in a["state_dict"].items():
        assert torch.equal(value, b["state_dict"][key]), key
    assert b["card"] == a["card"] and b["card"]["model_options"]["widths"] == list(straight.steps[-1].widths)
    assert b["recipe"]["init_from"] == str(src) and "optimizer" not in b
    assert b["recipe"]["channels_last"] is True  # the fine-tune epochs ran with nin-prune's --channels-last
    with pytest.raises(ConfigError, match="has done all 2 steps; nothing is left to resume"):
        run_prune(PruneConfig(output=str(tmp_path / "b.pt"), resume=str(tmp_path / "b.pt"), **common))


@pytest.mark.slow
def test_a_class_folder_checkpoint_prunes_and_keeps_its_wide_head(tmp_path):
    """The user's path: a nin-train checkpoint of a class folder (RGB, 3 classes, the wide head) pruned and
    fine-tuned on the same folder; the head keeps its recorded layout, the card its classes."""
    from nin_edge.models.train import TrainConfig, train

    data = make_folder(tmp_path / "parts", per_class=8)
    src = tmp_path / "src.pt"
    train(TrainConfig(data=str(data), epochs=1, input_size=SIZE, output=str(src), plot=False, **FAST))
    out = tmp_path / "p.pt"
    report = run_prune(
        PruneConfig(
            weights=str(src), data=str(data), target_macs=0.5, steps=1, epochs_per_step=1, output=str(out), **FAST
        )
    )
    saved = torch.load(out, weights_only=True)
    options = saved["card"]["model_options"]
    assert options["head"] == "wide" and options["head_width"] == 64 and options["widths"] == [64, 176, 272]
    assert saved["card"]["labels"] == ["bolt", "nut", "washer"] and report.steps[0].held_out_acc is not None
    card = checkpoint_card(saved, str(out))
    assert card is not None
    build(card).load_state_dict(saved["state_dict"], strict=True)


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["--target-macs", "1.5"], ["target macs must be a fraction between 0 and 1", "got 1.5"]),
        (["--target-macs", "0"], ["target macs must be a fraction between 0 and 1", "got 0.0"]),
        (["--steps", "0"], ["steps must be a positive whole number, got 0"]),
        (["--epochs-per-step", "1"], ["--data is required to fine-tune after each step"]),
        (["--round-to", "0"], ["round to must be a positive whole number of channels", "got 0"]),
    ],
)
def test_bad_options_are_refused_up_front(carded, tmp_path, args, fragments):
    result = run_cli(prune_main, ["--weights", carded, "--output", tmp_path / "p.pt", "--epochs-per-step", "0", *args])
    assert_one_line_error(result, *fragments)
    assert not (tmp_path / "p.pt").exists()


def test_weights_that_are_not_a_carded_nin_checkpoint_are_refused(tmp_path):
    bare = tmp_path / "bare.pt"
    torch.save(he_init_nin(SIZE).state_dict(), bare)
    result = run_cli(prune_main, ["--weights", bare, "--output", tmp_path / "p.pt", "--epochs-per-step", "0"])
    assert_one_line_error(result, f"'{bare}' has no card", "nin-prune takes a checkpoint nin-train wrote for nin")
    other = tmp_path / "alexnet.pt"
    card = TrainedCard(LABELS, 1, 224, Preprocessing()).to_dict()
    torch.save({"model": "alexnet", "state_dict": {}, "card": card}, other)
    result = run_cli(prune_main, ["--weights", other, "--output", tmp_path / "p.pt", "--epochs-per-step", "0"])
    assert_one_line_error(result, "is a alexnet checkpoint; nin-prune prunes nin only")


@pytest.mark.slow
def test_resume_is_refused_for_another_run_or_a_foreign_file(carded, tmp_path):
    out = tmp_path / "p.pt"
    run_prune(PruneConfig(weights=str(carded), target_macs=0.5, steps=2, epochs_per_step=0, output=str(out)))
    args = ["--output", out, "--epochs-per-step", "0", "--steps", "2"]
    result = run_cli(prune_main, ["--resume", out, "--target-macs", "0.3", *args])
    assert_one_line_error(result, "was pruned with --target-macs 0.5, not 0.3")
    result = run_cli(prune_main, ["--resume", out, "--target-macs", "0.5", "--round-to", "8", *args])
    assert_one_line_error(result, "was pruned with --round-to 16, not 8; resume with --round-to 16")
    older = torch.load(out, weights_only=True)
    del older["prune"]["round_to"]  # nin-prune before --round-to kept any width
    torch.save(older, out)
    result = run_cli(prune_main, ["--resume", out, "--target-macs", "0.5", *args])
    assert_one_line_error(result, "was pruned with --round-to 1, not 16")
    result = run_cli(prune_main, ["--resume", carded, *args])
    assert_one_line_error(result, "is not a nin-prune checkpoint (no prune record)")
    foreign = tmp_path / "notes.txt"
    foreign.write_text("mine")
    result = run_cli(prune_main, ["--weights", carded, "--output", foreign, "--epochs-per-step", "0"])
    assert_one_line_error(result, "exists and is not a nin-prune checkpoint")
    assert foreign.read_text() == "mine"


def test_without_torch_pruning_the_command_names_the_extra(carded, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch_pruning", None)  # what an import of a missing package raises
    result = run_cli(prune_main, ["--weights", carded, "--output", tmp_path / "p.pt", "--epochs-per-step", "0"])
    assert_one_line_error(result, "nin-prune needs the torch-pruning library: pip install 'nin-edge[prune]'")


@pytest.mark.slow
def test_the_shipped_weights_prune_with_the_registered_card(tmp_path):
    out = tmp_path / "p.pt"
    report = run_prune(PruneConfig(weights="pretrained", target_macs=0.5, steps=1, epochs_per_step=0, output=str(out)))
    card = checkpoint_card(torch.load(out, weights_only=True), str(out))
    assert card is not None and card.input_size == 112 and card.labels[0] == "T-shirt/top"
    assert report.base_widths == (96, 256, 384) and card.model_options["widths"] == report.steps[0].widths


def test_model_options_in_the_metadata_must_be_an_object(tiny_nin_path, tmp_path):
    import onnx
    from nin_edge.runtime.core.errors import ModelFileError

    model = onnx.load(str(tiny_nin_path))
    onnx.helper.set_model_props(
        model, {**{p.key: p.value for p in model.metadata_props}, "model_options": "[64, 176, 272]"}
    )
    path = tmp_path / "m.onnx"
    onnx.save(model, str(path))
    with pytest.raises(ModelFileError, match="unreadable nin-edge metadata: model_options must be a JSON object"):
        Classifier(str(path), "cpu")
    assert Classifier(str(tiny_nin_path), "cpu").metadata.model_options == {}  # older files: none


def test_the_speed_flags_reach_the_fine_tune(monkeypatch, carded, tmp_path):
    """nin-prune --amp --channels-last are nin-train's flags of the same names, passed to its fine-tune."""
    from nin_edge.models import cli as cli_module

    seen = []
    monkeypatch.setattr(cli_module, "run_prune", lambda config, on_epoch: seen.append(config) or _Said())
    args = ["--weights", carded, "--data", tmp_path, "--output", tmp_path / "p.pt"]
    assert run_cli(prune_main, [*args, "--amp", "--channels-last"]).exit_code == 0
    assert run_cli(prune_main, args).exit_code == 0
    assert [(c.amp, c.channels_last) for c in seen] == [(True, True), (False, False)]


class _Said:
    def render(self, fmt):
        return ""


def test_the_shipped_pruned_model_exports_with_its_widths_in_the_metadata(tmp_path):
    """nin_pruned is a registry entry like any other: its card's widths build it, its weights load,
    nin-export writes the widths into the metadata and the runtime reads them back."""
    from nin_edge.models.registry import create_model, model_card
    from nin_edge.runtime import Classifier

    model = create_model("nin_pruned", pretrained=True)
    assert [model[i][0].out_channels for i in (0, 2, 4)] == [64, 176, 272]
    out = tmp_path / "p.onnx"
    summary = run_export(ExportConfig(model="nin_pruned", output=str(out), check_batch_sizes=(1,)))
    assert summary.weights.startswith("pretrained nin_pruned_fashion_mnist.pt sha256:")
    clf = Classifier(str(out))
    assert clf.metadata.model_options == {"widths": [64, 176, 272]}
    assert model_card("nin_pruned").model_options == {"widths": (64, 176, 272)}
