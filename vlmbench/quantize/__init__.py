"""Quantization: the variant registry (a method applied to components) and the census that proves it."""
