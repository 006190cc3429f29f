"""Shared fixtures and helpers for the test suite."""

from __future__ import annotations

import pytest
import torch
from click.testing import CliRunner, Result


def run_cli(command, args: list[str]) -> Result:
    """Invoke a click command with stdout and stderr kept apart."""
    return CliRunner().invoke(command, [str(a) for a in args], catch_exceptions=False)


def assert_one_line_error(result: Result, *fragments: str) -> str:
    """The command failed with exit 1, one ``error:`` line on stderr naming ``fragments``, no traceback."""
    assert result.exit_code == 1, (result.exit_code, result.output, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


@pytest.fixture(autouse=True)
def _seeded() -> None:
    torch.manual_seed(0)


def he_init_nin(input_size: int = 224, seed: int = 1):
    """A NiN with He-initialised weights: unlike PyTorch's default init, its logits depend clearly
    on the image, so tests that compare outputs of different inputs can tell them apart."""
    from nin_edge.models import create_model

    torch.manual_seed(seed)
    model = create_model("nin", input_size=input_size)
    for layer in model.modules():
        if isinstance(layer, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
            torch.nn.init.uniform_(layer.bias, 0.0, 0.1)
    return model.eval()


@pytest.fixture(scope="session")
def nin_checkpoint(tmp_path_factory):
    """A He-initialised NiN saved as a bare state_dict."""
    path = tmp_path_factory.mktemp("ckpt") / "nin_he.pt"
    torch.save(he_init_nin().state_dict(), path)
    return path


@pytest.fixture(scope="session")
def nin_path(nin_checkpoint):
    """That NiN exported at 224x224 by the library, shared by the runtime tests."""
    from nin_edge.export import ExportConfig, run_export

    out = nin_checkpoint.with_suffix(".onnx")
    run_export(ExportConfig(output=str(out), weights=str(nin_checkpoint), check_batch_sizes=(1,)))
    return out
