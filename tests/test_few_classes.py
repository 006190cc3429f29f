"""Few classes (issue 29): NiN's wide head, the dead-head check, the chance-level gate."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from nin_edge.export.cli import main as export_cli
from nin_edge.export.config import Deploy, ExportConfig
from nin_edge.models.chance import ChanceCheck, ChanceLevelError, chance_check
from nin_edge.models.checkpoint import TrainedCard, checkpoint_card
from nin_edge.models.cli import eval_main, train_main
from nin_edge.models.health import DeadHeadError, check_alive
from nin_edge.models.registry import create_model, pretrained_path
from nin_edge.runtime.core.errors import ModelFileError
from nin_edge.runtime.core.metadata import Preprocessing
from PIL import Image

from tests.conftest import assert_one_line_error, run_cli
from tests.test_datasets import CLASSES, FAST, make_folder


def test_wide_head_keeps_the_books_keys_and_gives_raw_logits():
    book, wide = create_model("nin", num_classes=2), create_model("nin", num_classes=2, head="wide")
    assert list(wide.state_dict()) == list(book.state_dict())
    assert wide.state_dict()["7.0.weight"].shape == (16, 384, 3, 3)
    assert wide.state_dict()["7.4.weight"].shape == (2, 16, 1, 1)
    assert book.state_dict()["7.0.weight"].shape == (2, 384, 3, 3)
    assert not isinstance(wide[7][-1], torch.nn.ReLU) and isinstance(book[7][-1], torch.nn.ReLU)
    assert create_model("nin", num_classes=40, head="wide").state_dict()["7.2.weight"].shape == (40, 40, 1, 1)
    sixty_four = create_model("nin", num_classes=10, head="wide", head_width=64).state_dict()
    assert sixty_four["7.0.weight"].shape == (64, 384, 3, 3) and sixty_four["7.4.weight"].shape == (10, 64, 1, 1)


def test_a_head_width_is_the_wide_heads_only_and_positive():
    from nin_edge.runtime.core.errors import ConfigError

    with pytest.raises(ConfigError, match="head_width is the wide head's; the book's head is C units wide, got 64"):
        create_model("nin", head_width=64)
    with pytest.raises(ConfigError, match="head_width"):
        create_model("nin", head="wide", head_width=0)


def test_unknown_head_is_refused():
    from nin_edge.runtime.core.errors import ConfigError

    with pytest.raises(ConfigError, match="head must be one of book, wide, got 'tall'"):
        create_model("nin", head="tall")


def test_card_records_the_head_and_old_cards_read_as_the_books():
    card = TrainedCard(("a", "b"), 3, 112, Preprocessing(), model_options={"head": "wide", "head_width": 64})
    saved = card.to_dict()
    assert saved["model_options"] == {"head": "wide", "head_width": 64}
    assert checkpoint_card({"card": saved}, "x.pt") == card  # the width reads back as a number
    old = TrainedCard(("a", "b"), 3, 112, Preprocessing()).to_dict()
    assert "model_options" not in old and checkpoint_card({"card": old}, "x.pt").model_options == {}


def test_chance_check_names_the_numbers():
    truth = np.array([0] * 10 + [1] * 10)
    check = chance_check(np.zeros(20, np.int64), truth, ("cat", "dog"), "held-out split (val)")
    assert check.near_chance and check.collapsed and not check.passed
    assert check.line() == (
        "held-out split (val) accuracy 0.5000 on 20 images is not clearly above chance 0.5000 (it needs more than "
        "0.7236: 2 binomial standard deviations for 20 images); class 'cat' takes 100% of the predictions on the "
        "held-out split (val) but is 50% of its images"
    )
    good = chance_check(truth.copy(), truth, ("cat", "dog"), "test split")
    assert good.passed and good.line() == ""
    assert ChanceCheck.from_dict(check.to_dict()) == check and ChanceCheck.from_dict(None) is None


def test_chance_is_the_largest_class_share_and_the_margin_shrinks_with_more_images():
    truth = np.array([0] * 80 + [1] * 20)
    always_first = chance_check(np.zeros(100, np.int64), truth, ("a", "b"), "test split")
    assert always_first.chance == 0.8 and always_first.near_chance and not always_first.collapsed
    three = np.repeat(np.arange(3), 100)
    preds = np.where(np.arange(300) % 5 == 0, (three + 1) % 3, three)  # 80 % right
    assert chance_check(preds, three, ("a", "b", "c"), "test split").passed


def test_dead_head_is_named_and_a_dead_class_noted():
    with pytest.raises(DeadHeadError, match="at step 0, the model gives the same scores to all 4 images"):
        check_alive(torch.tensor([[0.0, 0.3]] * 4), ("a", "b"), "at step 0", "try --head wide")
    note = check_alive(torch.tensor([[0.0, 0.3], [0.0, 0.5]]), ("a", "b"), "after epoch 1", "try x")
    assert note is not None and "1 of 2 classes get the same score for every image" in note and "(a)" in note
    assert check_alive(torch.tensor([[0.1, 0.3], [0.0, 0.5]]), ("a", "b"), "after epoch 1", "x") is None


def _constant_checkpoint(path, classes, head="book"):
    """A nin-train-style checkpoint whose model answers the first class for every image."""
    model = create_model("nin", in_channels=3, num_classes=len(classes), input_size=67, head=head)
    with torch.no_grad():
        model[7][4].weight.zero_()
        model[7][4].bias.copy_(torch.arange(len(classes), 0, -1, dtype=torch.float32))
    card = TrainedCard(tuple(classes), 3, 67, Preprocessing(color="rgb", mean=(0.5,) * 3, std=(0.5,) * 3))
    if head != "book":
        card = TrainedCard(card.labels, 3, 67, card.preprocessing, model_options={"head": head})
    torch.save({"model": "nin", "state_dict": model.state_dict(), "card": card.to_dict()}, path)
    return path


@pytest.mark.slow
@pytest.mark.parametrize("head", ["book", "wide"])
def test_eval_says_when_a_model_is_at_chance(tmp_path, head):
    data = make_folder(tmp_path / "parts", per_class=6, layout="split")
    ckpt = _constant_checkpoint(tmp_path / "const.pt", CLASSES, head)
    table = run_cli(eval_main, ["--data", data, "--weights", ckpt])
    assert table.exit_code == 0, table.stderr
    assert (
        "warning: '" + str(ckpt) + "': val split accuracy 0.3333 on 6 images is not clearly above chance 0.3333"
    ) in table.stdout
    assert "class 'bolt' takes 100% of the predictions" in table.stdout
    as_json = run_cli(eval_main, ["--data", data, "--weights", ckpt, "--format", "json"])
    assert "not clearly above chance 0.3333" in as_json.stderr


def _near_chance_checkpoint(tmp_path):
    """A checkpoint whose training ended at chance: the record nin-train writes beside the weights."""
    path = _constant_checkpoint(tmp_path / "chance.pt", ("cat", "dog"))
    saved = torch.load(path, weights_only=True)
    truth = np.array([0] * 10 + [1] * 10)
    saved["chance"] = chance_check(np.zeros(20, np.int64), truth, ("cat", "dog"), "held-out split (val)").to_dict()
    torch.save(saved, path)
    return path


def test_the_chance_gate_refuses_before_any_export_work(tmp_path):
    ckpt = _near_chance_checkpoint(tmp_path)
    for target in ("bundle", "web"):
        config = ExportConfig(weights=str(ckpt), deploy=(Deploy(target, str(tmp_path / target)),))
        with pytest.raises(ChanceLevelError, match="is not clearly above chance 0.5000"):
            config.validate()  # what nin-export runs first
    ExportConfig(weights=str(ckpt), allow_chance=True, deploy=(Deploy("bundle", str(tmp_path / "b")),)).validate()


def test_a_malformed_chance_record_is_refused_not_passed(tmp_path):
    ckpt = _near_chance_checkpoint(tmp_path)
    saved = torch.load(ckpt, weights_only=True)
    saved["chance"]["accuracy"] = "high"
    torch.save(saved, ckpt)
    config = ExportConfig(weights=str(ckpt), deploy=(Deploy("bundle", str(tmp_path / "b")),))
    with pytest.raises(ModelFileError, match=f"checkpoint '{ckpt}' holds a malformed chance-level record"):
        config.validate()
    assert ChanceCheck.from_dict(None) is None  # older checkpoints have no record: nothing to judge


@pytest.mark.slow
def test_bundle_and_web_refuse_a_model_at_chance(tmp_path):
    ckpt = _near_chance_checkpoint(tmp_path)
    web_alone = ["--web", tmp_path / "w"]
    for target in (["--bundle", tmp_path / "b"], ["--bundle", tmp_path / "b", "--web", tmp_path / "w"], web_alone):
        error = assert_one_line_error(
            run_cli(export_cli, ["--weights", ckpt, "--check-batch-sizes", 1, *target]),
            "--bundle/--web refused: held-out split (val) accuracy 0.5000 on 20 images is not clearly above "
            "chance 0.5000 (it needs more than 0.7236",
            "pass --allow-chance to package it anyway",
        )
        assert "class 'cat' takes 100% of the predictions" in error
    assert not (tmp_path / "b").exists() and not (tmp_path / "w").exists()


@pytest.mark.slow
def test_allow_chance_packages_it_and_the_card_says_so(tmp_path):
    ckpt = _near_chance_checkpoint(tmp_path)
    args = ["--weights", ckpt, "--check-batch-sizes", 1, "--bundle-precisions", "fp32", "--bundle", tmp_path / "b"]
    result = run_cli(export_cli, [*args, "--allow-chance"])
    assert result.exit_code == 0, result.stderr
    card = (tmp_path / "b" / "MODEL_CARD.md").read_text()
    assert "**Warning**: --allow-chance: packaged although held-out split (val) accuracy 0.5000" in card
    manifest = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert manifest["warnings"][0].startswith("--allow-chance: packaged although")


@pytest.mark.slow
def test_a_dead_head_stops_the_run_at_step_0(tmp_path):
    data = make_folder(tmp_path / "parts", per_class=4, layout="split")
    dead = create_model("nin", in_channels=3, num_classes=3, input_size=67)
    with torch.no_grad():
        for i in (0, 2, 4):
            dead[7][i].bias.fill_(-100.0)  # every ReLU of the last block outputs zero for every image
    torch.save(dead.state_dict(), tmp_path / "dead.pt")
    out = tmp_path / "run.pt"
    result = run_cli(
        train_main,
        ["--data", data, "--init-from", tmp_path / "dead.pt", "--head", "book", "--output", out, *FAST],
    )
    assert_one_line_error(
        result,
        "at step 0 (before training), the model gives the same scores to all 6 images",
        "try --head wide (the default for image folders), a lower --lr, or another --seed",
        progress=True,
    )
    assert not out.exists()  # stopped before the first step: nothing was trained or saved


def _colour_folder(root, classes: int, train: int = 16, held: int = 6):
    """Noisy flat colours, one per class, with ``held`` images per class in val/."""
    colours = ((200, 40, 40), (40, 200, 40), (40, 40, 200))
    rng = np.random.default_rng(0)
    for c in range(classes):
        for split, count in (("train", train), ("val", held)):
            folder = root / split / f"c{c}"
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                pixels = np.clip(np.array(colours[c]) + rng.integers(-40, 40, (16, 16, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"{i}.png")
    return root


@pytest.mark.slow
@pytest.mark.parametrize("classes", [2, 3])
def test_two_and_three_classes_learn_with_the_defaults(tmp_path, classes):
    """The issue's path: a small folder, --init-from pretrained and nothing else (but a small input)."""
    data = _colour_folder(tmp_path / "d", classes)
    args = ["--data", data, "--init-from", "pretrained", "--input-size", 67, "--epochs", 8, "--workers", 0]
    result = run_cli(train_main, [*args, "--no-plot", "--output", tmp_path / "c.pt", "--format", "json"])
    assert result.exit_code == 0, result.stderr
    assert "warning" not in result.stderr and "warning" not in result.stdout
    report = json.loads(result.stdout)
    assert report["recipe"]["optimizer"] == "adamw" and report["recipe"]["lr"] == 0.0005
    assert report["recipe"]["batch_size"] == 16 and report["recipe"]["head"] == "auto"
    saved = torch.load(tmp_path / "c.pt", weights_only=True)
    assert saved["card"]["model_options"] == {"head": "wide", "head_width": 64}
    assert ChanceCheck.from_dict(saved["chance"]).passed


def test_a_history_written_before_the_rename_still_resumes():
    from nin_edge.models.train_checkpoint import progress

    old = {"epoch": 1, "train_loss": 0.5, "train_acc": 0.8, "test_acc": 0.75, "examples_per_s": 10.0}
    old.update(seconds=1.0, lr=0.1, input_size=67)
    epoch, history = progress({"epoch": 1, "history": [old]}, "old.pt")
    assert epoch == 1 and history[0].held_out_acc == 0.75


def test_the_dead_head_hint_offers_the_wide_head_only_to_a_run_without_it():
    from nin_edge.models.train import _dead_hint

    book = TrainedCard(("a", "b"), 3, 112, Preprocessing())
    wide = TrainedCard(("a", "b"), 3, 112, Preprocessing(), model_options={"head": "wide"})
    assert _dead_hint(book).startswith("try --head wide (the default for image folders), a lower --lr")
    assert _dead_hint(wide) == "try a lower --lr, or another --seed (see docs/few-classes.md)"


def test_a_backbone_lr_scale_gives_the_loaded_layers_a_smaller_lr():
    """With --init-from the backbone learns at lr x backbone_lr_scale and the new head at lr; from
    scratch, or at the default scale 1, every layer shares one lr (docs/few-classes.md)."""
    from nin_edge.models.schedule import make_optimizer
    from nin_edge.models.train import TrainConfig

    model = create_model("nin", num_classes=2, input_size=67, head="wide")
    config = TrainConfig(data="d", optimizer="adamw", lr=0.001, backbone_lr_scale=0.1, freeze_epochs=0)
    groups = make_optimizer(config, model, fine_tune=True).param_groups
    head = {id(p) for p in model[7].parameters()}
    assert [g["lr"] for g in groups] == pytest.approx([0.0001, 0.001])
    assert {id(p) for p in groups[1]["params"]} == head
    assert len(groups[0]["params"]) + len(groups[1]["params"]) == len(list(model.parameters()))
    assert [g["lr_scale"] for g in make_optimizer(config, model).param_groups] == [1.0]
    one = TrainConfig(data="d", optimizer="sgd", lr=0.1, backbone_lr_scale=1.0, freeze_epochs=0)
    assert len(make_optimizer(one, model, fine_tune=True).param_groups) == 1  # one lr for every layer


def test_auto_freeze_and_backbone_scale_follow_the_new_head_and_the_steps_an_epoch():
    """Left out, --freeze-epochs and --backbone-lr-scale stage a fine-tune with a new last block (a fifth
    of the epochs frozen, then half the lr) when the folder gives 8 or more steps an epoch; a tiny folder,
    a run from scratch and a fine-tune that keeps every layer train all layers at one lr. Each choice for
    a new head is said in a note; given values are kept."""
    from nin_edge.models.train import TrainConfig

    tuned = TrainConfig(data="d", init_from="pretrained")
    assert tuned.resolved().epochs == 15 and TrainConfig(data="d").resolved().epochs == 10  # auto epochs
    config, note = tuned.with_fine_tune_defaults(new_layers=True, steps_per_epoch=8)
    assert (config.freeze_epochs, config.backbone_lr_scale) == (3, 0.5)  # the README's recipe: 3 of 15 frozen
    assert note == (
        "fine-tuning with --freeze-epochs 3 --backbone-lr-scale 0.5 "
        "(auto: a new last block and 8 steps an epoch; the new last block learns alone for 3 epoch(s))"
    )
    config, _ = dataclasses.replace(tuned, epochs=10).with_fine_tune_defaults(new_layers=True, steps_per_epoch=30)
    assert config.freeze_epochs == 2
    config, note = tuned.with_fine_tune_defaults(new_layers=True, steps_per_epoch=7)
    assert (config.freeze_epochs, config.backbone_lr_scale) == (0, 1.0)
    assert note == (
        "fine-tuning with --freeze-epochs 0 --backbone-lr-scale 1.0 "
        "(auto: only 7 steps an epoch (under 8); every layer learns from the start)"
    )
    config, note = tuned.with_fine_tune_defaults(new_layers=False, steps_per_epoch=100)
    assert (config.freeze_epochs, config.backbone_lr_scale, note) == (0, 1.0, None)
    config, note = TrainConfig(data="d").with_fine_tune_defaults(new_layers=False, steps_per_epoch=100)
    assert (config.freeze_epochs, config.backbone_lr_scale, note) == (0, 1.0, None)
    given = dataclasses.replace(tuned, freeze_epochs=1)
    config, note = given.with_fine_tune_defaults(new_layers=True, steps_per_epoch=50)
    assert (config.freeze_epochs, config.backbone_lr_scale) == (1, 0.5)
    assert note == (
        "fine-tuning with --backbone-lr-scale 0.5 "
        "(auto: a new last block and 50 steps an epoch; the new last block learns alone for 1 epoch(s))"
    )
    one_epoch, note = dataclasses.replace(tuned, epochs=1).with_fine_tune_defaults(new_layers=True, steps_per_epoch=50)
    assert one_epoch.freeze_epochs == 0  # nothing would be left to adapt the loaded layers
    assert note is not None and note.endswith("every layer learns from the start)")


@pytest.mark.parametrize("scale", ["-0.5", "2", "nan"])
def test_a_backbone_lr_scale_outside_0_to_1_is_refused(tmp_path, scale):
    result = run_cli(train_main, ["--data", tmp_path, "--backbone-lr-scale", scale])
    assert_one_line_error(result, "backbone lr scale must be a number from 0 (backbone frozen) to 1")
    assert f"got {float(scale)!r}" in result.stderr


@pytest.mark.slow
def test_a_frozen_backbone_stays_put_and_resumes_with_its_two_groups(tmp_path):
    """--backbone-lr-scale 0 trains only the new head; --resume keeps the two groups and their scales."""
    data = _colour_folder(tmp_path / "d", 2)
    out = tmp_path / "c.pt"
    args = ["--data", data, "--init-from", "pretrained", "--input-size", 67, "--workers", 0, "--no-plot"]
    result = run_cli(train_main, [*args, "--epochs", 1, "--backbone-lr-scale", 0, "--output", out])
    assert result.exit_code == 0, result.stderr
    saved = torch.load(out, weights_only=True)
    shipped = torch.load(pretrained_path("nin"), weights_only=True)
    shipped = shipped.get("state_dict", shipped)
    assert torch.equal(saved["state_dict"]["2.0.weight"], shipped["2.0.weight"])
    assert [g["lr_scale"] for g in saved["optimizer"]["param_groups"]] == [0.0, 1.0]
    resume = ["--data", data, "--resume", out, "--input-size", 67, "--workers", 0, "--no-plot", "--output", out]
    other = run_cli(train_main, [*resume, "--epochs", 2, "--backbone-lr-scale", 1])
    assert_one_line_error(other, "was trained with --backbone-lr-scale 0.0, not 1.0")
    again = run_cli(train_main, [*resume, "--epochs", 2])  # left out: the run's own scale
    assert again.exit_code == 0, again.stderr
    resumed = torch.load(out, weights_only=True)
    assert [g["lr"] for g in resumed["optimizer"]["param_groups"]][0] == 0.0
    assert torch.equal(resumed["state_dict"]["2.0.weight"], shipped["2.0.weight"])


def test_freeze_epochs_hold_the_loaded_layers_then_release_them():
    """--freeze-epochs N: the loaded layers' lr is 0 for the first N epochs, then lr x backbone_lr_scale;
    the new last block learns at lr throughout (docs/few-classes.md)."""
    from nin_edge.models.schedule import group_lr, make_optimizer
    from nin_edge.models.train import TrainConfig

    model = create_model("nin", num_classes=2, input_size=67, head="wide")
    config = TrainConfig(
        data="d", optimizer="adamw", lr=0.001, init_from="x.pt", epochs=5, freeze_epochs=2, backbone_lr_scale=1.0
    )
    backbone, head = make_optimizer(config, model, fine_tune=True).param_groups
    assert {id(p) for p in head["params"]} == {id(p) for p in model[7].parameters()}
    assert [group_lr(config, backbone, 0.001, e) for e in range(4)] == [0.0, 0.0, 0.001, 0.001]
    assert [group_lr(config, head, 0.001, e) for e in range(4)] == [0.001] * 4


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--init-from", "pretrained", "--epochs", "3", "--freeze-epochs", "3"], "from 0 to --epochs - 1 (2)"),
        (["--init-from", "pretrained", "--freeze-epochs", "-1"], "got -1"),
        (["--freeze-epochs", "1"], "give --init-from, or leave --freeze-epochs out"),
    ],
)
def test_freeze_epochs_outside_the_run_or_without_init_from_are_refused(tmp_path, args, message):
    result = run_cli(train_main, ["--data", tmp_path, *args])
    assert_one_line_error(result, message)


@pytest.mark.slow
def test_a_frozen_first_epoch_keeps_the_shipped_layers_and_resume_keeps_the_freeze(tmp_path, monkeypatch):
    """After the one frozen epoch every loaded layer is as shipped while the head has learnt; the next
    epoch moves them; a resumed run refuses another --freeze-epochs."""
    from nin_edge.models import train as train_module

    saved: list[dict] = []
    real_save = train_module.save

    def keep(path, payload):  # a copy: the payload holds the live model's tensors
        saved.append(
            {"epoch": payload["epoch"], "state_dict": {k: v.clone() for k, v in payload["state_dict"].items()}}
        )
        real_save(path, payload)

    monkeypatch.setattr(train_module, "save", keep)
    data = _colour_folder(tmp_path / "d", 2)
    out = tmp_path / "c.pt"
    args = ["--data", data, "--init-from", "pretrained", "--input-size", 67, "--workers", 0, "--no-plot"]
    result = run_cli(train_main, [*args, "--epochs", 2, "--freeze-epochs", 1, "--output", out])
    assert result.exit_code == 0, result.stderr
    shipped = torch.load(pretrained_path("nin"), weights_only=True)
    shipped = shipped.get("state_dict", shipped)
    first, last = saved[0]["state_dict"], saved[-1]["state_dict"]
    assert saved[0]["epoch"] == 1 and saved[-1]["epoch"] == 2
    # 0.0 was adapted to 3 channels (the grey kernels repeated), 7.* is the new head: the rest is as shipped
    assert all(torch.equal(first[k], shipped[k]) for k in shipped if k != "0.0.weight" and not k.startswith("7."))
    assert torch.equal(first["0.0.weight"], shipped["0.0.weight"].repeat(1, 3, 1, 1) / 3)
    assert not torch.equal(first["7.0.weight"], saved[-1]["state_dict"]["7.0.weight"])
    assert not torch.equal(last["2.0.weight"], shipped["2.0.weight"])
    assert last is not first and torch.load(out, weights_only=True)["recipe"]["freeze_epochs"] == 1
    resume = ["--data", data, "--resume", out, "--input-size", 67, "--workers", 0, "--no-plot", "--output", out]
    other = run_cli(train_main, [*resume, "--epochs", 3, "--freeze-epochs", 0])
    assert_one_line_error(other, "was trained with --freeze-epochs 1, not 0")


def test_the_wide_heads_width_new_and_kept():
    """New wide heads are max(C, 64) wide and say so in the card; a wide checkpoint fine-tuned on its own
    classes keeps its head as recorded (one written before head_width: the first wide head's 16)."""
    from types import SimpleNamespace

    from nin_edge.models.train import TrainConfig, _head

    folder = SimpleNamespace(kind="folder", classes=("a", "b", "c"))
    config = TrainConfig(data="d")
    assert _head(config, folder, None) == {"head": "wide", "head_width": 64}
    assert _head(config, SimpleNamespace(kind="folder", classes=tuple(map(str, range(70)))), None)["head_width"] == 70
    assert _head(config, SimpleNamespace(kind="idx", classes=folder.classes), None) == {}  # the book's, on IDX
    first = TrainedCard(("x", "y", "z"), 3, 112, Preprocessing(), model_options={"head": "wide"})
    assert _head(config, folder, first) == {"head": "wide"}  # builds max(3, 16) = 16, as it was trained
    idx = SimpleNamespace(kind="idx", classes=folder.classes)
    assert _head(config, idx, first) == {"head": "wide"}  # kept on the IDX files too (auto would be the book's)
    assert _head(dataclasses.replace(config, head="book"), idx, first) == {}  # unless the book's is asked for
    other = TrainedCard(("x", "y"), 3, 112, Preprocessing(), model_options={"head": "wide"})
    assert _head(config, folder, other) == {"head": "wide", "head_width": 64}  # new classes: a new head


def test_a_short_resume_names_the_recorded_freeze():
    from nin_edge.models.train import TrainConfig
    from nin_edge.runtime.core.errors import ConfigError

    recorded = {"optimizer": "adamw", "lr": 0.0005, "schedule": "cosine", "epochs": 15, "freeze_epochs": 3}
    with pytest.raises(
        ConfigError, match=r"freezes its loaded layers for its first 3 epochs \(recorded\); ask for more"
    ):
        TrainConfig(data="d", resume="c.pt", epochs=3).resolved(recorded)
    assert TrainConfig(data="d", resume="c.pt").resolved(recorded).epochs == 15  # left out: the run's own count
