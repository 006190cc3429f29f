"""The bundle's ``MODEL_CARD.md``: the manifest's facts for people, with how to load the model in each language."""

from __future__ import annotations

import re
from typing import Any

from nin_edge.runtime.providers import short_label

from .web_sources import web_card_section

USABILITY = "mobile_usability.txt"

_PARTITIONS = re.compile(r"(\d+) partitions with a total of (\d+)/(\d+) nodes can be handled by the (.+) EP")
_VERDICT = re.compile(r"Model should perform well with (.+?) (as is|if modified to have fixed input shapes): (\w+)")


def usability_table(lines: list[str]) -> list[str]:
    """The checker's verdict lines as Markdown rows: model, provider, verdict as is and with fixed shapes."""
    rows: dict[tuple[str, str], dict[str, str]] = {}
    nodes: dict[str, str] = {}
    for line in lines:
        model, _, text = line.partition(": ")
        if found := _PARTITIONS.search(text):
            count = int(found[1])
            nodes[model] = f"{found[2]}/{found[3]} nodes, {count} partition{'' if count == 1 else 's'}"
        elif found := _VERDICT.search(text):
            row = rows.setdefault((model, found[1]), {"as is": "-", "fixed": "-"})
            row["as is" if found[2] == "as is" else "fixed"] = f"{found[3].lower()} ({nodes.get(model, '?')})"
    return [f"| `{model}` | {ep} | {v['as is']} | {v['fixed']} |" for (model, ep), v in rows.items()]


def usability_summary(lines: list[str], model: str) -> str:
    """One line for ``model``: which mobile providers would take it whole as it is, from the checker's
    verdict lines (the rest stay in the bundle's :data:`USABILITY` file and the card's table)."""
    verdicts = [
        (found[1], found[3].lower())
        for line in lines
        if line.startswith(f"{model}: ")
        if (found := _VERDICT.search(line)) and found[2] == "as is"
    ]
    if not verdicts:
        return f"{model}: the checker gave no verdict; see {USABILITY}"
    return f"{model}: " + ", ".join(f"{ep} {verdict}" for ep, verdict in verdicts) + f" (details: {USABILITY})"


def _in_short(pre: dict[str, Any]) -> str:
    """ " (for this model: pixel / 255)" when that is all the preprocessing does, else nothing."""
    plain = abs(pre["scale"] - 1 / 255) < 1e-12 and not any(pre["mean"]) and all(v == 1 for v in pre["std"])
    return " (for this model: pixel / 255)" if plain else ""


def c_card_example(top_k: int) -> str:
    """The card's C example for a model whose card examples ask for ``top_k`` classes: nin-edge's C library
    (runtime/c, docs/c-api.md) opens the bundle folder itself, checking the manifest's sha256 as Classifier
    does, and preprocesses as the Python runtime does."""
    return f"""C (nin-edge's C library: `runtime/c/build.sh` in the nin-edge repository, see its docs/c-api.md;
it checks every file against `manifest.json` too, and resizes and normalises as the Python runtime does):

```c
#include "nin_edge.h"

nin_model *model;
nin_error err;
if (nin_open("BUNDLE_DIR", NULL, &model, &err) != NIN_OK) {{ fprintf(stderr, "%s\\n", err.message); return 1; }}
nin_image image = {{pixels, width, height, 1, 0}};  /* 8-bit grey (1), RGB (3) or RGBA (4), any size */
nin_prediction top[{top_k}];
if (nin_classify(model, &image, 1, {top_k}, top, &err) == NIN_OK) printf("%s %f\\n", top[0].label, top[0].probability);
nin_close(model);
```"""


def model_card_text(m: dict[str, Any]) -> str:
    """``MODEL_CARD.md``: the manifest's facts for people, with how to load the model in each language."""
    inp, out = m["contract"]["input"], m["contract"]["output"]
    pre = m["preprocessing"]
    c, s = inp["shape"][1], inp["shape"][2]
    rows = []
    for p, entry in m["models"].items():
        acc = "-" if entry["accuracy"] is None else f"{entry['accuracy']:.4f}"
        lat = "; ".join(
            f"{short_label(prov)} " + ", ".join(f"b{b} {ms:.2f} ms" for b, ms in by.items())
            for prov, by in entry["latency_ms"].items()
        )
        rows.append(f"| {p} | `{entry['onnx']}`, `{entry['ort']}` | {acc} | {lat} |")
    training = m["training"]
    if "stages" in training:
        train_lines = [f"Data: {training['data']}. Trained with `{training['command']}`:"] + [
            f"- {st['name']}: "
            + ", ".join(f"{k} {v}" for k, v in st["recipe"].items() if v is not None)
            + (
                f"; accuracy at the end on the {st.get('final_acc_on', 'held-out split')} {st['final_test_acc']:.4f}"
                if st["final_test_acc"] is not None
                else ""
            )
            for st in training["stages"]
        ]
    else:
        train_lines = [training["note"]]
    labels = ", ".join(f"{i} {name}" for i, name in enumerate(m["labels"]))
    return f"""# {m["model"]}: model card

{m["summary"]}. Exported by nin-edge {m["toolkit_version"]} on {m["created"]}
(onnxruntime {m["onnxruntime_version"]}). Weights: {m["source"]["weights"]}.
{m["source"]["params"]:,} parameters, {m["source"]["macs_per_image"]:,} MACs per image.

## Training

{chr(10).join(train_lines)}
{"".join(chr(10) + "**Warning**: " + w for w in m.get("warnings", []))}
## Models in this bundle

Accuracy: top-1 on {m["evaluation"] or "no evaluation data (export with --eval-data to measure it)"}.
Latency: p50 on the exporting machine ({m["machine"]}), `Classifier.logits`, batch b.

| precision | files | accuracy | latency |
|---|---|---|---|
{chr(10).join(rows)}

`{m["mobile"]["onnx"]}` / `{m["mobile"]["ort"]}`: the FP32 model with the batch fixed at 1, for NNAPI and
CoreML, which take only fixed shapes. `{m["required_operators"]}` lists the operators of the ORT-format
models, for an onnxruntime reduced-operator build. Every `.ort` file was loaded back and matched its
ONNX model (largest logit difference {max(m["ort_format_max_abs_err"].values()):.2g}).

## Input and output

- Input `{inp["name"]}`: {inp["dtype"]}, shape ({", ".join(map(str, inp["shape"]))}), layout {inp["layout"]}.
- Output `{out["name"]}`: {out["dtype"]}, shape ({", ".join(map(str, out["shape"]))}); softmax gives the
  probabilities; index i is label i.
- Labels: {labels}.
- Preprocessing: convert to {pre["color"]}, resize {pre["resize"]}, then {pre["formula"]} with scale
  {pre["scale"]:.10g}, mean {pre["mean"]}, std {pre["std"]}{_in_short(pre)}, as float32.
- opset {m["opset"]}.

## Mobile usability (onnxruntime's checker)

Would the NNAPI (Android) and CoreML (iOS) execution providers take the whole model? Nodes each can
run, as the model is and with its input shapes fixed (the checker's own lines: `{USABILITY}`):

| model | execution provider | as is | with fixed input shapes |
|---|---|---|---|
{chr(10).join(usability_table(m["mobile_usability"]))}

## Loading it

Python (nin-edge checks every file of the bundle against `manifest.json` first):

```python
from nin_edge.runtime import Classifier

clf = Classifier("BUNDLE_DIR", precision="fp32")  # or "int8" / "fp16" where the bundle has them
clf.classify(["shoe.png"], top_k={min(3, len(m["labels"]))})
```

{c_card_example(min(3, len(m["labels"])))}

C++ (onnxruntime's C++ API): create `Ort::Env`, `Ort::SessionOptions` and
`Ort::Session session(env, "model.onnx", options)`; preprocess the image as above into a
`std::vector<float>` of {c}x{s}x{s} values per image; wrap it with
`Ort::Value::CreateTensor<float>(memory_info, data, size, shape, 4)` where shape is
{{N, {c}, {s}, {s}}}; call `session.Run(Ort::RunOptions{{nullptr}}, {{"{inp["name"]}"}}, &tensor, 1,
{{"{out["name"]}"}}, 1)` and read N x {len(m["labels"])} floats. C: the same sequence through `OrtApi`
(`CreateEnv`, `CreateSessionOptions`, `CreateSession`, `CreateTensorWithDataAsOrtValue`, `Run`,
`GetTensorMutableData`, and the matching `Release*` calls). An ORT Mobile or reduced-operator build
loads `model.ort` (or `model.mobile.ort` for NNAPI/CoreML) the same way.

Java / Kotlin (Android, `com.microsoft.onnxruntime:onnxruntime-android`):
`OrtEnvironment env = OrtEnvironment.getEnvironment();`
`OrtSession session = env.createSession(modelBytes, new OrtSession.SessionOptions());` with the bytes of
`model.mobile.ort` (add NNAPI with `options.addNnapi()`); `OnnxTensor input = OnnxTensor.createTensor(env,
FloatBuffer.wrap(pixels), new long[]{{1, {c}, {s}, {s}}});` then `session.run(Map.of("{inp["name"]}", input))`
and read `float[1][{len(m["labels"])}]` from output `{out["name"]}`.

{web_card_section()}

## Licence

{m["licence"]}

## Files

`manifest.json` lists every file of this folder with its size and sha256.
"""
