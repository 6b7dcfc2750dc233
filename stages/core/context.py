"""What a running stage sees: where to write, its upstream artifacts, its rank, and counters."""

from __future__ import annotations

import collections
import dataclasses
import json
import logging
import os
from collections.abc import Iterable
from pathlib import Path

from stages.core.artifacts import SHARD_MARKERS, Artifact

#: How many example details (offsets, titles) to keep per skip reason.
SKIP_DETAILS_KEPT = 5


#: Most points of a per-step curve kept in a run record (records are committed with results).
RECORD_CURVE_POINTS = 1000


def record_curve(points: list[list[float]], max_points: int = RECORD_CURVE_POINTS) -> list[list[float]]:
    """A run record's copy of a per-step `[[step, value], ...]` curve: unchanged up to `max_points`
    points, else the mean of each run of consecutive points, at the run's first step. The full
    curve stays in the stage's artifact; a 30,000-step curve made each QA record 1.8 MB."""
    if len(points) <= max_points:
        return [list(p) for p in points]
    width = -(-len(points) // max_points)  # ceil: at most max_points bins
    binned = []
    for start in range(0, len(points), width):
        chunk = points[start:start + width]
        binned.append([chunk[0][0], sum(v for _, v in chunk) / len(chunk)])
    return binned


def dist_env() -> tuple[int, int, int]:
    """(rank, world_size, local_rank) from the torch launcher variables."""
    return (
        int(os.environ.get("RANK", "0")),
        int(os.environ.get("WORLD_SIZE", "1")),
        int(os.environ.get("LOCAL_RANK", "0")),
    )


@dataclasses.dataclass
class StageContext:
    """Runtime context of one stage run. See DESIGN.md, "Stage contract"."""

    stage: str
    signature: str
    root: Path
    out_dir: Path
    upstream: dict[str, Artifact]
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    log: logging.Logger = dataclasses.field(default_factory=lambda: logging.getLogger("wikigraph"))
    skipped: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    skipped_examples: dict[str, list[str]] = dataclasses.field(default_factory=dict)
    record: dict = dataclasses.field(default_factory=dict)

    @classmethod
    def standalone(cls, out_dir: Path, upstream: dict[str, Artifact], stage: str, rank: int = 0,
                   world_size: int = 1) -> StageContext:
        """A context writing into `out_dir` (created), as the runner would build it, for calling a
        stage's `run` directly (benchmarks, tests); no lock, manifest or partial directory."""
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        return cls(stage=stage, signature="standalone", root=out_dir.parent, out_dir=out_dir,
                   upstream=dict(upstream), rank=rank, world_size=world_size,
                   log=logging.getLogger(f"wikigraph.{stage}"))

    @property
    def cache_dir(self) -> Path:
        """Shared cache for offline resources (tokenizer files, HF files)."""
        path = Path(self.root) / "cache"
        path.mkdir(parents=True, exist_ok=True)
        return path

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def skip(self, reason: str, detail: str | None = None, count: int = 1) -> None:
        """Count a dropped input; the first few details go into the manifest."""
        self.skipped[reason] += count
        if detail is not None:
            examples = self.skipped_examples.setdefault(reason, [])
            if len(examples) < SKIP_DETAILS_KEPT:
                examples.append(str(detail))

    def _marker(self, key: str) -> Path:
        safe = key.replace("/", "_")
        return self.out_dir / SHARD_MARKERS / f"{safe}.done"

    def shard_done(self, key: str) -> bool:
        """True if a previous (possibly crashed) launch finished this shard."""
        return self._marker(key).is_file()

    def mark_shard_done(self, key: str, payload: dict | None = None) -> None:
        """Mark a shard complete; call only after its outputs are fully written.

        `payload` (e.g. the shard's counts and skips) is kept in the marker, so a relaunch
        that does not redo this shard can still report it.
        """
        from stages.core.safefs import atomic_write

        marker = self._marker(key)
        marker.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(marker, json.dumps(payload or {}, default=str).encode())

    def shard_payload(self, key: str) -> dict:
        """The payload stored by `mark_shard_done` for a finished shard."""
        return json.loads(self._marker(key).read_text())

    def progress(self, iterable: Iterable | None = None, total: int | None = None, desc: str = "", **kwargs):
        """A tqdm progress bar on rank 0, a silent one elsewhere."""
        from tqdm.auto import tqdm

        return tqdm(iterable, total=total, desc=desc, disable=not self.is_main, dynamic_ncols=True, **kwargs)
