"""Deterministic, resumable batch loader over packs, per data-parallel rank.

Streams: rank r with W workers (W = max(1, num_workers)) owns streams r*W .. r*W+W-1 out of
world_size*W; each stream is a `PackSampler` with its own start points and RNG, so streams
are disjoint and deterministic for a seed (the run's, given to the loader). Batches are produced
inside the stream's process (a DataLoader worker, or this process when num_workers=0) and carry
the stream's state after that batch; the loader keeps the state of the last batch it handed out,
so `state_dict()` is exact even though workers prefetch ahead.

The torch DataLoader hands out worker batches round-robin starting at worker 0. On resume,
worker w therefore serves stream slot (w + next_slot) % W: the batch order continues
exactly where it stopped.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from stages.formats.graph import GraphIndex
from stages.formats.tokens import TokenStore
from stages.packing.collate import collate_packs
from stages.packing.config import PackingConfig
from stages.packing.sampler import PackSampler, allowed_mask

LOADER_STATE_VERSION = 1
_STATE_KEY = "_stream_state"


def _identity(batch):
    return batch


class _PackStreams(IterableDataset):
    """The rank's streams; each iterator (one per worker) runs one stream forever."""

    def __init__(self, loader: PackLoader, states: list, slot_offset: int):
        self.loader = loader
        self.states = states
        self.slot_offset = slot_offset

    def __iter__(self):
        loader = self.loader
        info = get_worker_info()
        worker = info.id if info is not None else 0
        slot = (worker + self.slot_offset) % loader.streams_per_rank
        sampler = loader.make_sampler(slot)
        if self.states[slot] is not None:
            sampler.load_state_dict(self.states[slot])
        cfg = loader.cfg
        while True:
            packs = [pack for pack in (sampler.next_pack() for _ in range(cfg.batch_size)) if pack]
            if not packs:
                return
            batch = collate_packs(packs, loader.store, loader.graph, cfg.token_budget, cfg.reset_positions)
            batch[_STATE_KEY] = (slot, sampler.state_dict())
            yield batch


class PackLoader:
    """Iterator of packed batches for one data-parallel rank.

    `for batch in loader` yields dicts (see `stages.packing.collate`); it is infinite unless
    `max_epochs` > 0, in which case each stream stops after that many epochs of start points
    (its last batch may hold fewer packs): e.g. `max_epochs=1` with the `random` strategy and
    the held-out ids as `allowed_doc_ids` packs every held-out document exactly once, for
    evaluation. Iterating again, or after `load_state_dict`, continues from the last batch
    handed out. `pin_memory` (for a CUDA consumer) pins every batch tensor in page-locked memory
    (the DataLoader does it in worker mode), so the trainer's `non_blocking` copies overlap.
    """

    def __init__(
        self,
        graph: GraphIndex,
        store: TokenStore,
        cfg: PackingConfig,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        allowed_doc_ids=None,
        max_epochs: int = 0,
        pin_memory: bool = False,
    ):
        cfg.validate()
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is outside [0, world_size={world_size})")
        self.graph, self.store, self.cfg, self.seed = graph, store, cfg, seed
        self.rank, self.world_size = rank, world_size
        self.max_epochs, self.pin_memory = max_epochs, pin_memory
        self.streams_per_rank = max(1, cfg.num_workers)
        self.num_streams = world_size * self.streams_per_rank
        self.mask = allowed_mask(graph, store, allowed_doc_ids)
        self.num_allowed = int(self.mask.sum())
        if self.num_allowed < self.num_streams:
            raise ValueError(
                f"{self.num_allowed} usable documents cannot feed {self.num_streams} streams "
                f"(world_size={world_size} x workers={self.streams_per_rank}); use fewer or a larger corpus"
            )
        # Build the walk's CSR (the `both` union is derived) once here, so forked workers share it.
        graph.csr(cfg.walk_direction)
        self._states: list[dict | None] = [None] * self.streams_per_rank
        self._next_slot = 0
        self.batches = 0

    @classmethod
    def from_paths(cls, graph_path, tokens_path, cfg: PackingConfig, seed: int, **kwargs) -> PackLoader:
        return cls(GraphIndex.open(graph_path), TokenStore.open(tokens_path), cfg, seed, **kwargs)

    def make_sampler(self, slot: int) -> PackSampler:
        """The sampler of this rank's stream `slot` (0 <= slot < streams_per_rank), fresh."""
        stream = self.rank * self.streams_per_rank + slot
        return PackSampler(self.graph, self.store, self.cfg, self.seed, stream, self.num_streams, self.mask,
                           self.max_epochs)

    def __iter__(self) -> Iterator[dict]:
        dataset = _PackStreams(self, copy.deepcopy(self._states), self._next_slot)
        if self.cfg.num_workers == 0:
            source = iter(dataset)
        else:
            source = iter(
                DataLoader(
                    dataset,
                    batch_size=None,
                    num_workers=self.cfg.num_workers,
                    collate_fn=_identity,
                    prefetch_factor=2,
                    pin_memory=self.pin_memory,
                )
            )
        for batch in source:
            if self.pin_memory and self.cfg.num_workers == 0:
                batch = {k: v.pin_memory() if torch.is_tensor(v) else v for k, v in batch.items()}
            slot, state = batch.pop(_STATE_KEY)
            self._states[slot] = state
            self._next_slot = (slot + 1) % self.streams_per_rank
            self.batches += 1
            yield batch

    def _fingerprint(self) -> dict:
        # What decides the data stream: the packing keys and the seed (the same keys a saved
        # state has always recorded, so states saved before the seed left the config still load).
        return {
            **dataclasses.asdict(self.cfg),
            "seed": self.seed,
            "max_epochs": self.max_epochs,
            "num_allowed": self.num_allowed,
            "allowed_sum": int(np.flatnonzero(self.mask).sum()),
        }

    def state_dict(self) -> dict:
        """Versioned state of this rank: every stream's position and RNG, and the next stream."""
        return {
            "version": LOADER_STATE_VERSION,
            "rank": self.rank,
            "world_size": self.world_size,
            "streams_per_rank": self.streams_per_rank,
            "next_slot": self._next_slot,
            "batches": self.batches,
            "config": self._fingerprint(),
            "streams": copy.deepcopy(self._states),
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore a state saved by the same rank of an identically configured run."""
        if state.get("version") != LOADER_STATE_VERSION:
            raise ValueError(
                f"loader state version {state.get('version')} is not {LOADER_STATE_VERSION}; "
                "it comes from another code version: start the data stream fresh"
            )
        if state["world_size"] != self.world_size:
            raise ValueError(
                f"loader state was saved with world_size={state['world_size']} but this run has "
                f"world_size={self.world_size}; resume with {state['world_size']} data-parallel ranks"
            )
        if state["rank"] != self.rank:
            raise ValueError(
                f"loader state belongs to rank {state['rank']}, not rank {self.rank}; load each rank's own state"
            )
        if state["streams_per_rank"] != self.streams_per_rank:
            raise ValueError(
                f"loader state was saved with {state['streams_per_rank']} streams per rank (num_workers) "
                f"but this run has {self.streams_per_rank}; resume with the same num_workers"
            )
        mine = self._fingerprint()
        changed = sorted(k for k in mine if state["config"].get(k) != mine[k])
        if changed:
            raise ValueError(
                f"loader state was saved with different packing settings ({', '.join(changed)}); resume with the same settings"
            )
        self._states = copy.deepcopy(state["streams"])
        self._next_slot = int(state["next_slot"])
        self.batches = int(state["batches"])

    def stats(self) -> dict:
        """Progress of this rank's streams as of the last batch handed out.

        `epochs` holds, per stream, completed epochs plus the used fraction of the current
        one (start points); `start_points_used` counts every start point taken so far.
        """
        epochs, packs, starts = [], 0, 0
        for slot, state in enumerate(self._states):
            stream = self.rank * self.streams_per_rank + slot
            per_epoch = len(range(stream, self.num_allowed, self.num_streams))
            if state is None:
                epochs.append(0.0)
                continue
            epochs.append(state["epoch"] + state["cursor"] / per_epoch)
            packs += state["packs"]
            starts += state["starts_used"]
        return {"batches": self.batches, "packs": packs, "start_points_used": starts, "epochs": epochs}
