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
    """A stage: its name, typed config, upstream stages and a lazy `run` reference.

    Everything `jobs/` needs to know about a stage is declared here, so that `jobs/` names no
    stage and a new stage touches only its own package and one line of `BUILTIN_SPEC_MODULES`:

    - `variants`: override sets `stage=all` runs the stage with (evaluate: task=lm, task=qa);
    - `grid`: the comparison `stage=all` sweeps by default, `{key: "a,b,c"}` in the stage's own
      keys; a key set on the command line replaces its entry;
    - `derived`: `"module:function"`, `function(cfg, upstream_cfgs) -> {role: (cfg, {name: role})}`:
      upstream nodes this stage's config implies (the shared QA reader; a fresh evaluation
      corpus), each a job of the plan with its own config and its own upstream roles. A role is a
      stage name, or `stage@label` for a second artifact of one stage (`extract@fresh`);
      `upstream_cfgs` maps every upstream role of the stage, direct or not, to its config;
    - `in_chain`: False for a stage that runs only as another's derived upstream (never as a
      step of `stage=all`);
    - `prefetch`: `"module:function"`, `function(cfg, cache_dir) -> list[str]`, run on the submit
      side to resolve what a job would download into `{root}/cache` (one line per resource);

    What the results summary shows about a stage's runs is not part of the stage: a spec module
    contributes it to the reporting registry (`stages.core.reports`) as `REPORTS`.

    Hooks are strings or plain data, so listing stages never imports torch or transformers.
    """

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
    #: Default comparison grid of `stage=all`: stage key -> comma list.
    grid: dict[str, str] = dataclasses.field(default_factory=dict, hash=False)
    #: Upstream nodes implied by the config, "module:function(cfg, upstream_cfgs)" ("" if none).
    derived: str = ""
    #: A step of `stage=all` (False: runs only as another stage's derived upstream).
    in_chain: bool = True
    #: Submit-side offline resolution, "module:function(cfg, cache_dir) -> list[str]" ("" if none).
    prefetch: str = ""

    def upstream_of(self, cfg: Any) -> tuple[str, ...]:
        return tuple(self.upstream(cfg)) if callable(self.upstream) else tuple(self.upstream)

    def load_run(self) -> Callable:
        return _load(self.run)

    def derived_for(self, cfg: Any, upstream_cfgs: dict[str, Any]) -> dict[str, tuple[Any, dict[str, str]]]:
        """The derived upstream nodes of a run with `cfg`: role -> (config, {upstream name: role})."""
        return dict(_load(self.derived)(cfg, upstream_cfgs)) if self.derived else {}

    def prefetch_for(self, cfg: Any, cache_dir: os.PathLike) -> list[str]:
        """Resolve what a job of this stage with `cfg` would download; one line per resource."""
        return list(_load(self.prefetch)(cfg, cache_dir)) if self.prefetch else []


def stage_of(role: str) -> str:
    """The stage of an upstream role: `extract@fresh` -> `extract`, `graph` -> `graph`."""
    return role.split("@", 1)[0]


def _load(ref: str) -> Any:
    """The object named by "package.module:attribute", imported on first use."""
    module_name, _, attr = ref.partition(":")
    return getattr(importlib.import_module(module_name), attr)


def default_grid() -> dict[str, str]:
    """The comparison `stage=all` runs by default: {"stage.key": comma list}."""
    return {f"{name}.{key}": values for name, spec in all_stages().items() for key, values in spec.grid.items()}


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
    from stages.core import reports

    for report in getattr(module, "REPORTS", ()):
        reports.register(report)


def _load_specs() -> None:
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
    _load_specs()
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
