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
