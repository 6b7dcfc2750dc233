"""Offline compute nodes: the submit side fetches what jobs would download.

Compute nodes on many clusters have no internet. Before submitting, each stage's `prefetch`
hook (`StageSpec.prefetch`, built on `stages.core.offline`) resolves its jobs' downloads
(tiktoken encodings, HF tokenizer/model files, datasets) into `{root}/cache`, and jobs run with
the caches pointed there and the hubs switched offline.
"""

from __future__ import annotations

from pathlib import Path


def cache_dir(root: Path) -> Path:
    path = Path(root) / "cache"
    path.mkdir(parents=True, exist_ok=True)
    return path


def offline_env(root: Path) -> dict[str, str]:
    """Environment every job runs with: shared caches, no hub downloads."""
    cache = cache_dir(root)
    return {
        "TIKTOKEN_CACHE_DIR": str(cache / "tiktoken"),
        "HF_HOME": str(cache / "hf"),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
    }


def prepare_offline(plan, root: Path) -> None:
    """Resolve, once per distinct config, what each job of the plan would download."""
    from stages.core import registry

    done = set()
    for node in plan.to_run:
        key = (node.stage, repr(node.cfg))
        if key in done:
            continue
        for line in registry.get(node.stage).prefetch_for(node.cfg, cache_dir(root)):
            print(f"offline cache: {line}", flush=True)
        done.add(key)
