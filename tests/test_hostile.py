"""Regression tests for the hostile cases of issue 11: each one failed before its fix."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys

import pytest
from nin_edge.export.cli import main as export_cli
from nin_edge.runtime.core.errors import ConfigError
from nin_edge.runtime.core.files import atomic_output, check_writable, remove_stale_temporaries

from tests.conftest import assert_one_line_error, run_cli

EXPORT = ["--random-init", "--input-size", 70, "--check-batch-sizes", 1]


# -- 1. outputs that are not regular files are never replaced ------------------------------------


def test_a_fifo_output_is_refused_and_left_alone(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    result = run_cli(export_cli, [*EXPORT, "--output", fifo])
    assert_one_line_error(result, f"output '{fifo}' exists and is a FIFO, not a regular file")
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)


@pytest.mark.skipif(os.geteuid() != 0, reason="making a device node needs root")
def test_a_device_node_output_is_refused_and_left_alone(tmp_path):
    node = tmp_path / "null"
    os.mknod(node, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    result = run_cli(export_cli, [*EXPORT, "--output", node])
    assert_one_line_error(result, "exists and is a character device, not a regular file")
    assert stat.S_ISCHR(os.stat(node).st_mode)


def test_a_directory_or_a_dangling_link_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="exists and is a directory"):
        check_writable(tmp_path)
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere.onnx")
    with pytest.raises(ConfigError, match="is a link to .*nowhere.onnx', which does not exist"):
        check_writable(tmp_path / "dangling")


def test_a_link_keeps_pointing_at_its_replaced_target(tmp_path):
    target = tmp_path / "v2.onnx"
    target.write_bytes(b"old")
    link = tmp_path / "current.onnx"
    link.symlink_to(target)
    with atomic_output(link) as tmp:
        tmp.write_bytes(b"new")
    assert link.is_symlink() and link.resolve() == target and target.read_bytes() == b"new"


# -- 2. temporaries: removed on SIGTERM, stale ones cleaned by the next successful run ------------


def test_stale_temporaries_of_dead_processes_are_removed_by_the_next_write(tmp_path):
    out = tmp_path / "n.onnx"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f".n.onnx.nin-edge-{int(dead.stdout)}-abc123.tmp"
    alive = tmp_path / f".n.onnx.nin-edge-{os.getppid()}-def456.tmp"  # a process that still runs
    other = tmp_path / ".other.onnx.nin-edge-1-x.tmp"
    for f in (stale, alive, other):
        f.write_bytes(b"partial")
    assert remove_stale_temporaries(out) == [stale]
    stale.write_bytes(b"partial")
    with atomic_output(out) as tmp:
        tmp.write_bytes(b"model")
    assert not stale.exists() and alive.exists() and other.exists() and out.read_bytes() == b"model"


def test_sigterm_mid_write_removes_the_temporary_and_exits_143(tmp_path):
    out = tmp_path / "n.onnx"
    out.write_bytes(b"previous model")
    script = (
        "import sys, time, click\n"
        "from nin_edge.runtime.cli.common import one_line_errors\n"
        "from nin_edge.runtime.core.files import atomic_output\n"
        "@click.command()\n@one_line_errors\n"
        "def main():\n"
        f"    with atomic_output({str(out)!r}) as tmp:\n"
        "        tmp.write_bytes(b'x' * 1000)\n"
        "        print('writing', flush=True)\n"
        "        time.sleep(60)\n"
        "main()\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "writing"
    assert len(list(tmp_path.glob(".n.onnx.nin-edge-*.tmp"))) == 1
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 143 and err.strip() == "terminated"
    assert list(tmp_path.glob(".n.onnx.nin-edge-*.tmp")) == [] and out.read_bytes() == b"previous model"
