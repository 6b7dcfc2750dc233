"""The registry of stages by name.

Each stage declares a light `StageSpec` (config class, upstream stages, and a lazy
reference to its `run` function) so that listing stages for `--help` or planning a
chain does not import torch or transformers.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
from collections.abc import Callable
from typing import Any

#: Modules that declare the built-in stages, in pipeline order. Each defines `STAGE` or `STAGES`.
BUILTIN_SPEC_MODULES = (
    "stages.wiki.spec",
    "stages.pretrain.spec",
    "stages.qa.spec",
    "stages.evaluate.spec",
)

#: Extra spec modules (comma-separated), e.g. a site's own stages or the test suite's toy stage.
EXTRA_MODULES_ENV = "WIKIGRAPH_EXTRA_STAGES"


@dataclasses.dataclass(frozen=True)
class StageSpec:
    """A stage: its name, typed config, upstream stages and a lazy `run` reference."""

    name: str
    config_cls: type
    run: str  # "package.module:function"
    upstream: tuple[str, ...] | Callable[[Any], tuple[str, ...]] = ()
    description: str = ""
    #: Training stages checkpoint and may be requeued after SIGUSR2.
    resumable: bool = False
    #: Bump when the stage's output format changes, so old artifacts stop matching.
    version: int = 1
    #: Override sets that `stage=all` runs this stage with (e.g. evaluate for task=lm and task=qa).
    variants: tuple[dict, ...] = ()

    def upstream_of(self, cfg: Any) -> tuple[str, ...]:
        return tuple(self.upstream(cfg)) if callable(self.upstream) else tuple(self.upstream)

    def load_run(self) -> Callable:
        module_name, _, attr = self.run.partition(":")
        return getattr(importlib.import_module(module_name), attr)


_REGISTRY: dict[str, StageSpec] = {}
_LOADED = False


def register(spec: StageSpec) -> StageSpec:
    if spec.name in _REGISTRY and _REGISTRY[spec.name] is not spec:
        raise ValueError(f"stage {spec.name!r} is registered twice")
    _REGISTRY[spec.name] = spec
    return spec


def _import_spec_module(module_name: str, optional: bool) -> None:
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        # Only a missing spec module itself is tolerated (a stage package not in this
        # checkout); a broken import inside it must surface.
        if optional and err.name is not None and module_name.startswith(err.name):
            return
        raise
    specs = getattr(module, "STAGES", None) or [module.STAGE]
    for spec in specs:
        register(spec)


def _load() -> None:
    global _LOADED
    if _LOADED:
        return
    for module_name in BUILTIN_SPEC_MODULES:
        _import_spec_module(module_name, optional=True)
    for module_name in filter(None, os.environ.get(EXTRA_MODULES_ENV, "").split(",")):
        _import_spec_module(module_name.strip(), optional=False)
    _LOADED = True


def all_stages() -> dict[str, StageSpec]:
    """All registered stages, in pipeline order."""
    _load()
    return dict(_REGISTRY)


def get(name: str) -> StageSpec:
    stages = all_stages()
    if name not in stages:
        from stages.core.config import ConfigError, did_you_mean

        raise ConfigError(
            f"unknown stage `{name}`{did_you_mean(name, list(stages))}; "
            f"choose one of: {', '.join(stages)}, all"
        )
    return stages[name]
