"""Benchmarks of the workbench against its peer libraries (see benchmarks/README.md)."""
