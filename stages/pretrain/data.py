"""Data for pretraining: the held-out split by document id, and the train/validation loaders."""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import torch

from stages.formats.graph import GraphIndex
from stages.formats.tokens import TokenStore
from stages.packing.loader import PackLoader

_SPLIT_SALT = np.uint64(0x9E3779B97F4A7C15)
#: The validation stream's seed is the run's plus this, so it never replays the training stream.
VALIDATION_SEED_OFFSET = 1_000_003


def _mix64(values: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser: a fixed, well-spread hash of each uint64 value."""
    with np.errstate(over="ignore"):
        z = values.astype(np.uint64) + _SPLIT_SALT
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def is_heldout(doc_ids: np.ndarray, fraction: float) -> np.ndarray:
    """Deterministic held-out membership by document id alone (no seed, no corpus size).

    The same id is held out in every run with the same `fraction`, so the evaluate stage can
    recompute the split, and growing the corpus does not move existing documents.
    """
    threshold = np.uint64(min(int(fraction * 2.0**64), 2**64 - 1))
    return _mix64(np.asarray(doc_ids, dtype=np.int64)) < threshold


@dataclasses.dataclass(frozen=True)
class Split:
    """Document ids (with tokens and in the graph) used for training, held out for evaluation, and
    kept out of both (`buffer`: the link neighbours of held-out documents under `closed`)."""

    train: np.ndarray
    heldout: np.ndarray
    buffer: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    mode: str = "doc"
    hub_degree: int = 0

    def sizes(self) -> dict:
        """What goes into the manifest: how the split was made and how big each side is."""
        return {"heldout_mode": self.mode, "train_docs": len(self.train), "heldout_docs": len(self.heldout),
                "buffer_docs": len(self.buffer), "hub_degree": self.hub_degree}


SPLIT_MODES = ("closed", "doc")


def _degrees(graph: GraphIndex, n: int) -> np.ndarray:
    """Links per document, both directions (a link both ways counts twice; a cap, not a count)."""
    return (np.diff(graph.csr("out")[0])[:n] + np.diff(graph.csr("in")[0])[:n]).astype(np.int64)


def split_documents(graph: GraphIndex, store: TokenStore, fraction: float, mode: str = "closed",
                    hub_degree: int = 0) -> Split:
    """Split the usable documents; raises if either side would be empty.

    `doc`: each document is held out by its id alone (`is_heldout`). Its facts are repeated by
    the documents that link to it, which stay in training, so context cannot beat recall.
    `closed`: the same id-hashed candidates, but only those with at most `hub_degree` links
    (0: twice the median degree) are held out, and every document they link to or are linked from
    is kept out of training too (the buffer). No training document is adjacent to a held-out one.
    Hubs are never held out, so no held-out document drags a hub's neighbourhood out of training;
    a hub linked by a held-out document is itself buffered (one document).
    """
    if mode not in SPLIT_MODES:
        raise ValueError(f"heldout: {mode!r} is not one of {SPLIT_MODES}")
    n = min(graph.num_nodes, len(store.lengths))
    usable = np.flatnonzero(store.lengths[:n] > 0)
    held = is_heldout(usable, fraction)
    if mode == "doc":
        split = Split(train=usable[~held], heldout=usable[held], mode=mode)
    else:
        degree = _degrees(graph, n)
        cap = hub_degree or max(2, int(2 * np.median(degree[usable])) if len(usable) else 2)
        heldout = usable[held & (degree[usable] <= cap)]
        excluded = np.zeros(n, dtype=bool)
        excluded[heldout] = True
        for doc in heldout:
            linked = graph.neighbors(int(doc), "both")
            excluded[linked[linked < n]] = True
        buffer = np.setdiff1d(np.flatnonzero(excluded), heldout)
        buffer = buffer[store.lengths[buffer] > 0]
        split = Split(train=usable[~excluded[usable]], heldout=heldout, buffer=buffer, mode=mode, hub_degree=cap)
    if len(split.train) == 0 or len(split.heldout) == 0:
        raise ValueError(
            f"val_fraction={fraction} (heldout={mode}) leaves {len(split.train)} training and "
            f"{len(split.heldout)} held-out documents out of {len(usable)}; use a larger corpus or change val_fraction"
        )
    return split


def train_loader(graph: GraphIndex, store: TokenStore, cfg, split: Split, rank: int, world_size: int) -> PackLoader:
    """This rank's resumable training stream, seeded by the run's seed; held-out documents never enter it."""
    return PackLoader(graph, store, cfg.packing, cfg.seed, rank=rank, world_size=world_size,
                      allowed_doc_ids=split.train, pin_memory=torch.cuda.is_available())


def validation_batches(graph: GraphIndex, store: TokenStore, cfg, split: Split, rank: int,
                       world_size: int, n_batches: int) -> list[dict]:
    """A fixed list of held-out batches for this rank: the same at every validation.

    Packs are built with the training packing settings (so graph context is as in training) over
    held-out documents only, in-process, with a seed of their own.
    """
    packing = copy.copy(cfg.packing)  # a shallow copy keeps the parsed `strategy_mix`
    packing.num_workers = 0
    # With fewer held-out documents than ranks, ranks share streams: every rank must still run
    # the same number of forward passes (ZeRO-3 gathers parameters collectively).
    streams = min(world_size, len(split.heldout))
    loader = PackLoader(graph, store, packing, cfg.seed + VALIDATION_SEED_OFFSET, rank=rank % streams,
                        world_size=streams, allowed_doc_ids=split.heldout)
    stream = iter(loader)
    return [next(stream) for _ in range(n_batches)]


def to_device(batch: dict, device: torch.device) -> dict:
    """Move the batch's tensors to `device` (non-tensor entries such as doc_spans stay)."""
    return {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}


def tokens_in(batch: dict) -> int:
    """Positions processed by the model for this batch (B * T)."""
    return int(batch["tokens"].numel())
