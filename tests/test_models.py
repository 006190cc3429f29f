"""The zoo: D2L's layouts, shapes, counts, input limits, registry and safe checkpoint loading."""

from __future__ import annotations

import json
import os
import pickle

import pytest
import torch
from nin_edge.models import (
    count_macs,
    count_params,
    create_model,
    list_models,
    load_weights,
    model_card,
    model_options,
    profile_model,
)
from nin_edge.models.registry import pretrained_path
from nin_edge.runtime.core.errors import ConfigError, ModelFileError
from nin_edge.runtime.core.files import sha256_file
from torch import nn

# Spec figures: D2L's own counts for NiN, AlexNet and VGG-11 at 1x224x224 with 10 classes.
KNOWN = "alexnet, nin, nin_d2l, nin_pruned, nin_pruned_quarter, vgg11, vgg11_slim"
EXPECTED = {
    "nin": (1_992_166, 762_297_352),
    "nin_d2l": (1_992_166, 762_297_352),
    "nin_pruned": (964_550, 362_677_032),  # widths 64/176/272 from the card: under half nin's MACs
    "nin_pruned_quarter": (426_342, 173_055_784),  # widths 48/112/176: under a quarter
    "alexnet": (46_764_746, 938_146_176),
    "vgg11": (128_806_154, 7_547_232_256),
    "vgg11_slim": (43_093_322, 512_155_648),
}


def book_nin_block(in_channels, out_channels, kernel_size, strides, padding):
    """The block written the way D2L writes it, independent of the package."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, strides, padding),
        nn.ReLU(),
        nn.Conv2d(out_channels, out_channels, kernel_size=1),
        nn.ReLU(),
        nn.Conv2d(out_channels, out_channels, kernel_size=1),
        nn.ReLU(),
    )


def book_nin():
    return nn.Sequential(
        book_nin_block(1, 96, kernel_size=11, strides=4, padding=0),
        nn.MaxPool2d(3, stride=2),
        book_nin_block(96, 256, kernel_size=5, strides=1, padding=2),
        nn.MaxPool2d(3, stride=2),
        book_nin_block(256, 384, kernel_size=3, strides=1, padding=1),
        nn.MaxPool2d(3, stride=2),
        nn.Dropout(0.5),
        book_nin_block(384, 10, kernel_size=3, strides=1, padding=1),
        nn.AdaptiveAvgPool2d((1, 1)),
        nn.Flatten(),
    )


def test_registry_lists_every_model():
    assert list_models() == sorted(EXPECTED)


@pytest.mark.parametrize("name", list_models())
@pytest.mark.slow
def test_params_and_macs_match_the_book(name):
    model = create_model(name)
    assert (count_params(model), count_macs(model)) == EXPECTED[name]
    profile = profile_model(model)
    assert (profile.params, profile.macs, profile.input_size) == (*EXPECTED[name], 224)


def test_nin_shape_table_is_the_books():
    model = create_model("nin").eval()
    x = torch.zeros(1, 1, 224, 224)
    shapes = []
    for layer in model:
        x = layer(x)
        shapes.append(tuple(x.shape[1:]))
    assert shapes == [
        (96, 54, 54),
        (96, 26, 26),
        (256, 26, 26),
        (256, 12, 12),
        (384, 12, 12),
        (384, 5, 5),
        (384, 5, 5),
        (10, 5, 5),
        (10, 1, 1),
        (10,),
    ]
    assert [type(m).__name__ for m in model] == [type(m).__name__ for m in book_nin()]


def test_nin_state_dict_keys_are_the_books():
    assert list(create_model("nin").state_dict()) == list(book_nin().state_dict())
    assert list(create_model("nin").state_dict())[:2] == ["0.0.weight", "0.0.bias"]
    assert list(create_model("nin").state_dict())[-1] == "7.4.bias"


@pytest.mark.parametrize(
    "wrap",
    [
        lambda sd: sd,
        lambda sd: {"state_dict": sd, "epoch": torch.tensor(3)},
        lambda sd: {"model": sd},
        lambda sd: {f"net.{k}": v for k, v in sd.items()},
        lambda sd: {f"module.{k}": v for k, v in sd.items()},
    ],
    ids=["bare", "state_dict", "model", "d2l-class-net-prefix", "ddp-module-prefix"],
)
def test_book_checkpoint_loads_unchanged(tmp_path, wrap):
    book = book_nin().eval()
    path = tmp_path / "book.pt"
    torch.save(wrap(book.state_dict()), path)
    model = create_model("nin").eval()
    loaded = load_weights(model, path)
    x = torch.rand(2, 1, 96, 96)
    with torch.no_grad():
        assert torch.equal(model(x), book(x))
    assert loaded.tensors == 24 and len(loaded.sha256) == 64


@pytest.mark.parametrize("name", list_models())
def test_every_model_has_a_card_that_matches_the_built_model(name):
    card = model_card(name)
    model = create_model(name)
    assert card.name == name and card.summary
    assert (card.min_input_size, card.fixed_input_size) == (model.min_input_size, model.fixed_input_size)
    assert (card.input_size, card.in_channels, card.num_classes) == (
        model.input_size,
        model.in_channels,
        model.num_classes,
    )
    assert len(card.labels) == card.num_classes and card.labels_for(3) == ("class_0", "class_1", "class_2")
    # One parameter count, measured on the model exported (classes and channels change it): none here.
    assert "parameters" not in card.summary
    if card.weights_file:
        assert pretrained_path(name).name == card.weights_file and card.weights_fit()
        assert not card.weights_fit(in_channels=3) and card.export_size(True) == card.weights_input_size
    else:
        assert not card.weights_fit() and card.export_size(True) == card.input_size == 224


def test_unknown_model_card_lists_the_known_ones():
    with pytest.raises(ConfigError, match=r"unknown model 'resnet'; known models: " + KNOWN):
        model_card("resnet")


@pytest.mark.parametrize("name", list_models())
@pytest.mark.slow
def test_smallest_input_is_enforced_and_real(name):
    model = create_model(name)
    smallest = model.min_input_size
    if model.fixed_input_size:
        small = create_model(name, input_size=smallest)
        with pytest.raises(ConfigError, match=f"too small for {model.model_name}"):
            create_model(name, input_size=smallest - 1)
        with pytest.raises(ConfigError, match="built for 224x224"):
            model.check_input_size(smallest)
    else:
        small = model
        with pytest.raises(
            ConfigError,
            match=rf"input size {smallest - 1} is too small for {model.model_name}: it needs at least {smallest}",
        ):
            model.check_input_size(smallest - 1)
    small.eval()
    with torch.no_grad():
        assert small(torch.zeros(1, 1, smallest, smallest)).shape == (1, 10)


def test_nin_needs_67_pixels():
    # (67 - 11) / 4 + 1 = 15 -> pool 7 -> pool 3 -> pool 1: the last size that survives.
    assert create_model("nin").min_input_size == 67
    with pytest.raises(RuntimeError):
        create_model("nin").eval()(torch.zeros(1, 1, 66, 66))


def test_unknown_model_lists_known_ones():
    with pytest.raises(ConfigError, match="unknown model 'resnet'; known models: " + KNOWN):
        create_model("resnet")


def test_unknown_option_is_named():
    with pytest.raises(ConfigError, match="model 'nin' has no option 'width'; its options are: in_channels"):
        create_model("nin", width=2)
    assert model_options("nin") == [
        "in_channels",
        "num_classes",
        "dropout",
        "input_size",
        "head",
        "head_width",
        "widths",
    ]


@pytest.mark.parametrize("name", list_models())
@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("in_channels", 0, "in_channels must be a positive whole number, got 0"),
        ("num_classes", -1, "num_classes must be a positive whole number, got -1"),
        ("dropout", 1.5, "dropout must be a probability in [0, 1), got 1.5"),
    ],
)
def test_bad_options_are_refused(name, option, value, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")):
        create_model(name, **{option: value})


def test_other_channels_and_classes():
    model = create_model("nin", in_channels=3, num_classes=7).eval()
    assert model(torch.zeros(2, 3, 100, 100)).shape == (2, 7)


class _Exploit:
    """A pickle that would create a file when unpickled."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_missing_checkpoint(tmp_path):
    with pytest.raises(ModelFileError, match="does not exist"):
        load_weights(create_model("nin"), tmp_path / "nope.pt")


def test_truncated_checkpoint(tmp_path):
    path = tmp_path / "cut.pt"
    torch.save(create_model("nin").state_dict(), path)
    path.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(ModelFileError, match="cannot read weights file"):
        load_weights(create_model("nin"), path)


def test_non_torch_file(tmp_path):
    path = tmp_path / "notes.pt"
    path.write_text("these are not weights\n")
    with pytest.raises(ModelFileError, match=f"cannot read weights file '{path}'"):
        load_weights(create_model("nin"), path)


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_code_running_pickle_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"state_dict": create_model("nin").state_dict(), "x": _Exploit(marker)}, path, pickle_protocol=2)
    with pytest.raises(ModelFileError, match="pickled Python objects other than tensors"):
        load_weights(create_model("nin"), path)
    assert not marker.exists()
    # The same for a plain pickle that is not a torch file at all.
    raw = tmp_path / "evil.pkl"
    raw.write_bytes(pickle.dumps(_Exploit(marker)))
    with pytest.raises(ModelFileError):
        load_weights(create_model("nin"), raw)
    assert not marker.exists()


def test_mismatched_checkpoint_names_first_bad_key(tmp_path):
    path = tmp_path / "twenty.pt"
    torch.save(create_model("nin", num_classes=20).state_dict(), path)
    with pytest.raises(
        ModelFileError, match=r"key '7\.0\.weight' has shape \(20, 384, 3, 3\), expected \(10, 384, 3, 3\)"
    ):
        load_weights(create_model("nin"), path)


def test_checkpoint_missing_and_extra_keys(tmp_path):
    state = create_model("nin").state_dict()
    missing = tmp_path / "missing.pt"
    torch.save({k: v for k, v in state.items() if k != "4.2.bias"}, missing)
    with pytest.raises(ModelFileError, match=r"key '4\.2\.bias' is missing \(expected shape \(384,\)\)"):
        load_weights(create_model("nin"), missing)
    extra = tmp_path / "extra.pt"
    torch.save({**state, "head.weight": torch.zeros(1)}, extra)
    with pytest.raises(ModelFileError, match="unexpected key 'head.weight'"):
        load_weights(create_model("nin"), extra)


def test_checkpoint_of_another_model(tmp_path):
    path = tmp_path / "alex.pt"
    torch.save(create_model("alexnet", input_size=65).state_dict(), path)
    with pytest.raises(ModelFileError, match="does not fit nin"):
        load_weights(create_model("nin"), path)


def test_non_tensor_entries_are_refused(tmp_path):
    path = tmp_path / "meta.pt"
    torch.save({"0.0.weight": [1, 2, 3]}, path)
    with pytest.raises(ModelFileError, match="entry '0.0.weight' is a list, not a tensor"):
        load_weights(create_model("nin"), path)


def test_pretrained_nin_is_shipped_and_trained():
    trained = create_model("nin", pretrained=True)
    fresh = create_model("nin")
    assert not torch.equal(trained[0][0].weight, fresh[0][0].weight)
    assert torch.equal(trained[0][0].weight, torch.load(pretrained_path("nin"), weights_only=True)["0.0.weight"])


@pytest.mark.parametrize("name", [n for n in list_models() if model_card(n).weights_file])
def test_every_shipped_weights_file_is_the_one_its_training_record_describes(name):
    """models/weights/NAME.json records how each shipped file was trained and its sha256 (one record per file)."""
    path = pretrained_path(name)
    record = json.loads(path.with_suffix(".json").read_text())
    assert record["weights_sha256"] == sha256_file(path)
    assert record["export_input_size"] == model_card(name).weights_input_size


def test_the_book_recipe_weights_stay_by_name_beside_the_better_default():
    book, default = (create_model(n, pretrained=True) for n in ("nin_d2l", "nin"))
    assert [k for k, _ in book.state_dict().items()] == [k for k, _ in default.state_dict().items()]
    assert not torch.equal(book[0][0].weight, default[0][0].weight)
    assert model_card("nin_d2l").weights_file == "nin_d2l_fashion_mnist.pt"


def test_pretrained_refusals():
    with pytest.raises(
        ConfigError,
        match="no pretrained weights are shipped for 'alexnet'; they exist for: "
        "nin, nin_d2l, nin_pruned, nin_pruned_quarter",
    ):
        create_model("alexnet", pretrained=True)
    with pytest.raises(
        ConfigError, match="the pretrained nin takes 1 channel and gives 10 classes; got in_channels=1, num_classes=5"
    ):
        create_model("nin", pretrained=True, num_classes=5)
