"""MkDocs hooks (``hooks:`` in mkdocs.yml), run on every ``mkdocs build`` and ``mkdocs serve``.

- The charts are drawn from the recorded results (``nin_edge.benchmarks.plots``) at build time and
  published under ``img/``, so a page never shows a picture older than its data.
- Images kept elsewhere in the repository (the web page's screenshot) are published from where
  they live, not copied into ``docs/``.
- The docstrings' Sphinx roles (``:class:`Classifier```) are shown as the code they name, not as
  role markup, in the generated API reference.
- The troubleshooting page's catalogue of error messages is read from the source code's ``raise``
  statements, so it lists every message the code can raise today.
"""

from __future__ import annotations

import ast
import html
import re
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.structure.files import File, Files
from mkdocs.structure.pages import Page
from nin_edge.benchmarks.plots import plot_bench_file, plot_training_record

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results"
WEIGHTS = REPO / "models" / "weights"

CHARTS: dict[str, Callable[[Path], str]] = {
    "img/latency-cpu.png": lambda out: plot_bench_file(RESULTS / "2026-11-26-cpu" / "cpu.json", out),
    "img/latency-precision-cpu.png": lambda out: plot_bench_file(
        RESULTS / "2026-11-26-cpu" / "bench-precision.json", out
    ),
    "img/latency-h200.png": lambda out: plot_bench_file(RESULTS / "2026-11-26-h200" / "bench-cuda.json", out),
    "img/training-nin.png": lambda out: plot_training_record([WEIGHTS / "nin_fashion_mnist.json"], out),
}
REPO_IMAGES = {"img/web-page.png": REPO / "web" / "screenshot.png"}

# The packages whose errors a user meets, in the order the catalogue lists them.
SOURCES = {
    "runtime": "the runtime (Classifier, nin-infer, nin-serve)",
    "models": "training and evaluation (nin-train, nin-eval)",
    "export": "export (nin-export, nin-inspect)",
    "benchmarks": "benchmarks (nin-bench and the measurement tools)",
}
CATALOGUE_MARKER = "<!-- error-catalogue -->"
# A Sphinx role as Markdown renders it: the role's name, then its target as inline code ("~" hides the path).
SPHINX_ROLE = re.compile(r":(?:class|meth|func|mod|attr|data|exc|obj):<code>~?([^<]*)</code>")


def on_files(files: Files, config: MkDocsConfig) -> Files:
    """Add the charts, drawn now, and the repository's own images to the site."""
    with tempfile.TemporaryDirectory(prefix="nin-edge-docs-") as tmp:
        for uri, draw in CHARTS.items():
            path = Path(tmp) / Path(uri).name
            draw(path)
            files.append(File.generated(config, uri, content=path.read_bytes()))
    for uri, source in REPO_IMAGES.items():
        files.append(File.generated(config, uri, abs_src_path=str(source)))
    return files


def on_page_markdown(markdown: str, page: Page, config: MkDocsConfig, files: Files) -> str:
    """Fill the troubleshooting page's catalogue marker with every error message in the source."""
    if CATALOGUE_MARKER not in markdown:
        return markdown
    return markdown.replace(CATALOGUE_MARKER, error_catalogue())


def on_page_content(content: str, page: Page, config: MkDocsConfig, files: Files) -> str:
    """Show each Sphinx role of a docstring as the inline code it names."""
    return SPHINX_ROLE.sub(r"<code>\1</code>", content)


def _message(node: ast.expr) -> str | None:
    """The text of a message argument, with each interpolated value shown as ``{expression}``."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        parts = []
        for value in node.values:
            if isinstance(value, ast.Constant):
                parts.append(str(value.value))
            elif isinstance(value, ast.FormattedValue):
                parts.append("{" + ast.unparse(value.value) + "}")
        return "".join(parts)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = _message(node.left), _message(node.right)
        return left + right if left is not None and right is not None else None
    return None


def raised_messages(folder: Path) -> Iterator[tuple[str, int, str, str]]:
    """``(file, line, error class, message)`` for every ``raise SomethingError("...")`` under ``folder``."""
    for path in sorted(folder.rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in sorted(ast.walk(tree), key=lambda n: getattr(n, "lineno", 0)):
            if not (isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call)):
                continue
            func = node.exc.func
            name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
            if not name.endswith("Error") or not node.exc.args:
                continue
            message = _message(node.exc.args[0])
            if message:
                yield path.relative_to(REPO).as_posix(), node.lineno, name, message


def _literal(text: str) -> str:
    """``text`` on one line as HTML that neither Markdown nor a table cell reads anything into."""
    text = html.escape(" ".join(text.split()))
    return "".join(f"&#{ord(c)};" if c in "|*_[]`\\" else c for c in text)


def pinning_tests(message: str, tests: dict[str, str]) -> list[str]:
    """The test files that quote a literal stretch of ``message`` (20 characters or more, plainly or as a regular
    expression), stretches being the text between the values the message interpolates."""
    parts = [p.strip(" :;,.'") for p in re.split(r"\{[^}]*\}", message)]
    forms = {form for p in parts if len(p) >= 20 for form in (p, re.escape(p), p.replace("'", "\\'"))}
    return [name for name, text in tests.items() if any(form in text for form in forms)]


def error_catalogue() -> str:
    """Markdown: one table per package of every message its code raises, where, and the tests that pin it."""
    tests = {path.name: path.read_text() for path in sorted((REPO / "tests").glob("test_*.py"))}
    out = []
    for folder, title in SOURCES.items():
        rows = list(raised_messages(REPO / folder))
        pinned = sum(1 for *_, message in rows if pinning_tests(message, tests))
        out.append(
            f"### Raised by {title}\n\n{len(rows)} messages, {pinned} of them quoted by a test.\n\n"
            "| error | message | where | pinned by |\n|---|---|---|---|"
        )
        for file, line, name, message in rows:
            found = ", ".join(f"`{t}`" for t in pinning_tests(message, tests)[:3])
            out.append(f"| {name} | <code>{_literal(message)}</code> | `{file}:{line}` | {found} |")
        out.append("")
    return "\n".join(out)
