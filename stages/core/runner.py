"""Run one stage under the artifact contract: cache hit, partial directory, atomic commit.

`execute` is what every launcher calls (inline, local subprocess or Slurm task). It knows
nothing about the launcher: it reads the torch distributed variables for the rank.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any

from stages.core import config as config_lib
from stages.core import locks, safefs
from stages.core.artifacts import (
    Artifact,
    CorruptArtifact,
    code_version,
    commit_artifact,
    compute_signature,
    final_dir,
    load_artifact,
    partial_dir,
    recover_commit,
)
from stages.core.context import StageContext, dist_env
from stages.core.registry import StageSpec
from stages.core.verify import stamp_committed, verify_artifact


@dataclasses.dataclass
class Outcome:
    """What a stage run produced, as seen by the launcher."""

    stage: str
    signature: str
    metrics: dict
    artifact: Path | None
    cache_hit: bool
    record: dict
    rank: int


def stage_signature(spec: StageSpec, cfg: Any, upstream: dict[str, Artifact | str]) -> str:
    """Signature from the output-relevant config and the direct upstream signatures."""
    up = {name: (a if isinstance(a, str) else a.signature) for name, a in upstream.items()}
    return compute_signature(spec.name, spec.version, config_lib.signature_dict(cfg), up)


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def discard_partial(root: Path, stage: str, signature: str) -> None:
    """Remove leftover partial work (a forced rerun starts clean), never a live run's."""
    owner = locks.read_owner(locks.lock_path(root, stage, signature))
    if owner is not None and owner.gone() is None:
        raise locks.ArtifactBusy(f"force=true: {stage}/{signature} is being written by {owner.describe()}; "
                                 "wait for that run to finish or stop it first")
    shutil.rmtree(partial_dir(root, stage, signature), ignore_errors=True)


def execute(
    spec: StageSpec,
    cfg: Any,
    root: Path,
    upstream: dict[str, Artifact],
    *,
    direct_upstream: tuple[str, ...] | None = None,
    force: bool = False,
    on_busy: str = "wait",
) -> Outcome:
    """Run `spec` unless its artifact exists; commit the result atomically on rank 0.

    `upstream` holds every transitive upstream artifact; the signature uses the direct ones.
    Rank 0 holds the signature's lock (`stages.core.locks`) from before the partial directory
    is touched until the commit; a second run of the same signature waits for it and then finds
    the artifact (`on_busy="wait"`), or stops with one line naming the owner (`"refuse"`).
    """
    root = Path(root)
    direct = direct_upstream if direct_upstream is not None else spec.upstream_of(cfg)
    missing = [name for name in direct if name not in upstream]
    if missing:
        raise FileNotFoundError(
            f"stage `{spec.name}` needs upstream artifact(s) {missing}; run those stages first"
        )
    signature = stage_signature(spec, cfg, {name: upstream[name] for name in direct})
    rank, world_size, local_rank = dist_env()
    log = logging.getLogger(f"wikigraph.{spec.name}")

    existing = _existing(root, spec.name, signature, force)
    if existing is not None and not force:
        log.info("cache hit: %s/%s", spec.name, signature)
        return Outcome(spec.name, signature, existing.manifest.get("metrics", {}), existing.path,
                       True, existing.manifest.get("record", {}), rank)

    lock_file = locks.lock_path(root, spec.name, signature)
    if rank == 0:
        lock = locks.acquire(lock_file, on_busy=on_busy, log=log)
    else:
        lock = None
        locks.wait_for_job_lock(lock_file, on_busy=on_busy, log=log,
                                done=lambda: load_artifact(root, spec.name, signature) is not None)
    try:
        if rank == 0:
            recovered = recover_commit(root, spec.name, signature)
            if recovered:
                log.warning("%s", recovered)
        existing = _existing(root, spec.name, signature, force)
        if existing is not None and not force:  # the run we waited for (or an interrupted commit) made it
            log.info("cache hit after waiting: %s/%s", spec.name, signature)
            return Outcome(spec.name, signature, existing.manifest.get("metrics", {}), existing.path,
                           True, existing.manifest.get("record", {}), rank)
        for artifact in upstream.values():  # sizes on every rank, checksums once (rank 0, stamped)
            verify_artifact(artifact, checksums=rank == 0)
        return _run_and_commit(spec, cfg, root, upstream, direct, signature, rank, world_size, local_rank, log)
    finally:
        if lock is not None:
            lock.release()


def _existing(root: Path, stage: str, signature: str, force: bool) -> Artifact | None:
    """The committed artifact, if any; with force=true a damaged one counts as absent (the
    commit moves it aside), without it the damage is reported in one line."""
    try:
        return load_artifact(root, stage, signature)
    except CorruptArtifact:
        if force:
            return None
        raise


def _own_partial(out_dir: Path, rank: int, log) -> None:
    """Make `out_dir` a directory this user owns that no one else can write in, so the stage's
    files and temporary files there cannot be planted. One left by another user is moved aside."""
    if rank == 0 and os.path.lexists(out_dir) and not safefs.owned_dir(out_dir):
        aside = out_dir.with_name(f"{out_dir.name}.foreign-{int(time.time())}-{os.getpid()}")
        try:
            os.replace(out_dir, aside)
        except OSError:
            raise locks.ArtifactBusy(f"{out_dir} belongs to another user or is not a directory, and cannot be "
                                     "moved aside; ask its owner to remove it, or use another root=") from None
        log.warning("%s was not this user's directory; moved it aside to %s", out_dir, aside)
    out_dir.mkdir(parents=True, exist_ok=True)
    if rank == 0:
        os.chmod(out_dir, safefs.dir_mode(safefs.publish_mode()))


def _run_and_commit(spec, cfg, root, upstream, direct, signature, rank, world_size, local_rank, log) -> Outcome:
    out_dir = partial_dir(root, spec.name, signature)
    _own_partial(out_dir, rank, log)
    ctx = StageContext(
        stage=spec.name, signature=signature, root=root, out_dir=out_dir, upstream=dict(upstream),
        rank=rank, world_size=world_size, local_rank=local_rank, log=log,
    )
    start, t0 = _now(), time.time()
    metrics = spec.load_run()(cfg, ctx) or {}
    if rank != 0:
        return Outcome(spec.name, signature, metrics, None, False, ctx.record, rank)

    manifest = {
        "stage": spec.name,
        "signature": signature,
        "stage_version": spec.version,
        "config": config_lib.to_dict(cfg),
        "signature_config": config_lib.signature_dict(cfg),
        "upstream": {name: upstream[name].signature for name in direct},
        "upstream_all": {name: a.signature for name, a in upstream.items()},
        "upstream_paths": {name: str(a.path) for name, a in upstream.items()},
        "code": code_version(),
        "world_size": world_size,
        "start_time": start,
        "end_time": _now(),
        "elapsed_s": round(time.time() - t0, 3),
        "metrics": metrics,
        "skipped": dict(ctx.skipped),
        "skipped_examples": ctx.skipped_examples,
        "record": ctx.record,
    }
    artifact = commit_artifact(out_dir, final_dir(root, spec.name, signature), manifest)
    stamp_committed(artifact)
    log.info("committed %s", artifact.path)
    return Outcome(spec.name, signature, metrics, artifact.path, False, ctx.record, rank)
