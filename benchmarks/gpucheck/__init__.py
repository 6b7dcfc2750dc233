"""Checks behind `benchmarks/gpu_check.py`: one module per area, each check a function of a
`CheckContext` that returns its result dict (see `runtime.CheckContext`)."""
