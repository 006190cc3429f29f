"""The web target: the folder, its server, and nin-edge.mjs in Node and in a real headless Chromium,
answering as the Python runtime does.

Node (``node --test``, onnxruntime-node) and Chromium (Debian's ``chromium``, driven by Playwright)
are installed by ``.ci/run``; where they are missing these tests fail with the command that installs
them, they never skip.
"""

from __future__ import annotations

import base64
import functools
import gzip
import hashlib
import http.server
import json
import os
import shutil
import subprocess
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from nin_edge.benchmarks.web import another_chromium, chromium, feed, open_page, serving, wait_loaded, write_pngs
from nin_edge.export.cli import main as export_cli
from nin_edge.export.targets.web import (
    DESCRIPTOR,
    ORT_WEB_FILES,
    ORT_WEBGPU_FILES,
    WebConfig,
    check_web_options,
    write_web,
)
from nin_edge.export.web_sources import WEB_SOURCES, pinned_ort_web
from nin_edge.runtime import Classifier
from nin_edge.runtime.cli.serve import main as serve_cli
from nin_edge.runtime.core.errors import ConfigError
from nin_edge.runtime.preprocess import MAX_ASPECT_RATIO, MAX_IMAGE_PIXELS
from nin_edge.runtime.serving.web import TYPES

from tests.conftest import assert_one_line_error, run_cli

DATA = Path(__file__).parent / "data"
#: Fashion-MNIST test images fed to Node and to the page (the checked-in file holds 200).
IMAGES = 120
#: Largest probability difference from the Python runtime. INT8 kernels round differently between
#: onnxruntime builds (onnxruntime-node/-web 1.30 here, the Python wheel 1.32); measured 2026-11-30 with
#: the x86-avx2 recipe (7-bit weights, last block FP32): 3.2e-2 in Node (124 images) and in Chromium
#: (123 files through the page), top-1 identical on all. FP32: 9e-7 on WebAssembly, 6e-7 on WebGPU.
ATOL = {"fp32": 1e-3, "int8": 5e-2}
#: WebGPU on SwiftShader (a CPU Vulkan) runs about 2 s per image on this busy 2-core machine: fewer images.
WEBGPU_IMAGES = 20
#: Chromium's WebGPU on SwiftShader, its CPU implementation of Vulkan: a real adapter without a GPU
#: (without these flags headless Chromium gives none). Correctness only: it says nothing of GPU speed.
SWIFTSHADER = ("--enable-unsafe-webgpu", "--use-webgpu-adapter=swiftshader")
ARTIFACTS = Path(os.environ.get("NIN_EDGE_ARTIFACTS", Path(__file__).parent.parent / "build" / "test-artifacts"))


def fashion(n: int = IMAGES) -> np.ndarray:
    """The first ``n`` Fashion-MNIST test images, (n, 28, 28) uint8, from tests/data."""
    raw = gzip.decompress((DATA / "t10k-images-idx3-ubyte.gz").read_bytes())
    count = int.from_bytes(raw[4:8], "big")
    assert count >= n, f"tests/data holds {count} images, the web tests need {n}"
    return np.frombuffer(raw, np.uint8, offset=16).reshape(count, 28, 28)[:n]


def node() -> str:
    path = shutil.which("node")
    if path is None or not (WEB_SOURCES / "node_modules" / "onnxruntime-node").is_dir():
        pytest.fail(
            "the web tests need Node 20+ and `ONNXRUNTIME_NODE_INSTALL=skip npm ci` in web/ (bash .ci/run does both)"
        )
    return path


@pytest.fixture(scope="module")
def tiny_web(tiny_nin_path, tmp_path_factory):
    folder = tmp_path_factory.mktemp("web") / "site"
    summary = write_web(WebConfig(source=str(tiny_nin_path), folder=str(folder)))
    return folder, summary


# -- the folder ---------------------------------------------------------------------------------


def test_the_web_folder_holds_page_module_runtime_and_model(tiny_web, tiny_nin_path):
    folder, summary = tiny_web
    names = {p.name for p in folder.iterdir()}
    assert names == {"index.html", "nin-edge.mjs", DESCRIPTOR, "nin_tiny.onnx", *ORT_WEB_FILES}
    assert summary.files == {p.name: p.stat().st_size for p in folder.iterdir()}
    desc = json.loads((folder / DESCRIPTOR).read_text())
    meta = Classifier(tiny_nin_path, "cpu").metadata
    # Everything nin-edge.mjs uses comes from the model's own metadata and the runtime's limits.
    assert desc["input"] == {"name": "input", "channels": meta.in_channels, "size": meta.input_size, "layout": "NCHW"}
    assert desc["labels"] == list(meta.labels)
    pre = meta.preprocessing
    assert desc["preprocessing"] == {
        "color": pre.color,
        "resize": "bilinear",
        "scale": pre.scale,
        "mean": list(pre.mean),
        "std": list(pre.std),
    }
    assert desc["limits"] == {"max_pixels": MAX_IMAGE_PIXELS, "max_aspect_ratio": MAX_ASPECT_RATIO}
    model = desc["models"]["fp32"]
    assert model["file"] == "nin_tiny.onnx" and model["form"] == "onnx"
    assert model["sha256"] == hashlib.sha256((folder / "nin_tiny.onnx").read_bytes()).hexdigest()
    assert desc["onnxruntime_web"] == pinned_ort_web() == "1.30.0"
    assert desc["backends"] == {"wasm": ["fp32"]} and summary.webgpu_bytes == 0  # WebGPU only when asked
    for name in ("index.html", "nin-edge.mjs"):
        assert (folder / name).read_bytes() == (WEB_SOURCES / name).read_bytes()
    # onnxruntime-web is the pinned npm package's, never a CDN's.
    dist = WEB_SOURCES / "node_modules" / "onnxruntime-web" / "dist"
    assert (folder / "ort-wasm-simd-threaded.wasm").read_bytes() == (dist / "ort-wasm-simd-threaded.wasm").read_bytes()
    for name in ("index.html", "nin-edge.mjs"):
        assert "https://" not in (folder / name).read_text()


def test_web_target_refusals(tiny_nin_path, tmp_path):
    folder = tmp_path / "site"
    with pytest.raises(ConfigError, match=r"onnxruntime-web's files are not in '.*nowhere' \(missing ort.wasm.min.mjs"):
        write_web(WebConfig(source=str(tiny_nin_path), folder=str(folder), ort_web=str(tmp_path / "nowhere")))
    with pytest.raises(ConfigError, match="source '.*missing.onnx' does not exist"):
        write_web(WebConfig(source=str(tmp_path / "missing.onnx"), folder=str(folder)))
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(ConfigError, match="web folder '.*mine' exists, is not empty and holds no nin-edge.json"):
        write_web(WebConfig(source=str(tiny_nin_path), folder=str(tmp_path / "mine")))
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"
    assert not folder.exists() and [p.name for p in tmp_path.iterdir()] == ["mine"]  # no temporaries left
    with pytest.raises(ConfigError, match="precision 'fp16' is not shipped to browsers; give fp32 or int8"):
        check_web_options(folder, ("fp32", "fp16"), None)
    with pytest.raises(ConfigError, match="web precision"):
        check_web_options(folder, ("int4",), None)


def test_webgpu_adds_its_onnxruntime_web_build_only_when_asked(tiny_nin_path, tmp_path):
    folder = tmp_path / "site"
    summary = write_web(WebConfig(source=str(tiny_nin_path), folder=str(folder), webgpu=True))
    names = {p.name for p in folder.iterdir()}
    assert names == {"index.html", "nin-edge.mjs", DESCRIPTOR, "nin_tiny.onnx", *ORT_WEB_FILES, *ORT_WEBGPU_FILES}
    dist = WEB_SOURCES / "node_modules" / "onnxruntime-web" / "dist"
    for name in ORT_WEBGPU_FILES:
        assert (folder / name).read_bytes() == (dist / name).read_bytes()
    # WebGPU runs FP32 alone (onnxruntime-web 1.30's WebGPU provider fails on INT8's QLinearConv).
    assert json.loads((folder / DESCRIPTOR).read_text())["backends"] == {"wasm": ["fp32"], "webgpu": ["fp32"]}
    assert summary.webgpu_bytes == sum((folder / name).stat().st_size for name in ORT_WEBGPU_FILES) > 20e6
    assert f"WebAssembly, WebGPU for fp32 (its build: {summary.webgpu_bytes / 1e6:.1f} MB" in summary.to_table()
    # A dist folder without the WebGPU build serves the WebAssembly folder, and names what WebGPU lacks.
    wasm_only = tmp_path / "dist"
    wasm_only.mkdir()
    for name in ORT_WEB_FILES:
        (wasm_only / name).write_bytes(b"")
    (tmp_path / "package.json").write_text(json.dumps({"version": pinned_ort_web()}))
    check_web_options(tmp_path / "other", ("fp32",), str(wasm_only))
    with pytest.raises(
        ConfigError, match=r"not in '.*dist' \(missing ort.webgpu.min.mjs, ort-wasm-simd-threaded.asyncify"
    ):
        check_web_options(tmp_path / "other", ("fp32",), str(wasm_only), webgpu=True)


def test_a_web_folder_is_replaced_whole_and_only_when_it_holds_what_nin_edge_wrote(tiny_nin_path, tmp_path):
    folder = tmp_path / "site"
    write_web(WebConfig(source=str(tiny_nin_path), folder=str(folder)))
    listed = json.loads((folder / DESCRIPTOR).read_text())["files"]
    assert set(listed) == {p.name for p in folder.iterdir()} - {DESCRIPTOR}
    write_web(WebConfig(source=str(tiny_nin_path), folder=str(folder)))  # replaced: nothing else was there
    assert sorted(p.name for p in tmp_path.iterdir()) == ["site"]
    (folder / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="holds 'notes.txt', which its nin-edge.json does not list: not replacing it"):
        write_web(WebConfig(source=str(tiny_nin_path), folder=str(folder)))
    (folder / "notes.txt").unlink()
    (folder / "index.html").write_text("<p>edited</p>")
    with pytest.raises(ConfigError, match="'index.html' was changed since it was written"):
        write_web(WebConfig(source=str(tiny_nin_path), folder=str(folder)))
    assert (folder / "index.html").read_text() == "<p>edited</p>"


# -- the server ---------------------------------------------------------------------------------


@pytest.fixture()
def served(tiny_web):
    with serving(tiny_web[0]) as url:
        yield url.rstrip("/")


def test_the_server_isolates_the_page_and_serves_wasm_as_wasm(served):
    for path, kind in (
        ("/", "text/html"),
        ("/ort-wasm-simd-threaded.wasm", "application/wasm"),
        ("/nin-edge.mjs", "text/javascript"),
        ("/nin-edge.json", "application/json"),
    ):
        with urllib.request.urlopen(served + path) as response:
            assert response.headers["Content-Type"].split(";")[0] == kind, path
            assert response.headers["Cross-Origin-Opener-Policy"] == "same-origin"
            assert response.headers["Cross-Origin-Embedder-Policy"] == "require-corp"
    with pytest.raises(urllib.error.HTTPError, match="404"):
        urllib.request.urlopen(served + "/../../etc/passwd")


def test_nin_serve_web_refusals(tmp_path, tiny_nin_path):
    assert_one_line_error(run_cli(serve_cli, ["--web", tmp_path / "none"]), "--web", "is not a folder")
    assert_one_line_error(run_cli(serve_cli, ["--web", tmp_path]), "has no index.html")
    assert_one_line_error(run_cli(serve_cli, [tiny_nin_path, "--web", tmp_path]), "not both")
    assert_one_line_error(run_cli(serve_cli, []), "give the MODEL to serve, or --web DIR")


# -- Node ---------------------------------------------------------------------------------------


def run_node_tests(env_extra: dict[str, str]) -> str:
    result = subprocess.run(
        [node(), "--test", "test/"],
        cwd=WEB_SOURCES,
        env={**os.environ, **env_extra},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    return result.stdout


def test_node_unit_tests_pass():
    out = run_node_tests({"NIN_EDGE_PARITY": ""})
    assert "# fail 0" in out and "# pass 8" in out, out[-1500:]


# -- the real model: Node and Chromium against the Python runtime --------------------------------


@pytest.fixture(scope="module")
def real_web(tmp_path_factory):
    """The shipped, Fashion-MNIST-trained NiN as a bundle (FP32 and INT8, ORT format) and its web
    folder, both from one ``nin-export --bundle B --web W``."""
    root = tmp_path_factory.mktemp("real")
    calibration = root / "calibration.npy"
    np.save(calibration, fashion(200)[IMAGES:])  # images the parity checks do not use
    bundle, web = root / "bundle", root / "web"
    args = ["--check-batch-sizes", "1", "--calibration-data", calibration, "--calibration-size", 200 - IMAGES]
    # The INT8 recipe that runs correctly on every CPU (7-bit weights), as the web target alone picks.
    args += ["--eval-data", DATA, "--eval-size", 200, "--min-agreement", 0.9, "--int8-target", "x86-avx2"]
    result = run_cli(export_cli, [*args, "--bundle", bundle, "--bundle-precisions", "int8,fp16", "--web", web])
    assert result.exit_code == 0, result.stderr
    assert "models           fp32: model.ort, int8: model.int8.ort" in result.stdout
    assert "not shipped      fp16: the web target ships fp32 and int8 only" in result.stdout  # said, not dropped
    # The model card's JavaScript is the example the Node tests run.
    card = (bundle / "MODEL_CARD.md").read_text()
    assert "```js\n" + (WEB_SOURCES / "example.mjs").read_text().strip() + "\n```" in card
    return bundle, web


@pytest.mark.slow
def test_nin_export_web_alone_writes_the_model_and_its_web_folder(tmp_path):
    out, web = tmp_path / "nin.onnx", tmp_path / "site"
    args = ["--random-init", "--input-size", 70, "--check-batch-sizes", 1, "--output", out, "--web", web]
    args += ["--web-precisions", "fp32,int8", "--calibration-data", "synthetic", "--calibration-size", 8]
    result = run_cli(export_cli, [*args, "--min-agreement", 0, "--web-webgpu", "--format", "json"])
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["deployed"][0]["models"] == {"fp32": "model.ort", "int8": "model.int8.ort"}
    assert report["deployed"][0]["backends"] == ["wasm", "webgpu"]
    desc = json.loads((web / DESCRIPTOR).read_text())
    assert desc["input"]["size"] == 70 and set(desc["models"]) == {"fp32", "int8"}
    assert desc["backends"] == {"wasm": ["fp32", "int8"], "webgpu": ["fp32"]}
    assert all((web / name).is_file() for name in ORT_WEBGPU_FILES)
    assert out.is_file() and sorted(p.name for p in tmp_path.iterdir()) == ["nin.onnx", "site"]  # no staging left


def test_nin_export_web_refusals(tmp_path):
    web = ["--web", tmp_path / "site"]
    assert_one_line_error(run_cli(export_cli, ["--web-precisions", "int8"]), "give --web DIR too")
    assert_one_line_error(
        run_cli(export_cli, ["--web-webgpu"]), "--web-webgpu shape the web folder: give --web DIR too"
    )
    assert_one_line_error(
        run_cli(export_cli, [*web, "--web-precisions", "fp16"]), "precision 'fp16' is not shipped to browsers"
    )
    assert_one_line_error(run_cli(export_cli, [*web, "--web-precisions", "int8"]), "INT8 needs calibration images")
    assert_one_line_error(
        run_cli(export_cli, [*web, "--ort-web", tmp_path]), "onnxruntime-web's files are not in", "npm ci"
    )
    bundle = ["--bundle", tmp_path / "b", *web]
    assert_one_line_error(
        run_cli(export_cli, [*bundle, "--web-precisions", "int8"]), "with --bundle, the web folder ships the bundle's"
    )
    assert not (tmp_path / "site").exists() and not (tmp_path / "b").exists()


def colour_cases() -> list[np.ndarray]:
    """Images that exercise more than Fashion-MNIST's upscaling: colour, alpha, shrinking, odd sides."""
    rng = np.random.default_rng(7)
    return [
        rng.integers(0, 256, (170, 300, 3), dtype=np.uint8),
        rng.integers(0, 256, (90, 50, 4), dtype=np.uint8),
        rng.integers(0, 256, (113, 111), dtype=np.uint8),
        np.kron(fashion(1)[0], np.ones((9, 9), np.uint8)),  # 252x252: a shrink of a real garment
    ]


@pytest.mark.slow
def test_node_answers_as_the_python_runtime(real_web, tmp_path):
    bundle, web = real_web
    images = list(fashion()) + colour_cases()
    cases = {}
    for precision in ("fp32", "int8"):
        probs = Classifier(bundle, "cpu", precision=precision).probabilities(images)
        cases[precision] = [
            {
                "name": f"image {i}",
                "width": int(im.shape[1]),
                "height": int(im.shape[0]),
                "pixels": base64.b64encode(im.tobytes()).decode(),
                "top1": int(p.argmax()),
                "probs": p.tolist(),
            }
            for i, (im, p) in enumerate(zip(images, probs, strict=True))
        ]
    damaged = tmp_path / "damaged"
    shutil.copytree(web, damaged)
    model = damaged / "model.ort"
    model.write_bytes(model.read_bytes()[:-100])
    labels = json.loads((web / DESCRIPTOR).read_text())["labels"]
    ref = {"folder": str(web), "damaged": str(damaged), "labels": labels, "atol": ATOL, "cases": cases}
    (tmp_path / "parity.json").write_text(json.dumps(ref))
    out = run_node_tests({"NIN_EDGE_PARITY": str(tmp_path / "parity.json")})
    assert "# skipped 0" in out and "# fail 0" in out, out[-1500:]
    for precision in ("fp32", "int8"):
        assert f"parity {precision}: {len(images)} images, same top-1" in out


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium (Debian's package) under Playwright; missing, the test fails with how to install it.
    It has no WebGPU adapter (headless Chromium's default here; --disable-gpu keeps it so on a machine
    with a GPU), and Chromium's fake camera (a moving test pattern) lets the page's camera path run headless."""
    try:
        with chromium(
            args=("--disable-gpu", "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream")
        ) as b:
            yield b
    except ConfigError as exc:
        pytest.fail(f"the browser tests need it (bash .ci/run installs it): {exc}")


@pytest.fixture(scope="module")
def gpu_browser(browser):
    """Chromium with a WebGPU adapter: SwiftShader's."""
    with another_chromium(browser, SWIFTSHADER) as b:
        yield b


class _PlainHandler(http.server.SimpleHTTPRequestHandler):
    """A plain file server's answers: the right types, no cross-origin isolation headers."""

    extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map, **TYPES}

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


def plain_server(folder: Path) -> http.server.ThreadingHTTPServer:
    return http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_PlainHandler, directory=str(folder)))


#: Give the page a file as a drop on its drop zone or as a paste, the way a browser would.
DROP_OR_PASTE = """async ([kind, bytes]) => {
    const dt = new DataTransfer();
    dt.items.add(new File([new Uint8Array(bytes)], 'given.png', { type: 'image/png' }));
    const event = kind === 'drop'
        ? new DragEvent('drop', { dataTransfer: dt, bubbles: true, cancelable: true })
        : new ClipboardEvent('paste', { clipboardData: dt, bubbles: true });
    (kind === 'drop' ? document.getElementById('drop') : document).dispatchEvent(event);
}"""


def same_answers(page: Any, paths: list[Path], expected: np.ndarray, backend: str) -> float:
    """Feed ``paths`` through the page's file input: each answer on ``backend`` with the Python
    runtime's top-1 (``expected``: its probabilities); the largest probability difference."""
    worst = 0.0
    for path, want in zip(paths, expected, strict=True):
        got = feed(page, path)
        assert "error" not in got, got
        assert got["backend"] == backend, (path.name, got["backend"])
        assert got["top1"] == int(want.argmax()), (path.name, got["top1"], int(want.argmax()))
        worst = max(worst, float(np.abs(np.asarray(got["probs"]) - want).max()))
    return worst


def page_inputs(folder: Path) -> list[Path]:
    """What the browsers classify: photos first, then the Fashion-MNIST test images (a garment last)."""
    from PIL import Image

    paths = write_pngs(fashion(), folder / "png")
    # A colour JPEG the model has to shrink (1600x1200), and a colour PNG with odd sides.
    photo = np.kron(fashion(2)[1], np.ones((50, 60), np.uint8))[:1200, :1600, None] * np.array([1.0, 0.8, 0.6])
    Image.fromarray(photo.astype(np.uint8)).save(folder / "photo.jpg", quality=90)
    Image.fromarray(colour_cases()[0]).save(folder / "colour.png")
    # A phone photo stored sideways with EXIF orientation 6: both sides turn it upright first.
    sideways = Image.fromarray(np.kron(fashion(3)[2], np.ones((3, 4), np.uint8)))
    exif = sideways.getexif()
    exif[0x0112] = 6
    sideways.save(folder / "sideways.jpg", exif=exif, quality=95)
    return [folder / "photo.jpg", folder / "colour.png", folder / "sideways.jpg", *paths]


@pytest.mark.slow
@pytest.mark.e2e
def test_the_page_answers_as_the_python_runtime_in_chromium(real_web, browser, tmp_path):
    bundle, web = real_web
    paths = page_inputs(tmp_path)
    expected = Classifier(bundle, "cpu", precision="fp32").probabilities(paths)  # Python reads the same files
    with serving(web) as url:
        page = open_page(browser, url + "?threads=2")  # served isolated, the page gets the threads it asks for
        assert page.locator("#status").get_attribute("data-state") == "ready", page.locator("#status").inner_text()
        threads = page.locator("#threads")
        assert threads.get_attribute("data-threads") == "2"
        assert "asked for in the address (threads=2); the page is cross-origin isolated" in threads.inner_text()
        worst = same_answers(page, paths, expected, "wasm")
        assert worst <= ATOL["fp32"], worst
        print(f"chromium fp32: {len(paths)} images, same top-1, largest probability difference {worst:.2e}")
        assert page.locator("#top li").count() == 5
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.set_viewport_size({"width": 420, "height": 760})  # a phone's width
        page.screenshot(path=str(ARTIFACTS / "web-page.png"), full_page=True)
        # INT8 through the page's own model picker (it reloads the page with ?precision=int8).
        with page.expect_navigation():
            page.select_option("#precision", "int8")
        wait_loaded(page)
        assert page.locator("#status").inner_text().startswith("Ready: int8 model loaded"), page.locator("#status")
        expected = Classifier(bundle, "cpu", precision="int8").probabilities(paths)
        worst = same_answers(page, paths, expected, "wasm")
        assert worst <= ATOL["int8"], worst
        print(f"chromium int8: {len(paths)} images, same top-1, largest probability difference {worst:.2e}")
        assert "int8, 2 WebAssembly threads" in page.locator("#latency").inner_text()
        page.close()


def firefox(url: str, paths: list[Path]) -> dict[str, Any]:
    """The page at ``url`` in headless Firefox ESR (tests/edge/firefox.mjs: puppeteer-core over WebDriver
    BiDi), given ``paths`` through its file input: the page's state, its texts and its answers."""
    executable = os.environ.get("NIN_EDGE_FIREFOX", "/usr/bin/firefox-esr")
    if not Path(executable).is_file() or not (WEB_SOURCES / "node_modules" / "puppeteer-core").is_dir():
        pytest.fail(
            f"the Firefox test needs Firefox ESR at {executable} (apt-get install firefox-esr) and puppeteer-core "
            "(PUPPETEER_SKIP_DOWNLOAD=1 ONNXRUNTIME_NODE_INSTALL=skip npm ci in web/); bash .ci/run does both"
        )
    driver = Path(__file__).parent / "edge" / "firefox.mjs"
    done = subprocess.run([node(), driver, url, *map(str, paths)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


@pytest.mark.slow
@pytest.mark.e2e
def test_the_page_answers_as_the_python_runtime_in_firefox(real_web, tmp_path):
    bundle, web = real_web
    paths = page_inputs(tmp_path)
    with serving(web) as url:
        for precision in ("fp32", "int8"):
            expected = Classifier(bundle, "cpu", precision=precision).probabilities(paths)
            page = firefox(f"{url}?precision={precision}&threads=2", paths)
            assert page["browser"].startswith("firefox/") and page["errors"] == [], page
            assert page["state"] == "ready" and page["status"].startswith(f"Ready: {precision} model loaded"), page
            assert "asked for in the address (threads=2); the page is cross-origin isolated" in page["threads"]
            answers = page["results"]
            assert [a.get("backend") for a in answers] == ["wasm"] * len(paths), answers
            assert [a["top1"] for a in answers] == expected.argmax(1).tolist()
            worst = float(np.abs(np.array([a["probs"] for a in answers]) - expected).max())
            assert worst <= ATOL[precision], worst
            print(
                f"{page['browser']} {precision}: {len(paths)} images, same top-1, "
                f"largest probability difference {worst:.2e}"
            )


@pytest.mark.slow
@pytest.mark.e2e
def test_the_page_says_what_is_wrong(real_web, browser, tmp_path):
    _, web = real_web
    notes = tmp_path / "notes.txt"
    notes.write_text("shirt, 6\n" * 10)
    png = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"
    huge = tmp_path / "huge.png"
    huge.write_bytes(png + (100_000).to_bytes(4, "big") + (70_000).to_bytes(4, "big") + b"\x08\x00" * 20)
    broken = tmp_path / "broken.png"
    broken.write_bytes(png + (28).to_bytes(4, "big") + (28).to_bytes(4, "big") + b"\x08\x00" + bytes(200))
    good = write_pngs(fashion(1), tmp_path / "png")[0]
    with serving(web) as url:
        page = open_page(browser, url)
        assert feed(page, notes) == {
            "error": "notes.txt: not an image this page reads: expected PNG, JPEG, GIF, WebP or BMP"
        }
        assert feed(page, huge) == {
            "error": "huge.png: image of 100000x70000 pixels exceeds the limit of 64,000,000; refused before decoding"
        }
        assert feed(page, broken)["error"].startswith("broken.png: the browser could not decode it")
        assert "top1" in feed(page, good)  # the page goes on after a refusal
        page.close()
    # A model file that was truncated, and one that onnxruntime cannot parse: a message on the page.
    damaged = tmp_path / "damaged"
    shutil.copytree(web, damaged)
    model = damaged / "model.ort"
    model.write_bytes(model.read_bytes()[:-100])
    with serving(damaged) as url:
        page = open_page(browser, url)
        assert page.locator("#status").inner_text() == (
            "The model could not be loaded: model.ort does not match the size and sha256 in nin-edge.json: "
            "it was altered or truncated; copy the folder again"
        )
        assert page.locator("#file").is_disabled()
        page.evaluate(DROP_OR_PASTE, ["paste", list(good.read_bytes())])  # still says why, for any image given
        assert (
            page.locator("#status")
            .inner_text()
            .startswith("given.png was not classified: The model could not be loaded: model.ort does not match")
        )
        page.close()
    desc = json.loads((damaged / DESCRIPTOR).read_text())
    desc["models"]["fp32"].update(bytes=model.stat().st_size, sha256=hashlib.sha256(model.read_bytes()).hexdigest())
    (damaged / DESCRIPTOR).write_text(json.dumps(desc))
    with serving(damaged) as url:
        page = open_page(browser, url)
        assert (
            page.locator("#status")
            .inner_text()
            .startswith("The model could not be loaded: onnxruntime could not load model.ort: ")
        )
        page.close()
    # Served without cross-origin isolation, the page says it runs on one thread, and why.
    with serving(web, plain_server(web)) as url:
        page = open_page(browser, url)
        assert page.locator("#threads").get_attribute("data-threads") == "1"
        assert "1 WebAssembly thread: this page is not cross-origin isolated" in page.locator("#threads").inner_text()
        assert "top1" in feed(page, good)
        page.close()


@pytest.mark.slow
@pytest.mark.e2e
def test_the_page_takes_drops_pastes_and_the_camera(real_web, tiny_web, browser):
    _, web = real_web
    png = write_pngs(fashion(1), web.parent / "one")[0]
    with serving(web) as url:
        page = open_page(browser, url)
        for n, kind in enumerate(("drop", "paste"), start=1):
            page.evaluate(DROP_OR_PASTE, [kind, list(png.read_bytes())])
            page.wait_for_function("n => document.getElementById('result').dataset.seq === n", arg=str(n))
            assert page.locator("#result").get_attribute("data-file") == "given.png"
        default = -(-(os.cpu_count() or 1) // 2)  # onnxruntime-web's default: half the CPUs, at most 4
        assert page.locator("#threads").get_attribute("data-threads") == str(min(4, default))
        assert "half of this device's" in page.locator("#threads").inner_text()
        page.click("#camera")
        page.click("#snap")
        page.wait_for_function("document.getElementById('result').dataset.seq === '3'")
        assert page.locator("#result").get_attribute("data-file") == "camera frame"
        assert page.locator("#top li").count() == 5
        page.close()
    # A single model file (no bundle) makes a page too; facts it lacks (accuracy, MACs) are left out.
    with serving(tiny_web[0]) as url:
        page = open_page(browser, url)
        assert page.locator("#status").get_attribute("data-state") == "ready"
        card = page.locator("#card").inner_text()
        assert "nin_tiny (fp32, ONNX format" in card and "accuracy" not in card
        page.close()


@pytest.fixture(scope="module")
def webgpu_web(real_web):
    """The real bundle's web folder with onnxruntime-web's WebGPU build (``--web-webgpu``)."""
    bundle, web = real_web
    folder = web.parent / "webgpu"
    write_web(WebConfig(source=str(bundle), folder=str(folder), webgpu=True))
    return folder


@pytest.mark.slow
@pytest.mark.e2e
def test_the_page_runs_webgpu_as_the_python_runtime_where_there_is_an_adapter(
    real_web, webgpu_web, gpu_browser, tmp_path
):
    bundle, _ = real_web
    paths = write_pngs(fashion(WEBGPU_IMAGES), tmp_path / "png")
    expected = Classifier(bundle, "cpu", precision="fp32").probabilities(paths)
    with serving(webgpu_web) as url:
        page = open_page(gpu_browser, url)
        assert page.locator("#backend").get_attribute("data-backend") == "wasm"  # WebAssembly unless asked
        # The folder has WebGPU's build, so the page offers the choice; choosing reloads with ?backend=webgpu.
        with page.expect_navigation():
            page.select_option("#backend-select", "webgpu")
        wait_loaded(page)
        status = page.locator("#status").inner_text()
        assert status.startswith("Ready: fp32 model loaded") and status.endswith(
            "ms on WebGPU. Pick, drop or paste an image."
        )
        backend = page.locator("#backend")
        assert backend.get_attribute("data-backend") == "webgpu" and backend.get_attribute("data-fallback") is None
        assert (backend.get_attribute("data-vendor"), backend.get_attribute("data-architecture")) == (
            "google",
            "swiftshader",
        )
        assert backend.inner_text().startswith("Backend: WebGPU on the adapter google swiftshader")
        assert "onnxruntime-web 1.30.0 (WebGPU, google swiftshader)" in page.locator("#card").inner_text()
        worst = same_answers(page, paths, expected, "webgpu")
        assert worst <= ATOL["fp32"], worst
        print(
            f"chromium webgpu (SwiftShader): {len(paths)} images, same top-1, "
            f"largest probability difference {worst:.2e}"
        )
        assert "fp32, WebGPU)" in page.locator("#latency").inner_text()
        page.close()


@pytest.mark.slow
@pytest.mark.e2e
def test_the_page_says_why_it_runs_webassembly_when_webgpu_is_asked_for(real_web, webgpu_web, browser, tmp_path):
    bundle, web = real_web
    good = write_pngs(fashion(1), tmp_path / "png")[0]
    want = int(Classifier(bundle, "cpu", precision="fp32").probabilities([good])[0].argmax())
    instead = "; running on WebAssembly (the CPU) instead."

    def asked_for_webgpu(url: str, why: str) -> Any:
        page = open_page(browser, url)
        backend = page.locator("#backend")
        assert backend.inner_text() == f"WebGPU was asked for, but {why}{instead}"
        assert backend.get_attribute("data-backend") == "wasm" and backend.get_attribute("data-fallback") == ""
        assert "ms on WebAssembly (WebGPU was asked for: see below why not)." in page.locator("#status").inner_text()
        return page

    with serving(webgpu_web) as url:
        # No adapter (this browser has none): the page says so, and answers on WebAssembly, saying so too.
        page = asked_for_webgpu(
            url + "?backend=webgpu",
            "this browser gives no WebGPU adapter (navigator.gpu.requestAdapter() returned none: no GPU it "
            "supports, or WebGPU blocked for this device)",
        )
        got = feed(page, good)
        assert (got["backend"], got["top1"]) == ("wasm", want)
        assert "onnxruntime-web 1.30.0 (WebAssembly, SIMD)" in page.locator("#card").inner_text()
        page.close()
        # INT8 stays on WebAssembly, whatever the browser has.
        asked_for_webgpu(
            url + "?backend=webgpu&precision=int8",
            "it runs only the fp32 model here (onnxruntime-web's WebGPU provider cannot run this int8 model)",
        ).close()
    with serving(web) as url:
        # A folder without WebGPU's build offers no choice; asked for in the address, the page says why not.
        page = asked_for_webgpu(
            url + "?backend=webgpu",
            "this folder has no WebGPU build of onnxruntime-web (export it with --web-webgpu)",
        )
        assert not page.locator("#backend-choice").is_visible()
        page.close()


@pytest.mark.slow
@pytest.mark.e2e
def test_nin_serve_web_serves_until_stopped(tiny_web):
    import signal
    import sys
    import time

    nin_serve = Path(sys.executable).parent / "nin-serve"
    proc = subprocess.Popen([nin_serve, "--web", tiny_web[0], "--http-port", "0"], stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stderr.readline()
        assert line.startswith(f"serving {tiny_web[0]} at http://127.0.0.1:"), line
        url = line.split(" at ")[1].split()[0]
        with urllib.request.urlopen(url) as response:
            assert response.headers["Cross-Origin-Embedder-Policy"] == "require-corp"
            assert b"nin-edge.mjs" in response.read()
        time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGTERM)
        rest = proc.communicate(timeout=20)[1]
    assert proc.returncode == 0 and rest.strip() == "stopped"
    # Ctrl-C, as a terminal user has it (even when pytest runs as a background job with SIGINT ignored): 130.
    proc = subprocess.Popen(
        [nin_serve, "--web", tiny_web[0], "--http-port", "0"],
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        assert proc.stderr.readline().startswith(f"serving {tiny_web[0]} at http://127.0.0.1:")
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=20)
    assert proc.returncode == 130


@pytest.mark.slow
@pytest.mark.e2e
def test_the_web_benchmark_measures_every_configuration(real_web, browser):
    from nin_edge.benchmarks.web import WebBenchConfig, run_web_bench

    bundle, _ = real_web
    report = run_web_bench(
        WebBenchConfig(bundle=str(bundle), data=str(DATA), images=3, warmup=1, rounds=1, threads=(1, 2), loads=1),
        browser,
    )
    configs = {(r["where"], r["precision"], r["threads"]) for r in report.latency}
    assert configs == {
        (where, p, t)
        for where in ("browser (WebAssembly)", "Python onnxruntime CPU")
        for p in ("fp32", "int8")
        for t in (1, 2)
    }
    assert all(r["runs"] == 3 and r["model_p50_ms"] > 0 and r["p50_ms"] > 0 for r in report.latency)
    # In the page both times come from the same calls, so the model's share cannot exceed the total.
    assert all(r["model_p50_ms"] <= r["p50_ms"] for r in report.latency if r["where"].startswith("browser"))
    assert 0 < report.model_ready_ms < report.first_answer_ms
    assert report.folder_bytes == sum(report.files.values()) > report.fp32_and_runtime_bytes
    assert "page load to first answer" in report.render("table")
