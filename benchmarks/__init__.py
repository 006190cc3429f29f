"""Benchmarks of NiN against AlexNet and VGG-11."""
