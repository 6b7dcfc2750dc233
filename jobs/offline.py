"""Offline compute nodes: the submit side fetches what jobs would download.

Compute nodes on many clusters have no internet. Before submitting, each stage's
`prefetch` hook resolves its downloads (tiktoken encodings, HF tokenizer/model files) into
`{root}/cache`, and jobs run with the caches pointed there and the hubs switched offline.
"""

from __future__ import annotations

from pathlib import Path

from stages.core import registry


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
    """Run the prefetch hook of every stage the plan will run (once per distinct config)."""
    done = set()
    for node in plan.to_run:
        spec = registry.get(node.stage)
        hook = spec.load_prefetch()
        key = (node.stage, repr(node.cfg))
        if hook is None or key in done:
            continue
        hook(node.cfg, cache_dir(root))
        done.add(key)
