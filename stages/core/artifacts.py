"""Artifacts on shared storage: `{root}/{stage}/{signature}/` with `manifest.json` inside.

A stage writes into the deterministic temporary sibling `{root}/{stage}/.{signature}.partial/`.
Only when the stage returns does the runner write `manifest.json` into it and rename it into
place. A directory without a manifest, or whose name starts with a dot, is never read as an
artifact, so a crash mid-write is invisible downstream, and a relaunch finds its partial
work (finished shards, checkpoints) again.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

MANIFEST = "manifest.json"
SHARD_MARKERS = ".shards"


def compute_signature(stage: str, version: int, config: dict, upstream: dict[str, str]) -> str:
    """Hash of the output-relevant config plus upstream signatures (12 hex chars)."""
    payload = {"stage": stage, "version": version, "config": config, "upstream": dict(sorted(upstream.items()))}
    blob = json.dumps(payload, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


@dataclasses.dataclass(frozen=True)
class Artifact:
    """A complete artifact: its directory and manifest."""

    path: Path
    manifest: dict

    @property
    def stage(self) -> str:
        return self.manifest["stage"]

    @property
    def signature(self) -> str:
        return self.manifest["signature"]

    @property
    def config(self) -> dict:
        """The recorded config as a plain dict; readers want `typed_config()`."""
        return self.manifest["config"]

    def typed_config(self) -> Any:
        """The config this artifact was made with, as an instance of its stage's config class
        (resolved through the stage registry from the manifest's stage name)."""
        from stages.core import config as config_lib
        from stages.core import registry

        return config_lib.from_dict(registry.get(self.stage).config_cls, self.config)

    @classmethod
    def unmanaged(cls, path: Path, stage: str, config: dict | None = None) -> Artifact:
        """A handle for a directory written without the runner (a generator's output, a
        benchmark's corpus): no manifest on disk, so no checksums to verify."""
        return cls(path=Path(path), manifest={"stage": stage, "signature": f"unmanaged-{stage}",
                                              "config": config or {}})


def final_dir(root: Path, stage: str, signature: str) -> Path:
    return Path(root) / stage / signature


def partial_dir(root: Path, stage: str, signature: str) -> Path:
    return Path(root) / stage / f".{signature}.partial"


def load_artifact(root: Path, stage: str, signature: str) -> Artifact | None:
    """The complete artifact with this signature, or None."""
    path = final_dir(root, stage, signature)
    manifest = path / MANIFEST
    if not manifest.is_file():
        return None
    return Artifact(path=path, manifest=json.loads(manifest.read_text()))


def find_latest(root: Path, stage: str, signature_config: dict) -> Artifact | None:
    """The most recently finished complete artifact of `stage` whose output-relevant
    config equals `signature_config` (whatever its upstream was)."""
    best: Artifact | None = None
    stage_dir = Path(root) / stage
    if not stage_dir.is_dir():
        return None
    for manifest_path in stage_dir.glob(f"*/{MANIFEST}"):
        if manifest_path.parent.name.startswith("."):
            continue
        manifest = json.loads(manifest_path.read_text())
        if manifest.get("signature_config") != json.loads(json.dumps(signature_config, default=str)):
            continue
        if best is None or manifest["end_time"] > best.manifest["end_time"]:
            best = Artifact(path=manifest_path.parent, manifest=manifest)
    return best


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def describe_files(directory: Path) -> list[dict]:
    """Every output file (relative path, size, sha256), excluding bookkeeping markers."""
    files = []
    for path in sorted(directory.rglob("*")):
        rel = path.relative_to(directory)
        if not path.is_file() or rel.parts[0] == SHARD_MARKERS or rel.name == MANIFEST:
            continue
        files.append({"path": str(rel), "bytes": path.stat().st_size, "sha256": sha256_file(path)})
    return files


def code_version() -> dict:
    """Git commit and dirty flag of the code that runs (a snapshot records it in a file)."""
    repo = Path(__file__).resolve().parents[2]
    recorded = repo / ".code_version.json"
    if recorded.is_file():
        return json.loads(recorded.read_text())
    try:
        commit = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = bool(
            subprocess.run(
                ["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
                capture_output=True, text=True, check=True,
            ).stdout.strip()
        )
        return {"commit": commit, "dirty": dirty}
    except (OSError, subprocess.CalledProcessError):
        return {"commit": None, "dirty": None}


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON to a temporary file and rename it, so readers never see half a file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w") as handle:
        json.dump(data, handle, indent=2, sort_keys=True, default=str)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def commit_artifact(partial: Path, final: Path, manifest: dict) -> Artifact:
    """Write the manifest last, then rename the partial directory into place.

    If `final` already exists (a forced rerun), it is moved aside first and removed after
    the new artifact is in place, so there is never a moment without a complete artifact.
    """
    manifest = dict(manifest)
    manifest["files"] = describe_files(partial)
    manifest["host"] = socket.gethostname()
    write_json_atomic(partial / MANIFEST, manifest)
    shutil.rmtree(partial / SHARD_MARKERS, ignore_errors=True)
    replaced = None
    if final.exists():
        replaced = final.with_name(f".{final.name}.replaced-{int(time.time())}")
        os.replace(final, replaced)
    os.replace(partial, final)
    if replaced is not None:
        shutil.rmtree(replaced, ignore_errors=True)
    return Artifact(path=final, manifest=manifest)
