"""Export zoo models to verified, simplified ONNX with metadata."""

from .pipeline import ExportConfig, ExportSummary, run_export
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

__all__ = [
    "MAX_OPSET",
    "MIN_OPSET",
    "ExportConfig",
    "ExportSummary",
    "GraphCheck",
    "OnnxExport",
    "ParityResult",
    "ParityRow",
    "SimplifyResult",
    "check_graph",
    "check_opset",
    "check_parity",
    "export_onnx",
    "run_export",
    "simplify",
    "with_metadata",
]
