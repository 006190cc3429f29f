"""The web page's sources (the repository's ``web/`` folder) and the onnxruntime npm versions it pins:
shared by the ``web`` target, which copies them, and the ``bundle`` target, whose model card shows them."""

from __future__ import annotations

import json
from pathlib import Path

#: The sources of the page and the module: the repository's ``web/`` folder (``nin_edge.web`` when installed).
WEB_SOURCES = Path(__file__).resolve().parent.parent / "web"


def web_card_section() -> str:
    """The model card's JavaScript section: its code is ``web/example.mjs``, which the Node tests run."""
    example = (WEB_SOURCES / "example.mjs").read_text().strip()
    node = pinned_ort_web("onnxruntime-node")
    return f"""## JavaScript (a browser page, or Node)

`nin-export --web DIR` (or `--bundle B --web DIR`) writes a static folder that runs this model in any
modern browser, offline:
`index.html`, `nin-edge.mjs` (the preprocessing above, in JavaScript, read from `nin-edge.json`),
the model in ORT format and onnxruntime-web {pinned_ort_web()} (WebAssembly, SIMD, threads). Serve it
with `nin-serve --web DIR`, which sends the cross-origin isolation headers that WebAssembly threads
need. The same module runs in Node with `onnxruntime-node` {node}
(`ONNXRUNTIME_NODE_INSTALL=skip npm install onnxruntime-node@{node}`), beside `nin-edge.mjs`:

```js
{example}
```"""


def pinned_ort_web(package: str = "onnxruntime-web") -> str:
    """The version of an onnxruntime npm package that ``web/package.json`` pins."""
    pins = json.loads((WEB_SOURCES / "package.json").read_text())
    return str(pins["dependencies"][package])
