"""Submit-side resolution of what a job would otherwise download: the building blocks of the
stages' `prefetch` hooks (`StageSpec.prefetch`).

Compute nodes are offline (jobs run with `HF_HUB_OFFLINE=1`, see `jobs.offline.offline_env`),
so before anything is submitted the launcher calls each stage's hook, which resolves into the
artifact root's cache (`{root}/cache`) with these:

- `fetch_tiktoken`: a tiktoken encoding through `stages.core.tiktoken_offline`, which verifies
  every file against tiktoken's own hashes and copies it to `{root}/cache/tiktoken`;
- `fetch_hf_repo`: a Hugging Face model or tokenizer given by hub id: found in the root's HF
  cache, else copied from the submitting user's own HF cache, else downloaded when this machine
  is online; otherwise the submission fails with the command that fixes it;
- `fetch_dataset`: a `datasets` id, loaded once here exactly as the job will (same cache
  directory, offline), downloading first when online.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[\w.-]+)?")


def is_hub_id(ref: str) -> bool:
    """True for `org/name` or `name` that is not an existing local path."""
    return bool(_HUB_ID.fullmatch(ref)) and not Path(ref).exists() and not ref.endswith((".json", ".model"))


def hub_cache(cache_dir: Path) -> Path:
    """The hub cache inside the root's HF_HOME (`offline_env` sets HF_HOME to `{cache}/hf`)."""
    return Path(cache_dir) / "hf" / "hub"


def fetch_tiktoken(name: str, cache_dir: Path) -> str:
    """Resolve a tiktoken encoding into `{cache_dir}/tiktoken`; returns a one-line description."""
    from stages.core.tiktoken_offline import resolve_encoding_info

    _, info = resolve_encoding_info(name, cache_dir)
    return f"tiktoken {name}: {len(info['files'])} file(s) in {Path(cache_dir) / 'tiktoken'}"


def _online(online: bool | None) -> bool:
    """`online` if given, else whether this machine may download (HF_HUB_OFFLINE unset or 0)."""
    return online if online is not None else os.environ.get("HF_HUB_OFFLINE", "0") in ("0", "")


def fetch_hf_repo(key: str, repo_id: str, cache_dir: Path, online: bool | None = None) -> str:
    """Make an HF model/tokenizer repo available in the root's hub cache, or raise FileNotFoundError."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.constants import HF_HUB_CACHE
    from huggingface_hub.errors import LocalEntryNotFoundError

    target = hub_cache(cache_dir)
    try:
        path = snapshot_download(repo_id, cache_dir=target, local_files_only=True)
        return f"{key}={repo_id}: cached at {path}"
    except LocalEntryNotFoundError:
        pass
    folder = "models--" + repo_id.replace("/", "--")
    user_copy = Path(HF_HUB_CACHE) / folder
    if user_copy.is_dir() and user_copy.resolve() != (target / folder).resolve():
        try:
            snapshot_download(repo_id, cache_dir=HF_HUB_CACHE, local_files_only=True)
        except LocalEntryNotFoundError:
            pass
        else:  # blobs, refs and snapshots (relative symlinks) move as one tree
            shutil.copytree(user_copy, target / folder, symlinks=True, dirs_exist_ok=True)
            return f"{key}={repo_id}: copied from {user_copy}"
    if _online(online):
        try:
            path = snapshot_download(repo_id, cache_dir=target)
            return f"{key}={repo_id}: downloaded to {path}"
        except Exception as err:  # noqa: BLE001 (any hub failure ends in the same advice)
            reason = f"download failed ({type(err).__name__})"
    else:
        reason = "HF_HUB_OFFLINE=1 here"
    raise FileNotFoundError(
        f"{key}={repo_id!r} is not in the offline cache {target} and {reason}; compute nodes cannot download: "
        f"run `HF_HOME={Path(cache_dir) / 'hf'} huggingface-cli download {repo_id}` on a machine with internet, "
        f"or pass a local folder inside the artifact root")


def fetch_dataset(key: str, dataset_id: str, split: str, cache_dir: Path, online: bool | None = None) -> str:
    """Load a `datasets` split the way the QA stage does (offline), downloading it first when online."""
    datasets_dir = Path(cache_dir) / "hf_datasets"  # the QA stage's `datasets` cache_dir
    script = ("import sys, datasets; "
              "datasets.load_dataset(sys.argv[1], split=sys.argv[2], cache_dir=sys.argv[3])")
    env = {**os.environ, "HF_HOME": str(Path(cache_dir) / "hf")}

    def load(offline: bool) -> subprocess.CompletedProcess:
        flags = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"} if offline else {
            "HF_HUB_OFFLINE": "0", "HF_DATASETS_OFFLINE": "0"}
        return subprocess.run([sys.executable, "-c", script, dataset_id, split, str(datasets_dir)],
                              capture_output=True, text=True, env={**env, **flags}, timeout=3600, check=False)

    if load(offline=True).returncode == 0:
        return f"{key}={dataset_id} ({split}): cached in {datasets_dir}"
    if _online(online):
        proc = load(offline=False)
        if proc.returncode == 0:
            return f"{key}={dataset_id} ({split}): downloaded to {datasets_dir}"
        reason = "download failed: " + (proc.stderr.strip().splitlines() or ["?"])[-1]
    else:
        reason = "HF_HUB_OFFLINE=1 here"
    raise FileNotFoundError(
        f"{key}={dataset_id!r} (split {split}) is not in the offline cache {datasets_dir} and {reason}; "
        "compute nodes cannot download: submit once from a machine with internet, or use a SQuAD v2 JSON file")
