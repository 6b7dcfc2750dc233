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
import logging
import os
import shutil
import socket
import stat
import subprocess
import time
from pathlib import Path
from typing import Any

from stages.core import safefs
from stages.core.faults import fault_point

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


class CorruptArtifact(RuntimeError, ValueError):
    """An artifact or its manifest is missing, damaged or inconsistent; the one-line message
    names the path and how to rebuild it."""


#: A manifest larger than this is refused unread (a real one is a few MB at most).
MAX_MANIFEST_BYTES = 256 << 20


def _bad(path: Path, what: str, stage: str) -> CorruptArtifact:
    return CorruptArtifact(f"{path} {what}; rebuild it with `python jobs/submit.py stage={stage} force=true` "
                           "and the keys it was made with, or move it away")


def read_manifest(path: Path, stage: str, signature: str) -> dict | None:
    """The checked manifest of the artifact directory `path`, None when it has none.

    Refused (`CorruptArtifact`): a directory or manifest that is a symlink or not a regular
    file, unparsable JSON (including nesting too deep to parse), a manifest of another stage
    or whose signature differs from its directory name, one without a file list, and one whose
    recorded config does not hash to its signature.
    """
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
        raise _bad(path, "is not a real directory (a symlink or a file)", stage)
    manifest_path = path / MANIFEST
    try:
        mst = os.lstat(manifest_path)
    except FileNotFoundError:
        return None
    if not stat.S_ISREG(mst.st_mode) or mst.st_size > MAX_MANIFEST_BYTES:
        raise _bad(manifest_path, "is not a regular file of manifest size", stage)
    fd = safefs.open_regular(manifest_path, f"{stage}/{signature}")
    with os.fdopen(fd, "rb") as handle:
        raw = handle.read(MAX_MANIFEST_BYTES + 1)
    try:
        manifest = json.loads(raw)
    except (ValueError, RecursionError):  # RecursionError: a hostile manifest nested 200k deep
        raise _bad(manifest_path, "is not valid JSON", stage) from None
    if not isinstance(manifest, dict):
        raise _bad(manifest_path, "is not a JSON object", stage)
    if manifest.get("stage") != stage:
        raise _bad(manifest_path, f"records stage {manifest.get('stage')!r}, not {stage!r}", stage)
    if manifest.get("signature") != signature:
        raise _bad(manifest_path, f"records signature {manifest.get('signature')!r}, not its directory name "
                   f"{signature!r}", stage)
    if not isinstance(manifest.get("files"), list):
        raise _bad(manifest_path, "lists no files, so nothing in it can be verified", stage)
    _check_signature(manifest, manifest_path, stage, signature)
    return manifest


def _check_signature(manifest: dict, manifest_path: Path, stage: str, signature: str) -> None:
    """The recorded output-relevant config and upstream must hash to the signature, and the full
    config (what readers use) must agree with them on every output-relevant key."""
    sig_config, upstream, config = (manifest.get(k) for k in ("signature_config", "upstream", "config"))
    if not (isinstance(sig_config, dict) and isinstance(upstream, dict) and isinstance(config, dict)):
        raise _bad(manifest_path, "lacks its config, signature_config or upstream record", stage)
    try:
        recomputed = compute_signature(stage, manifest.get("stage_version"), sig_config, upstream)
    except (TypeError, ValueError, RecursionError):
        recomputed = None
    if recomputed != signature:
        raise _bad(manifest_path, f"records a config that hashes to {recomputed}, not to its signature", stage)
    for key, value in sig_config.items():
        if key not in config or not _agrees(config[key], value):
            raise _bad(manifest_path, f"records config key `{key}` that differs from its signed value", stage)


def _agrees(recorded, signed) -> bool:
    """A recorded config value agrees with its signed one. A component (a dict: no knob holds a
    dict value) is compared on its signed keys only: its other keys are left out of the signature
    (attention kernel, derived values) as a stage's own non-signature keys are."""
    if isinstance(signed, dict) and isinstance(recorded, dict):
        return all(key in recorded and _agrees(recorded[key], value) for key, value in signed.items())
    return json.dumps(recorded, sort_keys=True, default=str) == json.dumps(signed, sort_keys=True, default=str)


def load_artifact(root: Path, stage: str, signature: str) -> Artifact | None:
    """The complete artifact with this signature, or None; `CorruptArtifact` for a directory
    whose manifest fails `read_manifest`'s checks."""
    path = final_dir(root, stage, signature)
    manifest = read_manifest(path, stage, signature)
    return None if manifest is None else Artifact(path=path, manifest=manifest)


def complete_artifacts(root: Path, stage: str) -> list[Artifact]:
    """Every complete artifact of `stage` under `root` that passes the manifest checks, newest first."""
    stage_dir = Path(root) / stage
    found = []
    for manifest_path in stage_dir.glob(f"*/{MANIFEST}") if stage_dir.is_dir() else ():
        if manifest_path.parent.name.startswith("."):
            continue
        try:
            artifact = load_artifact(root, stage, manifest_path.parent.name)
        except (CorruptArtifact, OSError):
            continue
        if artifact is not None:
            found.append(artifact)
    return sorted(found, key=lambda a: str(a.manifest.get("end_time")), reverse=True)


def find_latest(root: Path, stage: str, signature_config: dict) -> Artifact | None:
    """The most recently finished complete artifact of `stage` whose output-relevant
    config equals `signature_config` (whatever its upstream was). Directories whose manifest
    fails the checks of `read_manifest` are passed over."""
    wanted = json.loads(json.dumps(signature_config, default=str))
    return next((a for a in complete_artifacts(root, stage) if a.manifest.get("signature_config") == wanted), None)


def listed_files(directory: Path, pattern: str) -> list[Path] | None:
    """The files of the artifact at `directory` whose manifest entry matches the glob `pattern`,
    sorted; None for a directory without a manifest (written without the runner). Readers find
    shards this way, never by globbing the directory: a file the manifest does not list (planted,
    or left over) is not part of the artifact."""
    import fnmatch

    manifest_path = Path(directory) / MANIFEST
    if not os.path.lexists(manifest_path):
        return None
    with os.fdopen(safefs.open_regular(manifest_path, str(directory)), "rb") as handle:
        try:
            files = json.loads(handle.read(MAX_MANIFEST_BYTES + 1)).get("files")
        except (ValueError, RecursionError, AttributeError):
            files = None
    if not isinstance(files, list):
        raise _bad(manifest_path, "lists no files", Path(directory).parent.name)
    names = [entry.get("path") for entry in files if isinstance(entry, dict)]
    return [Path(directory) / safefs.check_relpath(name, str(directory)) for name in sorted(names)
            if isinstance(name, str) and fnmatch.fnmatchcase(name, pattern)]


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """sha256 of a regular file, opened without following a symlink (see `safefs.open_regular`)."""
    digest = hashlib.sha256()
    with os.fdopen(safefs.open_regular(Path(path), str(path)), "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def describe_files(directory: Path) -> list[dict]:
    """Every regular output file (relative path, size, sha256), excluding bookkeeping markers.
    Symlinks are not artifact files: they are neither listed nor followed."""
    files = []
    for current, dirs, names in os.walk(directory):
        dirs.sort()
        for name in sorted(names):
            path = Path(current) / name
            rel = path.relative_to(directory)
            if rel.parts[0] == SHARD_MARKERS or str(rel) == MANIFEST:
                continue
            st = os.lstat(path)
            if not stat.S_ISREG(st.st_mode):
                continue
            files.append({"path": rel.as_posix(), "bytes": st.st_size, "sha256": sha256_file(path)})
    return sorted(files, key=lambda f: f["path"])


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
    """Write JSON through a fresh O_EXCL temporary file and rename it, so readers never see
    half a file and no name another user planted is written through."""
    blob = json.dumps(data, indent=2, sort_keys=True, default=str).encode()
    safefs.atomic_write(Path(path), blob)


def _aside(final: Path, kind: str) -> Path:
    return final.with_name(f".{final.name}.{kind}-{int(time.time())}-{os.getpid()}")


def _is_complete(path: Path) -> bool:
    return not path.is_symlink() and path.is_dir() and (path / MANIFEST).is_file()


def _install(partial: Path, final: Path) -> Path | None:
    """Rename the committed `partial` into `final`. A complete artifact there (force=true) is
    moved aside and returned for removal after the swap; anything else there is an unknown
    directory, which is moved aside with a warning and kept, never deleted."""
    replaced = None
    if os.path.lexists(final):
        aside = _aside(final, "replaced" if _is_complete(final) else "unknown")
        if _is_complete(final):
            replaced = aside
        else:
            logging.getLogger("wikigraph").warning(
                "%s held no complete artifact; moved it aside to %s (kept: remove it once you have looked)",
                final, aside)
        os.replace(final, aside)
        fault_point("commit.after_move_aside")
    os.replace(partial, final)
    safefs.fsync_dir(final.parent)
    fault_point("commit.after_rename")
    return replaced


def commit_artifact(partial: Path, final: Path, manifest: dict) -> Artifact:
    """Write the manifest last, then rename the partial directory into place.

    Every file is made group-readable (`safefs.publish_mode`), hashed and fsynced before the
    manifest is written. If the process stops anywhere in here, `recover_commit` (which the
    runner calls before it runs a stage) completes the commit: a partial directory with a
    manifest is complete. A forced rerun's old artifact is moved aside and removed only after
    the new one is in place, so there is never a moment without a complete artifact on disk.
    """
    manifest = dict(manifest)
    safefs.publish_tree(partial)
    manifest["files"] = describe_files(partial)
    manifest["host"] = socket.gethostname()
    fault_point("commit.after_hash")
    safefs.fsync_tree(partial)
    write_json_atomic(partial / MANIFEST, manifest)
    fault_point("commit.after_manifest")
    shutil.rmtree(partial / SHARD_MARKERS, ignore_errors=True)
    fault_point("commit.after_markers")
    replaced = _install(partial, final)
    if replaced is not None:
        shutil.rmtree(replaced, ignore_errors=True)
    return Artifact(path=final, manifest=manifest)


def recover_commit(root: Path, stage: str, signature: str) -> str | None:
    """Finish a commit that a signal interrupted; call it holding the signature's lock.

    - the partial directory holds a manifest (it was complete): finish the rename;
    - no artifact, but one a forced rerun moved aside: put it back;
    - an artifact in place: remove what earlier forced reruns moved aside.
    Returns what it did, for the log, or None.
    """
    final, partial = final_dir(root, stage, signature), partial_dir(root, stage, signature)
    stage_dir = Path(root) / stage
    replaced = sorted(stage_dir.glob(f".{signature}.replaced-*")) if stage_dir.is_dir() else []
    done = None
    if _is_complete(partial) and not partial.is_symlink() and not _is_complete(final):
        shutil.rmtree(partial / SHARD_MARKERS, ignore_errors=True)
        _install(partial, final)
        done = f"finished the interrupted commit of {final}"
    elif replaced and not os.path.lexists(final) and _is_complete(replaced[-1]):
        os.replace(replaced.pop(), final)
        done = f"restored {final} from an interrupted force=true swap"
    if _is_complete(final):
        for old in replaced:
            shutil.rmtree(old, ignore_errors=True)
    return done
