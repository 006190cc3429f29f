"""Regression tests for the hostile cases of issue 30 (round 4): each one failed before its fix."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from nin_edge.export.cli import main as export_cli
from nin_edge.runtime import Classifier
from nin_edge.runtime.bundle import BUNDLE_FOLDER, MANIFEST, SIGNATURE
from nin_edge.runtime.cli.infer import main as infer_cli
from nin_edge.runtime.cli.serve import main as serve_cli
from nin_edge.runtime.cli.sign import main as sign_cli
from nin_edge.runtime.core.errors import ConfigError
from nin_edge.runtime.core.files import check_replaceable_folder
from nin_edge.runtime.serving.front import Front, Limits
from nin_edge.runtime.serving.web import WebServeConfig, make_server
from nin_edge.runtime.signing import SignatureError

from tests.conftest import assert_one_line_error, run_cli
from tests.test_hostile_round3 import fake_bundle
from tests.test_runtime_only import RUNTIME_PYTHON, needs_runtime_venv

# ================================================================================================
# Server and supply-chain cases (issue 30, parts 2, 3, 5 and 6): nin-serve --web, nin-serve's HTTP
# front, signed bundles. Every server here is real, on loopback with a port from the OS, and every
# wait on one is bounded.
# ================================================================================================

#: Upper bound of any wait on a server in these tests (a hang fails the test instead of hanging it).
BOUND_S = 20


def web_folder(root: Path) -> Path:
    """A served folder with a page, a file, a sub-folder with its own page and one without."""
    web = root / "site"
    (web / "docs").mkdir(parents=True)
    (web / "empty").mkdir()
    (web / "index.html").write_text("<p>page</p>")
    (web / "a.txt").write_text("inside")
    (web / "docs" / "index.html").write_text("<p>docs</p>")
    return web


@contextlib.contextmanager
def web_server(folder: Path, client_timeout_s: int = 30) -> Iterator[int]:
    server = make_server(WebServeConfig(web=str(folder), http_port=0, client_timeout_s=client_timeout_s))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


class _Backend(BaseHTTPRequestHandler):
    """Stands in for Triton behind the front: answers every request with a small JSON body."""

    protocol_version = "HTTP/1.1"

    def _answer(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = json.dumps({"path": self.path}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _answer

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


@contextlib.contextmanager
def front_server(client_timeout_s: int = 30) -> Iterator[int]:
    """nin-serve's HTTP front on a free port, forwarding to a stand-in backend."""
    backend = ThreadingHTTPServer(("127.0.0.1", 0), _Backend)
    threading.Thread(target=backend.serve_forever, daemon=True).start()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    front = Front("127.0.0.1", port, backend.server_address[1], Limits(16 * 784, "16 images"), client_timeout_s)
    front.start()
    try:
        yield port
    finally:
        front.close()
        backend.shutdown()
        backend.server_close()


def raw_exchange(port: int, data: bytes) -> bytes:
    """Send ``data`` and read until the server closes the connection (at most BOUND_S seconds)."""
    with socket.create_connection(("127.0.0.1", port), timeout=BOUND_S) as sock:
        sock.sendall(data)
        chunks = []
        while chunk := sock.recv(65536):  # socket.timeout (a test failure) if the server holds it open
            chunks.append(chunk)
    return b"".join(chunks)


def get(port: int, path: str) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=BOUND_S)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


# -- 2. nothing outside the served folder is served -----------------------------------------------


def test_the_web_server_serves_only_regular_files_inside_its_folder(tmp_path):
    web = web_folder(tmp_path)
    secret = tmp_path / "secret.txt"
    secret.write_text("host secret")
    (web / "passwd.txt").symlink_to("/etc/passwd")
    (web / "secret.txt").symlink_to(secret)
    (web / "root").symlink_to("/")
    (web / "up").symlink_to(tmp_path)
    (web / "inner.txt").symlink_to(web / "a.txt")  # a link that stays inside is a file of the folder
    os.mkfifo(web / "pipe")  # opening it would block the server's thread for good
    with web_server(web) as port:
        assert get(port, "/a.txt") == (200, b"inside")
        assert get(port, "/inner.txt") == (200, b"inside")
        assert get(port, "/") == (200, b"<p>page</p>")
        assert get(port, "/docs/") == (200, b"<p>docs</p>")
        for path in (
            "/passwd.txt",
            "/secret.txt",
            "/root/etc/hostname",
            "/root/",
            "/root",
            "/up/secret.txt",
            "/up/",
            "/empty/",  # a folder without a page: never a listing
            "/pipe",
            "/../secret.txt",
            "/%2e%2e/secret.txt",
        ):
            status, body = get(port, path)
            assert status == 404, (path, status, body[:200])
            assert b"host secret" not in body and b"root:" not in body and b"Directory listing" not in body


def test_a_control_character_in_a_web_path_is_a_400_without_a_traceback(tmp_path, capfd):
    with web_server(web_folder(tmp_path)) as port:
        for path in ("/%00", "/index.html%00.txt", "/a%0a.txt", "/docs/%7f"):
            assert get(port, path)[0] == 400, path
        assert get(port, "/a.txt") == (200, b"inside")
    assert capfd.readouterr().err == ""


# -- 3. no hang: HTTP/0.9 request lines and silent clients ----------------------------------------


@pytest.mark.parametrize("server", ["web", "front"])
def test_a_request_line_without_a_version_is_a_400_and_closed(tmp_path, server):
    with web_server(web_folder(tmp_path)) if server == "web" else front_server() as port:
        answer = raw_exchange(port, b"GET /\r\n")
        assert re.match(rb"HTTP/1\.[01] 400 the request line has no HTTP version", answer), answer[:200]
        assert re.match(rb"HTTP/1\.[01] 400 ", raw_exchange(port, b"POST /v2/models/x/infer\r\n"))
        assert get(port, "/")[0] == 200  # still serving


@pytest.mark.parametrize("server", ["web", "front"])
@pytest.mark.parametrize(
    "sent",
    [b"", b"GET / HTTP/1.1\r\nHost: x\r\n", b"POST /v2/models/x/infer HTTP/1.1\r\nContent-Length: 100\r\n\r\n{"],
    ids=["nothing", "half-headers", "half-body"],
)
def test_a_silent_client_is_closed_after_the_client_timeout(tmp_path, server, sent):
    # Closed after client_timeout_s (1 s) of silence; raw_exchange fails after BOUND_S if it is held open.
    with web_server(web_folder(tmp_path), 1) if server == "web" else front_server(1) as port:
        assert b"200 OK" not in raw_exchange(port, sent)
        assert get(port, "/")[0] == 200


def test_the_client_timeout_is_checked(tmp_path):
    web = web_folder(tmp_path)
    for bad in ("0", "-3"):
        assert_one_line_error(
            run_cli(serve_cli, ["--web", web, "--client-timeout-s", bad]),
            f"--client-timeout-s must be a whole number of seconds >= 1, got {bad}",
        )


@pytest.mark.slow
def test_nin_serve_web_closes_http09_and_silent_clients(tmp_path):
    web = web_folder(tmp_path)
    command = "from nin_edge.runtime.cli.entry import serve; serve()"
    args = ["--web", str(web), "--http-port", "0", "--client-timeout-s", "1"]
    proc = subprocess.Popen([sys.executable, "-c", command, *args], stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        ready = proc.stderr.readline()  # "serving DIR at http://127.0.0.1:PORT/ ..."
        found = re.search(r"http://127\.0\.0\.1:(\d+)/", ready)
        assert found, ready
        port = int(found[1])
        assert re.match(rb"HTTP/1\.[01] 400 ", raw_exchange(port, b"GET /\r\n"))
        assert raw_exchange(port, b"GET / HTTP/1.1\r\n") == b""
        assert get(port, "/a.txt") == (200, b"inside")
    finally:
        proc.terminate()
        proc.wait(timeout=BOUND_S)


# -- 5. a client going away is one line, not a traceback ------------------------------------------


def _reset(sock: socket.socket) -> None:
    """Close with a TCP reset, as a killed client or a dropped network does."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def _handler_threads() -> int:
    return sum("process_request_thread" in t.name for t in threading.enumerate())


def test_clients_that_vanish_mid_request_are_one_line_each(capfd):
    clients = 20
    with front_server() as port:
        before = _handler_threads()
        for k in range(clients):
            sock = socket.create_connection(("127.0.0.1", port), timeout=BOUND_S)
            if k % 2:  # gone while the front reads the body
                sock.sendall(b"POST /v2/models/x/infer HTTP/1.1\r\nContent-Length: 5000\r\n\r\n" + b"{" * 100)
            else:  # gone before the front writes the answer
                sock.sendall(b"GET /v2/health/ready HTTP/1.1\r\nHost: x\r\n\r\n")
            _reset(sock)
        deadline = time.monotonic() + BOUND_S
        while _handler_threads() > before and time.monotonic() < deadline:
            time.sleep(0.05)
        assert get(port, "/v2/health/ready")[0] == 200
    err = capfd.readouterr().err
    assert "Traceback" not in err, err
    lines = err.splitlines()
    assert len(lines) <= clients, err
    for line in lines:
        assert re.fullmatch(r"nin-serve: client 127\.0\.0\.1:\d+ went away mid-request \(\w+\)", line), line


# -- 6. signed bundles ------------------------------------------------------------------------------


def _write_key_pair(folder: Path, name: str) -> tuple[Path, Path]:
    """A fresh EC P-256 key pair in PEM, as ``openssl ecparam -name prime256v1 -genkey`` makes."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    private, public = folder / f"{name}.pem", folder / f"{name}.pub.pem"
    private.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    public.write_bytes(
        key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return private, public


@pytest.fixture(scope="module")
def keys(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("keys")
    private, public = _write_key_pair(folder, "signer")
    _, other = _write_key_pair(folder, "other")
    return {"private": private, "public": public, "other": other}


def small_bundle(folder: Path, model: Path) -> Path:
    """A bundle folder around the checked-in tiny model, laid out and listed as nin-export writes one."""
    labels = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
    files = {"model.onnx": model.read_bytes(), "MODEL_CARD.md": b"# card\n"}
    return fake_bundle(folder, files, models={"fp32": {"onnx": "model.onnx"}}, labels=labels)


def _flip_byte(path: Path, at: int) -> bytes:
    """Change one byte of ``path``; returns the original bytes."""
    data = path.read_bytes()
    path.write_bytes(data[:at] + bytes([data[at] ^ 1]) + data[at + 1 :])
    return data


@pytest.fixture()
def signed(tmp_path, tiny_nin_path, keys) -> Path:
    bundle = small_bundle(tmp_path / "bundle", tiny_nin_path)
    result = run_cli(sign_cli, ["sign", bundle, "--key", keys["private"]])
    assert result.exit_code == 0, result.stderr
    assert (bundle / SIGNATURE).is_file()
    return bundle


def test_a_signed_bundle_verifies_and_loads(signed, keys):
    result = run_cli(sign_cli, ["verify", signed, "--key", keys["public"]])
    assert result.exit_code == 0, result.stderr
    assert "every file is as signed" in result.stderr
    clf = Classifier(signed, "cpu", verify_key=str(keys["public"]))
    assert clf.labels[1] == "Trouser"
    # The signature file does not count against the manifest: the folder stays replaceable and loadable.
    assert check_replaceable_folder(signed, BUNDLE_FOLDER) == signed
    assert Classifier(signed, "cpu").labels == clf.labels


def test_a_users_own_model_sig_keeps_the_bundle_folder_from_being_replaced(tmp_path):
    bundle = fake_bundle(tmp_path / "b")
    (bundle / SIGNATURE).write_text("my notes, not a signature\n")
    with pytest.raises(ConfigError, match="holds 'model.sig', which its manifest.json does not list: not replacing"):
        check_replaceable_folder(bundle, BUNDLE_FOLDER)


@pytest.mark.parametrize(
    "tamper, named",
    [
        (lambda b: _flip_byte(b / "model.onnx", 4000), "'model.onnx' changed after signing"),
        (lambda b: (b / MANIFEST).write_text((b / MANIFEST).read_text().replace("Trouser", "Trousor")), MANIFEST),
        (lambda b: (b / "notes.txt").write_text("added"), "'notes.txt' was added after signing"),
        (lambda b: (b / "MODEL_CARD.md").unlink(), "'MODEL_CARD.md' was removed after signing"),
    ],
    ids=["model-byte", "labels", "added-file", "removed-file"],
)
def test_a_bundle_changed_after_signing_is_refused_naming_the_file(signed, keys, tamper, named, tmp_path):
    tamper(signed)
    with pytest.raises(SignatureError, match=re.escape(named)) as caught:
        Classifier(signed, "cpu", verify_key=str(keys["public"]))
    assert "\n" not in str(caught.value)
    assert_one_line_error(run_cli(sign_cli, ["verify", signed, "--key", keys["public"]]), named)
    image = tmp_path / "image.npy"
    np.save(image, np.zeros((1, 1, 224, 224), np.float32))
    assert_one_line_error(run_cli(infer_cli, [signed, image, "--verify-key", keys["public"]]), named)


def test_a_bundle_signed_by_another_key_or_with_a_damaged_signature_is_refused(signed, keys):
    with pytest.raises(SignatureError, match="is not signed by this key"):
        Classifier(signed, "cpu", verify_key=str(keys["other"]))
    (signed / SIGNATURE).write_text((signed / SIGNATURE).read_text()[:-40])
    assert_one_line_error(run_cli(sign_cli, ["verify", signed, "--key", keys["public"]]), "model.sig is damaged")


def test_an_unsigned_bundle_is_refused_when_a_key_is_given(tmp_path, tiny_nin_path, keys):
    bundle = small_bundle(tmp_path / "bundle", tiny_nin_path)
    expected = f"bundle '{bundle}' is not signed (it has no model.sig)"
    with pytest.raises(SignatureError, match=re.escape(expected)):
        Classifier(bundle, "cpu", verify_key=str(keys["public"]))
    image = tmp_path / "image.npy"
    np.save(image, np.zeros((1, 1, 224, 224), np.float32))
    assert_one_line_error(run_cli(infer_cli, [bundle, image, "--verify-key", keys["public"]]), expected)
    assert_one_line_error(run_cli(serve_cli, [bundle, "--verify-key", keys["public"]]), expected)
    assert_one_line_error(run_cli(sign_cli, ["verify", bundle, "--key", keys["public"]]), expected)
    assert Classifier(bundle, "cpu").labels[0] == "T-shirt/top"  # without a key nothing changes
    result = run_cli(infer_cli, [bundle, image, "--format", "jsonl"])
    assert result.exit_code == 0, result.stderr


def test_verify_key_refusals(tmp_path, tiny_nin_path, keys):
    with pytest.raises(ConfigError, match="verify_key checks a signed bundle folder; .* is not a folder"):
        Classifier(tiny_nin_path, "cpu", verify_key=str(keys["public"]))
    with pytest.raises(ConfigError, match="is not a folder"):
        Classifier(tiny_nin_path.read_bytes(), "cpu", verify_key=str(keys["public"]))
    bundle = small_bundle(tmp_path / "bundle", tiny_nin_path)
    with pytest.raises(ConfigError, match="verify key '.*none.pem' is not a file"):
        Classifier(bundle, "cpu", verify_key=str(tmp_path / "none.pem"))
    assert_one_line_error(
        run_cli(sign_cli, ["sign", bundle, "--key", keys["public"]]), "is not an elliptic-curve private key in PEM form"
    )
    (bundle / "link.txt").symlink_to(tiny_nin_path)
    assert_one_line_error(run_cli(sign_cli, ["sign", bundle, "--key", keys["private"]]), "because it is a symlink")
    (bundle / "link.txt").unlink()
    (bundle / SIGNATURE).write_text("my notes")
    assert_one_line_error(
        run_cli(sign_cli, ["sign", bundle, "--key", keys["private"]]), "exists and is not a model-signing signature"
    )
    assert (bundle / SIGNATURE).read_text() == "my notes"
    assert_one_line_error(
        run_cli(serve_cli, ["--web", tmp_path, "--verify-key", keys["public"]]), "--verify-key checks a bundle MODEL"
    )


def test_signing_replaces_its_own_signature_and_refuses_a_bundle_that_fails_its_manifest(signed, keys):
    first = (signed / SIGNATURE).read_bytes()
    assert run_cli(sign_cli, ["sign", signed, "--key", keys["private"]]).exit_code == 0
    assert (signed / SIGNATURE).read_bytes() != first  # a fresh signature (ECDSA signatures differ each time)
    Classifier(signed, "cpu", verify_key=str(keys["public"]))
    _flip_byte(signed / "model.onnx", 4000)
    assert_one_line_error(run_cli(sign_cli, ["sign", signed, "--key", keys["private"]]), "does not match the sha256")


def test_verifying_without_the_sign_extra_is_one_line_with_the_pip_command(signed, keys, monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "model_signing", None)  # as if not installed: its import raises ImportError
    with pytest.raises(ConfigError, match=re.escape("pip install 'nin-edge[sign]'")):
        Classifier(signed, "cpu", verify_key=str(keys["public"]))
    image = tmp_path / "image.npy"
    np.save(image, np.zeros((1, 1, 224, 224), np.float32))
    assert_one_line_error(
        run_cli(infer_cli, [signed, image, "--verify-key", keys["public"]]),
        "signed bundles need OpenSSF's model-signing library: pip install 'nin-edge[sign]'",
    )
    assert Classifier(signed, "cpu").labels[0] == "T-shirt/top"  # only asking for verification needs it


@pytest.mark.slow
@pytest.mark.e2e
def test_nin_serve_verifies_the_bundle_and_its_front_survives_hostile_clients(signed, keys, tmp_path):
    """The real thing: nin-serve with Triton behind its front, on a signed bundle checked with --verify-key."""
    pytest.importorskip("pytriton", reason="the serve extra (nvidia-pytriton) is not installed")
    from nin_edge.benchmarks.serving import free_ports

    http_port, grpc_port, metrics_port = free_ports(3)
    ports = ["--http-port", http_port, "--grpc-port", grpc_port, "--metrics-port", metrics_port]
    args = [signed, "--name", "nin", "--verify-key", keys["public"], "--client-timeout-s", "2", *ports]
    stderr = tmp_path / "serve.stderr"  # a file: Triton's stub processes inherit it
    with stderr.open("w") as err:
        proc = subprocess.Popen(
            [str(Path(sys.executable).with_name("nin-serve")), *map(str, args)],
            stdout=subprocess.DEVNULL,
            stderr=err,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, stderr.read_text()[-2000:]
            assert time.monotonic() < deadline, "Triton did not become ready in 120 s"
            with contextlib.suppress(OSError):
                if get(http_port, "/v2/models/nin/ready")[0] == 200:
                    break
            time.sleep(0.5)
        assert re.match(rb"HTTP/1\.[01] 400 ", raw_exchange(http_port, b"GET /\r\n"))
        assert raw_exchange(http_port, b"GET /v2/health/ready HTTP/1.1\r\n") == b""  # closed after 2 s
        for k in range(20):
            sock = socket.create_connection(("127.0.0.1", http_port), timeout=BOUND_S)
            sock.sendall(b"POST /v2/models/nin/infer HTTP/1.1\r\nContent-Length: 9000\r\n\r\n{" if k % 2 else b"")
            sock.sendall(b"GET /v2/models/nin HTTP/1.1\r\nHost: x\r\n\r\n" if not k % 2 else b"")
            _reset(sock)
        status, body = get(http_port, "/v2/models/nin")
        assert status == 200 and b'"name":"nin"' in body
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(timeout=60)
    log = stderr.read_text()
    assert "Traceback" not in log, log[-3000:]


@pytest.mark.slow
def test_nin_export_signs_the_bundle_it_writes(tmp_path, keys):
    bundle = tmp_path / "nin-bundle"
    export = ["--random-init", "--input-size", 70, "--check-batch-sizes", 1, "--bundle", bundle]
    assert_one_line_error(
        run_cli(export_cli, [*export, "--sign-key", tmp_path / "none.pem"]), f"signing key '{tmp_path}/none.pem'"
    )
    assert not bundle.exists()  # refused before any work
    assert_one_line_error(
        run_cli(export_cli, ["--random-init", "--output", tmp_path / "m.onnx", "--sign-key", keys["private"]]),
        "--sign-key signs a bundle folder: give --bundle DIR",
    )
    result = run_cli(export_cli, [*export, "--sign-key", keys["private"]])
    assert result.exit_code == 0, result.stderr
    assert (bundle / SIGNATURE).is_file()
    assert SIGNATURE not in json.loads((bundle / MANIFEST).read_text())["files"]
    assert run_cli(sign_cli, ["verify", bundle, "--key", keys["public"]]).exit_code == 0
    Classifier(bundle, "cpu", verify_key=str(keys["public"]))
    original = _flip_byte(bundle / "model.ort", 100)
    with pytest.raises(SignatureError, match="'model.ort' changed after signing"):
        Classifier(bundle, "cpu", verify_key=str(keys["public"]))
    (bundle / "model.ort").write_bytes(original)
    # Exporting again replaces the signed bundle, its signature included (unsigned now, as asked).
    assert run_cli(export_cli, export).exit_code == 0
    assert not (bundle / SIGNATURE).exists()


def test_the_changed_file_is_named_whichever_quotes_model_signing_uses():
    # model-signing's reason is the repr of a list: a digest holding a double quote makes Python escape
    # the single quotes around the file name (seen with a real bundle).
    from nin_edge.runtime.signing import _why

    plain = "Signature mismatch: [\"Hash mismatch for 'model.ort': Expected 'Digest(digest_value=b\\'j\\')'\"]"
    escaped = "Signature mismatch: ['Hash mismatch for \\'model.ort\\': Expected \\'Digest(digest_value=b\"j\")\\'']"
    for reason in (plain, escaped):
        assert _why(reason) == "fails its signature: 'model.ort' changed after signing", reason


@needs_runtime_venv
def test_the_runtime_alone_refuses_to_verify_in_one_line_with_the_pip_command(signed, keys, tmp_path):
    """The runtime install (`nin-edge[cpu]`, no `sign` extra): asking for a check names the extra to install."""
    assert RUNTIME_PYTHON is not None
    image = tmp_path / "image.npy"
    np.save(image, np.zeros((1, 1, 224, 224), np.float32))
    scripts = Path(RUNTIME_PYTHON).parent
    for command in (
        [scripts / "nin-infer", signed, image, "--verify-key", keys["public"]],
        [scripts / "nin-sign", "verify", signed, "--key", keys["public"]],
    ):
        done = subprocess.run([str(c) for c in command], capture_output=True, text=True, cwd=tmp_path)
        assert done.returncode == 1, done.stderr
        assert done.stderr == (
            "error: signed bundles need OpenSSF's model-signing library: pip install 'nin-edge[sign]'\n"
        ), done.stderr
