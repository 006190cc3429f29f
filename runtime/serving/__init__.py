"""Serving a model beside the runner: a real Triton Inference Server through PyTriton (the ``serve`` extra)."""
