"""Shared stage machinery: typed configs, the stage registry, artifacts and the runner.

Everything here is launcher-agnostic: a stage sees only its config, a `StageContext`
and the torch distributed environment variables.
"""
