"""Export zoo models to verified, simplified ONNX with metadata."""

from typing import TYPE_CHECKING

from nin_edge.runtime.core.lazy import lazy_exports

if TYPE_CHECKING:
    from .config import Deploy, ExportConfig
    from .pipeline import run_export, verify_export
    from .steps import (
        MAX_OPSET,
        MIN_OPSET,
        GraphCheck,
        OnnxExport,
        ParityResult,
        ParityRow,
        SimplifyResult,
        check_graph,
        check_opset,
        check_parity,
        export_onnx,
        simplify,
        with_metadata,
    )
    from .verified import ExportSummary, VerifiedModel


__all__ = [
    "Deploy",
    "ExportConfig",
    "ExportSummary",
    "GraphCheck",
    "MAX_OPSET",
    "MIN_OPSET",
    "OnnxExport",
    "ParityResult",
    "ParityRow",
    "SimplifyResult",
    "VerifiedModel",
    "check_graph",
    "check_opset",
    "check_parity",
    "export_onnx",
    "run_export",
    "simplify",
    "verify_export",
    "with_metadata",
]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        ".config": ("Deploy", "ExportConfig"),
        ".pipeline": ("run_export", "verify_export"),
        ".verified": ("ExportSummary", "VerifiedModel"),
        ".steps": (
            "MAX_OPSET",
            "MIN_OPSET",
            "GraphCheck",
            "OnnxExport",
            "ParityResult",
            "ParityRow",
            "SimplifyResult",
            "check_graph",
            "check_opset",
            "check_parity",
            "export_onnx",
            "simplify",
            "with_metadata",
        ),
    },
)
