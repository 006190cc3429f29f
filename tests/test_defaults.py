"""Defaults that fit the model: a 2-class model through nin-infer, Classifier, Node, the page and the
card's examples, each with the top-k it was not told (min(5, classes); the card's min(3, classes))."""

from __future__ import annotations

import ast
import base64
import json
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
from nin_edge.benchmarks.web import chromium, feed, serving, wait_loaded, write_pngs
from nin_edge.export.cli import inspect_main
from nin_edge.export.cli import main as export_cli
from nin_edge.export.web_sources import WEB_SOURCES
from nin_edge.models import count_params, create_model
from nin_edge.runtime import Classifier
from nin_edge.runtime.cli.infer import main as infer_cli
from nin_edge.runtime.core.errors import ConfigError

from tests.conftest import assert_one_line_error, run_cli

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def two_class(tmp_path_factory):
    """An untrained 2-class NiN as a bundle with its web folder, and three PNGs to classify."""
    root = tmp_path_factory.mktemp("two")
    bundle, web = root / "bundle", root / "web"
    args = ["--random-init", "--num-classes", "2", "--input-size", "70", "--check-batch-sizes", "1"]
    args += ["--bundle-precisions", "int8", "--calibration-data", "synthetic", "--calibration-size", "16"]
    result = run_cli(export_cli, [*args, "--min-agreement", "0", "--bundle", bundle, "--web", web])
    assert result.exit_code == 0, result.stderr
    rng = np.random.default_rng(0)
    pngs = write_pngs(rng.integers(0, 256, (3, 28, 28), dtype=np.uint8), root / "png")
    EXPORT_OUTPUT.append(result.stdout)
    return bundle, web, pngs


#: The fixture's nin-export output (its summary), kept for the tests of what it says.
EXPORT_OUTPUT: list[str] = []


def test_latency_rows_leave_remote_providers_out(two_class):
    bundle = two_class[0]
    manifest = json.loads((bundle / "manifest.json").read_text())
    measured = {prov for entry in manifest["models"].values() for prov in entry["latency_ms"]}
    assert measured == {"CPUExecutionProvider"}  # onnxruntime's wheel also lists AzureExecutionProvider
    assert "Azure" not in EXPORT_OUTPUT[0] and "Azure" not in (bundle / "MODEL_CARD.md").read_text()


def test_one_parameter_count_for_one_model(two_class):
    bundle, web, _ = two_class
    card = (bundle / "MODEL_CARD.md").read_text()
    counts = set(re.findall(r"([\d,]{7,}) parameters", card))
    assert len(counts) == 1, counts  # the summary line has no count of its own
    params = int(counts.pop().replace(",", ""))
    assert json.loads((web / "nin-edge.json").read_text())["card"]["params"] == params
    assert params == count_params(create_model("nin", num_classes=2, input_size=70))  # the float model's own
    fp32 = run_cli(inspect_main, [bundle / "model.onnx"]).stdout
    int8 = run_cli(inspect_main, [bundle / "model.int8.onnx"]).stdout
    assert re.search(rf"^parameters +{params:,}$", fp32, re.M), fp32[:600]
    assert re.search(
        rf"^parameters +{params:,} \(and [\d,]+ INT8 scales and zero points, which the float model", int8, re.M
    )


def test_the_export_summary_says_mobile_usability_in_one_line(two_class):
    bundle = two_class[0]
    out = EXPORT_OUTPUT[0]
    assert "partitions with a total of" not in out
    lines = [line for line in out.splitlines() if line.startswith("mobile usability")]
    assert lines == [
        "mobile usability          model.mobile.onnx: NNAPI yes, CoreML NeuralNetwork yes, CoreML MLProgram yes "
        "(details: mobile_usability.txt)"
    ]
    assert "partitions with a total of" in (bundle / "mobile_usability.txt").read_text()  # the checker's own lines


def test_nin_infer_defaults_fit_a_two_class_model(two_class, tmp_path):
    bundle, _, pngs = two_class
    report = run_cli(infer_cli, [bundle, *pngs, "--format", "json"])
    assert report.exit_code == 0, report.stderr
    assert [len(r["top"]) for r in json.loads(report.stdout)["results"]] == [2, 2, 2]
    rows = run_cli(infer_cli, [bundle, *pngs, "-o", tmp_path / "rows.csv"])
    assert rows.exit_code == 0, rows.stderr
    # Rows keep the best class unless asked: one column set, whatever the model's classes.
    assert (tmp_path / "rows.csv").read_text().splitlines()[0] == "input,label,index,probability,error,model_sha256"
    too_many = run_cli(infer_cli, [bundle, *pngs, "--top-k", "3"])
    assert_one_line_error(too_many, "--top-k must be a whole number from 1 to 2 (this model has 2 classes), got 3")


def test_classifier_defaults_fit_a_two_class_model(two_class):
    bundle, _, pngs = two_class
    clf = Classifier(bundle, "cpu")
    assert [len(top) for top in clf.classify(pngs)] == [2, 2, 2]
    assert [len(top) for top in clf.classify(pngs, top_k=1)] == [1, 1, 1]
    with pytest.raises(ConfigError, match=r"top_k must be a whole number from 1 to 2 \(this model has 2 classes\)"):
        clf.classify(pngs, top_k=3)


def _card_block(bundle: Path, language: str) -> str:
    blocks = re.findall(rf"```{language}\n(.*?)```", (bundle / "MODEL_CARD.md").read_text(), re.S)
    assert len(blocks) == 1, blocks
    return blocks[0]


def test_the_cards_python_example_runs_as_written(two_class):
    bundle, _, pngs = two_class
    code = _card_block(bundle, "python").replace("BUNDLE_DIR", str(bundle)).replace("shoe.png", str(pngs[0]))
    tree = ast.parse(code)
    last = ast.Expression(tree.body.pop().value)  # the example ends with the call whose answer it shows
    scope: dict = {}
    exec(compile(tree, "card", "exec"), scope)
    answer = eval(compile(last, "card", "eval"), scope)
    assert [len(top) for top in answer] == [2]


def test_node_and_the_cards_js_example_default_to_the_models_classes(two_class, tmp_path):
    """The card's JavaScript, as written, and nin-edge.mjs's classify(image) without a topK, in Node."""
    _, web, _ = two_class
    (tmp_path / "node_modules").symlink_to(WEB_SOURCES / "node_modules")
    (tmp_path / "nin-edge.mjs").write_bytes((web / "nin-edge.mjs").read_bytes())
    (tmp_path / "example.mjs").write_text(_card_block(web.parent / "bundle", "js"))
    (tmp_path / "run.mjs").write_text(
        """import * as ort from 'onnxruntime-node';
import { pathToFileURL } from 'node:url';
import { openFolder } from './nin-edge.mjs';
import { topClasses } from './example.mjs';
const [folder, b64] = process.argv.slice(2);
const image = { data: new Uint8Array(Buffer.from(b64, 'base64')), width: 28, height: 28 };
const classifier = await openFolder(ort, pathToFileURL(folder));
const { top } = await classifier.classify(image);
const example = await topClasses(folder, image);
console.log(JSON.stringify({ defaults: top.length, example: example.length }));
"""
    )
    pixels = base64.b64encode(np.full((28, 28), 128, np.uint8).tobytes()).decode()
    done = subprocess.run(
        ["node", "run.mjs", str(web), pixels], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1]) == {"defaults": 2, "example": 2}


@pytest.mark.e2e
def test_the_page_fits_a_two_class_model_and_shows_no_stale_answer(two_class, tmp_path):
    _, web, pngs = two_class
    notes = tmp_path / "notes.txt"
    notes.write_text("not an image\n")
    with chromium(args=("--disable-gpu",)) as browser, serving(web) as url:
        page = browser.new_page()
        failed: list[str] = []
        page.on("response", lambda r: failed.append(r.url) if r.status >= 400 else None)
        page.goto(url)
        wait_loaded(page)
        assert page.locator("#status").get_attribute("data-state") == "ready"
        # No request for a favicon that is not there: the page names its own.
        assert page.evaluate("document.querySelector('link[rel=icon]').href") == "data:,"
        # Before the first image: no empty preview square, no answer.
        assert page.locator("#answer").is_hidden()
        assert "top1" in feed(page, pngs[0])
        assert page.locator("#answer").is_visible()
        assert page.locator("#top li").count() == 2
        assert page.locator("#top").get_attribute("aria-label") == "top 2 classes"
        # An error replaces the last answer instead of sitting above it.
        assert "error" in feed(page, notes)
        assert page.locator("#answer").is_hidden() and page.locator("#top li").count() == 0
        assert "top1" in feed(page, pngs[1]) and page.locator("#top li").count() == 2
        page.wait_for_load_state("networkidle")
        assert failed == []
        page.close()
