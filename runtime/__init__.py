"""Embeddable onnxruntime runner for models written by nin-export (numpy and onnxruntime only)."""
