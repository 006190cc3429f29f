"""The model zoo: NiN exactly as in D2L's chapter, and D2L's AlexNet and VGG-11 for the same input.

Every model is a plain ``nn.Sequential`` laid out as the book builds it, so its ``state_dict`` keys
(``0.0.weight`` ... ``7.4.bias`` for NiN) are the book's and checkpoints trained with the book's
code load unchanged. Each model also knows the input it accepts (channels, smallest or exact size).
"""

from __future__ import annotations

from collections.abc import Sequence

from nin_edge.runtime.core.errors import ConfigError
from nin_edge.runtime.core.numbers import is_whole_number
from torch import nn

from .cards import ModelCard, register_model, registered_entry

# Larger inputs than this are not searched for a smallest size; no model here needs more.
_SIZE_SEARCH_LIMIT = 1024


def _positive(name: str, value: object, model: str) -> None:
    if not is_whole_number(value, minimum=1):
        raise ConfigError(f"{model}: {name} must be a positive whole number, got {value!r}")


def _dropout(value: object, model: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
        raise ConfigError(f"{model}: dropout must be a probability in [0, 1), got {value!r}")


def feature_size(layers: nn.Module, size: int) -> int:
    """Side length of the feature map after the spatial layers of ``layers`` for a ``size`` input.

    Returns 0 when the input is too small for some layer. Stops at the first Flatten, so for
    AlexNet and VGG it gives the map their first Linear layer sees.
    """
    for layer in layers.modules():
        if isinstance(layer, nn.Flatten):
            break
        if isinstance(layer, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)):
            k, s, p = (_first(v) for v in (layer.kernel_size, layer.stride, layer.padding))
            d = _first(layer.dilation) if isinstance(layer, (nn.Conv2d, nn.MaxPool2d)) else 1
            span = size + 2 * p - d * (k - 1) - 1
            if span < 0:
                return 0
            size = span // s + 1
        elif isinstance(layer, nn.AdaptiveAvgPool2d):
            size = _first(layer.output_size)
    return size


def _first(value: object) -> int:
    """A layer's size attribute as one number: an int, or the first of a pair (square layers)."""
    if isinstance(value, int):
        return value
    if isinstance(value, tuple) and value and isinstance(value[0], int):
        return value[0]
    raise ConfigError(f"cannot compute the output size of a layer with size attribute {value!r}")


def smallest_input_size(layers: nn.Module) -> int:
    """The smallest square input side for which every spatial layer of ``layers`` has output."""
    for size in range(1, _SIZE_SEARCH_LIMIT + 1):
        if feature_size(layers, size) >= 1:
            return size
    raise ConfigError(f"no input up to {_SIZE_SEARCH_LIMIT} pixels fits this network")


class ZooModel(nn.Sequential):
    """A registered classifier: the book's ``nn.Sequential`` plus the input contract it accepts.

    ``fixed_input_size`` is set for networks with Linear heads (AlexNet, VGG), which accept only the
    size they were built for; fully convolutional NiN accepts any size from ``min_input_size`` up.
    It comes from the registered model's card unless given (an unregistered network's).
    """

    def __init__(
        self,
        *layers: nn.Module,
        name: str,
        in_channels: int,
        num_classes: int,
        input_size: int,
        fixed_input_size: bool | None = None,
    ) -> None:
        super().__init__(*layers)
        self.model_name = name
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.input_size = input_size
        # A registered model's card says it; only an unregistered network (a test's) states it here.
        self.fixed_input_size = (
            registered_entry(name)[1].fixed_input_size if fixed_input_size is None else fixed_input_size
        )
        self.min_input_size = smallest_input_size(self)

    def check_input_size(self, size: int) -> None:
        """Raise :class:`ConfigError` unless a ``size`` x ``size`` input fits this model."""
        _positive("input size", size, self.model_name)
        if self.fixed_input_size and size != self.input_size:
            raise ConfigError(
                f"{self.model_name} was built for {self.input_size}x{self.input_size} inputs (its Linear "
                f"head fixes the size), got {size}; build it with input_size={size} instead"
            )
        if size < self.min_input_size:
            raise ConfigError(
                f"input size {size} is too small for {self.model_name}: it needs at least "
                f"{self.min_input_size} pixels per side to survive its strided layers and pools"
            )


def _check_built_size(layers: Sequence[nn.Module], input_size: int, name: str) -> int:
    """Validate ``input_size`` against a conv stack and return the side of its output map."""
    _positive("input_size", input_size, name)
    side = feature_size(nn.Sequential(*layers), input_size)
    if side < 1:
        need = smallest_input_size(nn.Sequential(*layers))
        raise ConfigError(
            f"input size {input_size} is too small for {name}: it needs at least {need} pixels per side "
            "to survive its strided layers and pools"
        )
    return side


def nin_block(in_channels: int, out_channels: int, kernel_size: int, strides: int, padding: int) -> nn.Sequential:
    """D2L's NiN block: a convolution and two 1x1 convolutions, each followed by ReLU."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, strides, padding),
        nn.ReLU(),
        nn.Conv2d(out_channels, out_channels, kernel_size=1),
        nn.ReLU(),
        nn.Conv2d(out_channels, out_channels, kernel_size=1),
        nn.ReLU(),
    )


#: NiN's last block: the book's (its hidden 1x1 layers C units wide, a ReLU after each of the three
#: layers) or ``wide``: hidden layers ``head_width`` units wide and raw logits (no ReLU after the last
#: layer), which learns 2 or 3 classes where the book's dies (docs/few-classes.md).
NIN_HEADS = ("book", "wide")
#: The wide head's hidden width when its card records none (checkpoints of 2026-12-06/07): max(C, 16).
HEAD_MIN_WIDTH = 16
#: The wide head's hidden width nin-train gives new models: max(C, 64). Sixteen units left 10 classes
#: under-fitted (one class never predicted, even on its training images; docs/few-classes.md).
WIDE_HEAD_WIDTH = 64


def nin_head(in_channels: int, num_classes: int, head: str = "book", width: int | None = None) -> nn.Sequential:
    """NiN's last block for ``num_classes``; both layouts keep the book's state_dict keys (``7.0`` ... ``7.4``).
    ``width`` is the wide head's hidden width (default max(C, :data:`HEAD_MIN_WIDTH`))."""
    if head not in NIN_HEADS:
        raise ConfigError(f"nin: head must be one of {', '.join(NIN_HEADS)}, got {head!r}")
    if head == "book":
        if width is not None:
            raise ConfigError(f"nin: head_width is the wide head's; the book's head is C units wide, got {width!r}")
        return nin_block(in_channels, num_classes, kernel_size=3, strides=1, padding=1)
    if width is not None:
        _positive("head_width", width, "nin")
    hidden = width if width is not None else max(num_classes, HEAD_MIN_WIDTH)
    return nn.Sequential(
        nn.Conv2d(in_channels, hidden, kernel_size=3, stride=1, padding=1),
        nn.ReLU(),
        nn.Conv2d(hidden, hidden, kernel_size=1),
        nn.ReLU(),
        nn.Conv2d(hidden, num_classes, kernel_size=1),
    )


def init_head(block: nn.Module) -> None:
    """He-normal weights and zero biases: every ReLU of a new head starts alive for about half the inputs
    (PyTorch's default biases, U(+-1/sqrt(fan_in)), are +-0.71 for a 2-input layer and can start it dead)."""
    for layer in block.modules():
        if isinstance(layer, nn.Conv2d):
            nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
            nn.init.zeros_(layer.bias)  # type: ignore[arg-type]  # every layer here has a bias


#: The channel widths of NiN's first three blocks in the book; nin-prune records narrower ones in the card.
NIN_WIDTHS = (96, 256, 384)


def check_nin_widths(widths: object) -> tuple[int, ...]:
    """``widths`` as a tuple of one positive whole number per NiN block before the head (a ConfigError if not)."""
    if (
        not isinstance(widths, (list, tuple))
        or len(widths) != len(NIN_WIDTHS)
        or not all(isinstance(w, int) and not isinstance(w, bool) and w > 0 for w in widths)
    ):
        raise ConfigError(
            f"nin: widths must be {len(NIN_WIDTHS)} positive whole numbers (one per block before the head, "
            f"the book's are {list(NIN_WIDTHS)}), got {widths!r}"
        )
    return tuple(widths)


@register_model(
    ModelCard(
        name="nin",
        summary="Network in Network (D2L): 4 NiN blocks, global average pool",
        min_input_size=67,
        fixed_input_size=False,
        weights_file="nin_fashion_mnist.pt",
        weights_input_size=112,
    )
)
def nin(
    in_channels: int = 1,
    num_classes: int = 10,
    dropout: float = 0.5,
    *,
    input_size: int = 224,
    head: str = "book",
    head_width: int | None = None,
    widths: Sequence[int] = NIN_WIDTHS,
) -> ZooModel:
    """Network in Network as in D2L, chapter "Network in Network (NiN)".

    ``input_size`` is the size the model is meant for (NiN itself accepts any size from 67 up);
    ``head`` the layout of the last block (:data:`NIN_HEADS`; the book's by default) and ``head_width`` the
    wide head's hidden width (:func:`nin_head`); ``widths`` the
    channels of the three blocks before it (a pruned model's, docs/pruning.md; the state_dict keys stay).
    """
    _positive("in_channels", in_channels, "nin")
    _positive("num_classes", num_classes, "nin")
    _dropout(dropout, "nin")
    w1, w2, w3 = check_nin_widths(widths)
    model = ZooModel(
        nin_block(in_channels, w1, kernel_size=11, strides=4, padding=0),
        nn.MaxPool2d(3, stride=2),
        nin_block(w1, w2, kernel_size=5, strides=1, padding=2),
        nn.MaxPool2d(3, stride=2),
        nin_block(w2, w3, kernel_size=3, strides=1, padding=1),
        nn.MaxPool2d(3, stride=2),
        nn.Dropout(dropout),
        nin_head(w3, num_classes, head, head_width),
        nn.AdaptiveAvgPool2d((1, 1)),
        nn.Flatten(),
        name="nin",
        in_channels=in_channels,
        num_classes=num_classes,
        input_size=input_size,
    )
    model.check_input_size(input_size)
    return model


def _nin_weights(name: str, summary: str, model_options: dict | None = None) -> None:
    """Register ``nin`` again under ``name`` with other shipped Fashion-MNIST weights (trained at 112),
    built with the card's ``model_options``: one entry per set of weights."""
    register_model(
        ModelCard(
            name=name,
            summary=summary,
            min_input_size=67,
            fixed_input_size=False,
            weights_file=f"{name}_fashion_mnist.pt",
            weights_input_size=112,
            model_options=model_options or {},
        )
    )(nin)


# The same network with the weights D2L's own recipe gives (0.905 at 112), kept by name for parity with
# the chapter now that ``nin`` ships better weights of the same layout (models/weights/README.md).
_nin_weights("nin_d2l", "Network in Network (D2L) with the book recipe's Fashion-MNIST weights")
# ``nin`` with whole channels pruned by nin-prune (widths multiples of 16) and fine-tuned (docs/pruning.md):
# the same layers and keys, narrower blocks; the widths are the card's, so create_model(NAME) builds it.
_nin_weights(
    "nin_pruned",
    "Network in Network (D2L), pruned to half its MACs (channels 64/176/272) on Fashion-MNIST",
    {"widths": (64, 176, 272)},
)
_nin_weights(
    "nin_pruned_quarter",
    "Network in Network (D2L), pruned to a quarter of its MACs (channels 48/112/176) on Fashion-MNIST",
    {"widths": (48, 112, 176)},
)


@register_model(
    ModelCard(
        name="alexnet",
        summary="AlexNet as D2L adapts it to Fashion-MNIST",
        min_input_size=65,
        fixed_input_size=True,
    )
)
def alexnet(in_channels: int = 1, num_classes: int = 10, dropout: float = 0.5, *, input_size: int = 224) -> ZooModel:
    """AlexNet as in D2L for Fashion-MNIST (one channel in, 10 classes out)."""
    _positive("in_channels", in_channels, "alexnet")
    _positive("num_classes", num_classes, "alexnet")
    _dropout(dropout, "alexnet")
    features = [
        nn.Conv2d(in_channels, 96, kernel_size=11, stride=4, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Conv2d(96, 256, kernel_size=5, padding=2),
        nn.ReLU(),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Conv2d(256, 384, kernel_size=3, padding=1),
        nn.ReLU(),
        nn.Conv2d(384, 384, kernel_size=3, padding=1),
        nn.ReLU(),
        nn.Conv2d(384, 256, kernel_size=3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(kernel_size=3, stride=2),
    ]
    side = _check_built_size(features, input_size, "alexnet")
    return ZooModel(
        *features,
        nn.Flatten(),
        nn.Linear(256 * side * side, 4096),
        nn.ReLU(),
        nn.Dropout(p=dropout),
        nn.Linear(4096, 4096),
        nn.ReLU(),
        nn.Dropout(p=dropout),
        nn.Linear(4096, num_classes),
        name="alexnet",
        in_channels=in_channels,
        num_classes=num_classes,
        input_size=input_size,
    )


VGG11_ARCH = ((1, 64), (1, 128), (2, 256), (2, 512), (2, 512))


def vgg_block(num_convs: int, in_channels: int, out_channels: int) -> nn.Sequential:
    """D2L's VGG block: ``num_convs`` 3x3 convolutions with ReLU, then a 2x2 max-pool."""
    layers: list[nn.Module] = []
    for _ in range(num_convs):
        layers += [nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1), nn.ReLU()]
        in_channels = out_channels
    layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
    return nn.Sequential(*layers)


def _vgg(name: str, ratio: int, in_channels: int, num_classes: int, dropout: float, input_size: int) -> ZooModel:
    _positive("in_channels", in_channels, name)
    _positive("num_classes", num_classes, name)
    _dropout(dropout, name)
    blocks, channels = [], in_channels
    for num_convs, width in VGG11_ARCH:
        blocks.append(vgg_block(num_convs, channels, width // ratio))
        channels = width // ratio
    side = _check_built_size(blocks, input_size, name)
    return ZooModel(
        *blocks,
        nn.Flatten(),
        nn.Linear(channels * side * side, 4096),
        nn.ReLU(),
        nn.Dropout(dropout),
        nn.Linear(4096, 4096),
        nn.ReLU(),
        nn.Dropout(dropout),
        nn.Linear(4096, num_classes),
        name=name,
        in_channels=in_channels,
        num_classes=num_classes,
        input_size=input_size,
    )


@register_model(
    ModelCard(
        name="vgg11",
        summary="VGG-11 (D2L)",
        min_input_size=32,
        fixed_input_size=True,
    )
)
def vgg11(in_channels: int = 1, num_classes: int = 10, dropout: float = 0.5, *, input_size: int = 224) -> ZooModel:
    """VGG-11 as in D2L, at full widths (64 to 512 channels, 4096-wide head)."""
    return _vgg("vgg11", 1, in_channels, num_classes, dropout, input_size)


@register_model(
    ModelCard(
        name="vgg11_slim",
        summary="VGG-11 with a quarter of the widths, as D2L trains it",
        min_input_size=32,
        fixed_input_size=True,
    )
)
def vgg11_slim(in_channels: int = 1, num_classes: int = 10, dropout: float = 0.5, *, input_size: int = 224) -> ZooModel:
    """The book's training variant of VGG-11: convolution widths divided by 4, the same 4096-wide head."""
    return _vgg("vgg11_slim", 4, in_channels, num_classes, dropout, input_size)
