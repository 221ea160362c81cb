"""Benchmarks: every figure is reported next to a ceiling measured on the same machine in the same run."""
