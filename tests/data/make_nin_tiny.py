"""Writes ``nin_tiny.onnx``: NiN's shape (four NiN blocks, three 3x3/2 max-pools, global average
pool) with narrow widths (8, 16, 16, 10 channels), He-initialised from a fixed seed, exported at
1x224x224 with a symbolic batch and nin-edge metadata by the library's own export steps.

Runtime tests load this 44 KB file instead of exporting a full NiN first. Regenerate with
``python tests/data/make_nin_tiny.py`` after a change to the metadata format.
"""

from pathlib import Path

import torch
from nin_edge.export.steps import check_graph, export_onnx, simplify, with_metadata
from nin_edge.models import FASHION_MNIST_CLASSES
from nin_edge.models.zoo import ZooModel, nin_block
from nin_edge.runtime.core.metadata import ModelMetadata
from torch import nn


def tiny_nin() -> ZooModel:
    torch.manual_seed(7)
    model = ZooModel(
        nin_block(1, 8, kernel_size=11, strides=4, padding=0),
        nn.MaxPool2d(3, stride=2),
        nin_block(8, 16, kernel_size=5, strides=1, padding=2),
        nn.MaxPool2d(3, stride=2),
        nin_block(16, 16, kernel_size=3, strides=1, padding=1),
        nn.MaxPool2d(3, stride=2),
        nn.Dropout(0.5),
        nin_block(16, 10, kernel_size=3, strides=1, padding=1),
        nn.AdaptiveAvgPool2d((1, 1)),
        nn.Flatten(),
        name="nin_tiny",
        in_channels=1,
        num_classes=10,
        input_size=224,
        fixed_input_size=False,
    )
    for layer in model.modules():
        if isinstance(layer, nn.Conv2d):
            nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
            nn.init.uniform_(layer.bias, 0.0, 0.1)
    return model.eval()


if __name__ == "__main__":
    proto = simplify(model=export_onnx(model=tiny_nin(), opset=17).proto).proto
    metadata = ModelMetadata(
        model="nin_tiny",
        input_size=224,
        in_channels=1,
        labels=FASHION_MNIST_CLASSES,
        weights="test fixture: He init, seed 7",
        opset=17,
    )
    proto = with_metadata(model=proto, metadata=metadata)
    check_graph(model=proto, opset=17)
    out = Path(__file__).with_name("nin_tiny.onnx")
    out.write_bytes(proto.SerializeToString())
    print(f"wrote {out} ({out.stat().st_size:,} bytes)")
