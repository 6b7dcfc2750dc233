"""Readers verify: an upstream artifact's files must match the sizes and sha256 its manifest records.

Sizes are checked on every use (a `stat` per file). Checksums are checked before a stage first
reads an artifact; a successful check leaves a stamp, ``.verified.json`` in the artifact (best
effort: a read-only artifact is simply re-hashed next time), which records each file's size,
mtime and inode. While those are unchanged the file is not hashed again, so the cost is paid
once per artifact, not once per reader. Any write to a file changes its mtime and voids its stamp.

This protects against lost and damaged files (a deleted shard, a flipped byte, a truncated
copy), not against someone who can rewrite the manifest too.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from stages.core.artifacts import Artifact, sha256_file

STAMP = ".verified.json"


class CorruptArtifact(RuntimeError):
    """An artifact file is missing or differs from its manifest; the message says how to rebuild."""


def _fail(artifact: Artifact, path: Path, what: str) -> CorruptArtifact:
    return CorruptArtifact(
        f"{path} {what}: artifact {artifact.stage}/{artifact.signature} is damaged; rebuild it with "
        f"`python jobs/submit.py stage={artifact.stage} force=true` and the keys it was made with "
        f"(see {artifact.path / 'manifest.json'})"
    )


def _read_stamp(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _write_stamp(path: Path, stamp: dict) -> None:
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(stamp, sort_keys=True))
        os.replace(tmp, path)
    except OSError:  # someone else's read-only artifact: verify again next time
        tmp.unlink(missing_ok=True)


def verify_artifact(artifact: Artifact, checksums: bool = True) -> dict:
    """Raise `CorruptArtifact` naming the first bad file; return counts of what was checked."""
    files = artifact.manifest.get("files")
    if files is None:  # built outside the runner (tests, hand-made): nothing recorded to check
        return {"files": 0, "hashed_bytes": 0}
    stamp_path = artifact.path / STAMP
    stamp = _read_stamp(stamp_path) if checksums else {}
    hashed = 0
    changed = False
    for entry in files:
        path = artifact.path / entry["path"]
        try:
            st = path.stat()
        except FileNotFoundError:
            raise _fail(artifact, path, "is missing") from None
        if st.st_size != entry["bytes"]:
            raise _fail(artifact, path, f"has {st.st_size} bytes, its manifest says {entry['bytes']}")
        if not checksums:
            continue
        key = [st.st_size, st.st_mtime_ns, st.st_ino, entry["sha256"]]
        if stamp.get(entry["path"]) == key:
            continue
        if sha256_file(path) != entry["sha256"]:
            raise _fail(artifact, path, "does not match the sha256 in its manifest")
        hashed += st.st_size
        stamp[entry["path"]] = key
        changed = True
    if changed:
        _write_stamp(stamp_path, stamp)
    return {"files": len(files), "hashed_bytes": hashed}
