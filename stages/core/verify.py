"""Readers verify: an upstream artifact's files must match the sizes and sha256 its manifest records.

Sizes are checked on every use (a `stat` per file). Checksums are checked before a stage first
reads an artifact; a successful check leaves a stamp, ``.verified.json`` in the artifact (best
effort: a read-only artifact is simply re-hashed next time), which records each file's size,
mtime and inode. While those are unchanged the file is not hashed again, so the cost is paid
once per artifact, not once per reader. Any write to a file changes its mtime and voids its stamp.

This protects against lost and damaged files (a deleted shard, a flipped byte, a truncated
copy), not against someone who can rewrite the manifest too. Against a neighbour who can write
in the shared root, an artifact is a closed world: every listed path must be relative and inside
the artifact, and a regular file reached through no symlink (`safefs.lstat_inside`); a manifest
without a file list was already refused when the artifact was loaded.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

from stages.core import safefs
from stages.core.artifacts import Artifact, CorruptArtifact, sha256_file

STAMP = ".verified.json"
__all__ = ["STAMP", "CorruptArtifact", "verify_artifact"]


def _fail(artifact: Artifact, path: Path, what: str) -> CorruptArtifact:
    return CorruptArtifact(
        f"{path} {what}: artifact {artifact.stage}/{artifact.signature} is damaged; rebuild it with "
        f"`python jobs/submit.py stage={artifact.stage} force=true` and the keys it was made with "
        f"(see {artifact.path / 'manifest.json'})"
    )


def _read_stamp(path: Path) -> dict:
    try:
        with os.fdopen(safefs.open_regular(path, str(path.parent)), "rb") as handle:
            data = json.loads(handle.read(64 << 20))
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError, RecursionError):  # absent, planted or garbage: hash again
        return {}


def _write_stamp(path: Path, stamp: dict) -> None:
    try:
        # A stamp lost in a crash only means hashing again: no fsync on the reader's path.
        safefs.atomic_write(path, json.dumps(stamp, sort_keys=True).encode(), durable=False)
    except OSError:  # someone else's read-only artifact: verify again next time
        pass


def stamp_committed(artifact: Artifact) -> None:
    """After a commit: the runner hashed every file for the manifest moments ago, so the stamp is
    written then and the first reader checks sizes and stamps instead of hashing it all again. A
    file changed later has another mtime or inode, and is hashed by its next reader."""
    stamp = {}
    for entry in artifact.manifest.get("files", []):
        st = os.lstat(artifact.path / entry["path"])
        stamp[entry["path"]] = [st.st_size, st.st_mtime_ns, st.st_ino, entry["sha256"]]
    _write_stamp(artifact.path / STAMP, stamp)


def verify_artifact(artifact: Artifact, checksums: bool = True) -> dict:
    """Raise `CorruptArtifact` naming the first bad file; return counts of what was checked."""
    files = artifact.manifest.get("files")
    if files is None and str(artifact.signature).startswith("unmanaged-"):
        return {"files": 0, "hashed_bytes": 0}  # `Artifact.unmanaged`: written without the runner
    if not isinstance(files, list):
        raise _fail(artifact, artifact.path / "manifest.json", "lists no files")
    stamp_path = artifact.path / STAMP
    stamp = _read_stamp(stamp_path) if checksums else {}
    hashed = 0
    changed = False
    where = f"{artifact.stage}/{artifact.signature}"
    for entry in files:
        if not isinstance(entry, dict) or not isinstance(entry.get("bytes"), int):
            raise _fail(artifact, artifact.path / "manifest.json", f"has a malformed file entry {entry!r:.80}")
        try:
            rel = safefs.check_relpath(entry.get("path"), where)
            path = artifact.path / rel
            st = safefs.lstat_inside(artifact.path, rel, where)
        except (FileNotFoundError, NotADirectoryError):
            raise _fail(artifact, path, "is missing") from None
        except safefs.UnsafePath as err:
            raise CorruptArtifact(f"{err}") from None
        if st.st_size != entry["bytes"]:
            raise _fail(artifact, path, f"has {st.st_size} bytes, its manifest says {entry['bytes']}")
        if not checksums:
            continue
        key = [st.st_size, st.st_mtime_ns, st.st_ino, entry["sha256"]]
        if stamp.get(entry["path"]) == key:
            continue
        if not stat.S_ISREG(st.st_mode) or sha256_file(path) != entry["sha256"]:
            raise _fail(artifact, path, "does not match the sha256 in its manifest")
        hashed += st.st_size
        stamp[entry["path"]] = key
        changed = True
    if changed:
        _write_stamp(stamp_path, stamp)
    return {"files": len(files), "hashed_bytes": hashed}
