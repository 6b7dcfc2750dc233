"""The pack sampler: turns strategy proposals into packs under the token budget.

One sampler is one stream (one data-parallel rank x DataLoader worker). It owns:
- start points: a per-epoch permutation of the allowed documents, shared by all streams,
  of which stream s takes every `num_streams`-th entry from s. Each allowed document is
  thus a start point exactly once per epoch, in exactly one stream;
- deduplication within a pack, the allowed-document filter, the budgets, the overflow
  policy, the order mode and the layout (BOS/EOS decoration);
- its RNG (Python `random.Random`: cheap per-draw, state is picklable) and position, which
  `state_dict()` captures between packs. The seed of the start points and the RNG is the run's,
  passed in (it is no packing key).
"""

from __future__ import annotations

import random

import numpy as np

from stages.formats.graph import GraphIndex
from stages.formats.tokens import TokenStore
from stages.packing.config import PackingConfig
from stages.packing.strategies import TraversalContext, make_strategy

#: Consecutive rejected proposals (duplicate, held out, too long) before jumping to a new start point.
MAX_REJECTIONS = 16
#: Rejections in one pack before giving up on filling it (then it is padded).
MAX_PACK_REJECTIONS = 4 * MAX_REJECTIONS
#: Under `skip`, documents too long for the room left before the pack is closed.
MAX_SIZE_REJECTIONS = 8
STATE_VERSION = 1

# A segment is (doc_id, offset, n_content, bos, eos, truncated): `n_content` tokens of the
# document from `offset`, preceded by BOS / followed by EOS when those flags are 1.
Segment = tuple[int, int, int, int, int, bool]


def allowed_mask(graph: GraphIndex, store: TokenStore, allowed_doc_ids=None) -> np.ndarray:
    """Documents that may enter packs: in the graph, with tokens, and in `allowed_doc_ids` if given."""
    n = graph.num_nodes
    if len(store.lengths) > n and np.any(store.lengths[n:] > 0):
        raise ValueError(
            f"token artifact has documents beyond the graph's {n} articles; use graph and tokens from the same extract"
        )
    mask = np.zeros(n, dtype=bool)
    m = min(n, len(store.lengths))
    mask[:m] = store.lengths[:m] > 0
    if allowed_doc_ids is not None:
        subset = np.zeros(n, dtype=bool)
        ids = np.asarray(allowed_doc_ids, dtype=np.int64)
        if len(ids) and (ids.min() < 0 or ids.max() >= n):
            raise ValueError(f"allowed_doc_ids: ids must lie in [0, {n}); got range [{ids.min()}, {ids.max()}]")
        subset[ids] = True
        mask &= subset
    return mask


def stream_seed(seed: int, stream: int, num_streams: int) -> int:
    return int(np.random.SeedSequence([seed, stream, num_streams]).generate_state(1, np.uint64)[0])


class PackSampler:
    """Produces packs (lists of `Segment`) for one stream; see the module docstring."""

    def __init__(
        self,
        graph: GraphIndex,
        store: TokenStore,
        cfg: PackingConfig,
        seed: int,
        stream: int = 0,
        num_streams: int = 1,
        mask: np.ndarray | None = None,
        max_epochs: int = 0,
    ):
        if not 0 <= stream < num_streams:
            raise ValueError(f"stream {stream} is outside [0, {num_streams})")
        self.graph, self.store, self.cfg, self.seed = graph, store, cfg, seed
        self.stream, self.num_streams = stream, num_streams
        self.max_epochs = max_epochs
        self.mask = allowed_mask(graph, store) if mask is None else mask
        self.allowed_ids = np.flatnonzero(self.mask)
        if len(self.allowed_ids) < num_streams:
            raise ValueError(
                f"{len(self.allowed_ids)} usable documents cannot feed {num_streams} streams; "
                "use fewer ranks/workers or a larger corpus"
            )
        self.rng = random.Random(stream_seed(seed, stream, num_streams))
        ctx = TraversalContext(graph, self.rng, cfg.walk_direction, cfg.restart_prob)
        self.strategy = make_strategy(cfg.strategy_mix, ctx)
        self.lengths = store.lengths
        self.bos_eos = cfg.layout == "bos_eos"
        self.epoch = 0
        self.cursor = 0
        self.pending: tuple[int, int] | None = None
        self.packs = 0
        self.starts_used = 0
        self._starts: np.ndarray | None = None

    # ---- start points -------------------------------------------------------------
    def epoch_starts(self, epoch: int) -> np.ndarray:
        """This stream's start points of `epoch`, in order."""
        order = np.random.default_rng([self.seed, epoch]).permutation(self.allowed_ids)
        return order[self.stream :: self.num_streams]

    def _next_start(self) -> int | None:
        """The next start point; None once `max_epochs` epochs are used up (0 = never)."""
        if self._starts is None:
            self._starts = self.epoch_starts(self.epoch)
        if self.cursor >= len(self._starts):
            if self.max_epochs and self.epoch + 1 >= self.max_epochs:
                return None
            self.epoch += 1
            self.cursor = 0
            self._starts = self.epoch_starts(self.epoch)
        doc = int(self._starts[self.cursor])
        self.cursor += 1
        self.starts_used += 1
        return doc

    @property
    def epoch_progress(self) -> float:
        """Fraction of this epoch's start points already used."""
        total = len(self.allowed_ids[self.stream :: self.num_streams])
        return self.cursor / total

    # ---- packing ------------------------------------------------------------------
    def _doc_extent(self, doc: int) -> tuple[int, bool]:
        """(usable length, capped) of a document under `doc_budget`."""
        length = int(self.lengths[doc])
        cap = self.cfg.doc_budget
        if cap and length > cap:
            return cap, True
        return length, False

    def next_pack(self) -> list[Segment]:
        """Build the next pack of this stream; [] when `max_epochs` is reached."""
        cfg = self.cfg
        room = cfg.token_budget
        bos_eos = self.bos_eos
        # A new document needs at least one content token (plus BOS with bos_eos).
        min_room = 2 if bos_eos else 1
        segments: list[Segment] = []
        pinned_first = False
        if self.pending is not None:
            root, offset = self.pending
            self.pending = None
            pinned_first = offset > 0
        else:
            root, offset = self._next_start(), 0
            if root is None:
                return segments
        room = self._place(root, offset, room, segments, force=True)
        in_pack = {root}
        strategy, mask = self.strategy, self.mask
        strategy.start(root)
        streak = rejections = size_rejections = 0
        while room >= min_room and self.pending is None:
            from_start = False
            if streak >= MAX_REJECTIONS:
                candidate = None
                streak = 0
            else:
                candidate = strategy.propose()
            if candidate is None:
                candidate, from_start = self._next_start(), True
                if candidate is None:
                    break
                strategy.start(candidate)
            if candidate in in_pack or not mask[candidate]:
                streak += 1
                rejections += 1
                if rejections >= MAX_PACK_REJECTIONS:
                    break
                continue
            new_room = self._place(candidate, 0, room, segments, force=False)
            if new_room is None:  # `skip`: does not fit
                if from_start:
                    self.pending = (candidate, 0)  # a start point is never lost: it opens the next pack
                    break
                streak += 1
                rejections += 1
                size_rejections += 1
                if size_rejections >= MAX_SIZE_REJECTIONS or rejections >= MAX_PACK_REJECTIONS:
                    break
                continue
            room = new_room
            in_pack.add(candidate)
            streak = 0
        # A split document (pending with offset > 0) continues in the next pack: keep it last.
        split_last = self.pending is not None and self.pending[1] > 0
        if cfg.order_mode == "prefer_targets_first" and len(segments) > 1:
            segments = self._targets_first(segments, pinned_first, split_last)
        self.packs += 1
        return segments

    def _place(self, doc: int, offset: int, room: int, segments: list, force: bool) -> int | None:
        """Append `doc` from `offset`; returns the room left, or None if `skip` rejects it.
        `force` (the pack's first document) truncates instead of skipping."""
        length, capped = self._doc_extent(doc)
        remaining = length - offset
        bos = 1 if self.bos_eos and offset == 0 else 0
        eos = 1 if self.bos_eos and not capped else 0
        need = bos + remaining + eos
        if need <= room:
            segments.append((doc, offset, remaining, bos, eos, capped or offset > 0))
            return room - need
        overflow = self.cfg.overflow
        if overflow == "skip" and not force:
            return None
        content = room - bos
        if content < 1:
            return 0
        segments.append((doc, offset, content, bos, 0, True))
        if overflow == "split":
            self.pending = (doc, offset + content)
        return 0

    def _targets_first(self, segments: list[Segment], pinned_first: bool, split_last: bool) -> list[Segment]:
        """Stable reorder so that a link target precedes the documents linking to it.

        Repeatedly takes the earliest (in traversal order) document whose in-pack targets are
        all placed; on a cycle, the earliest remaining one. A split continuation stays first
        and a document continued in the next pack stays last.
        """
        head = segments[:1] if pinned_first else []
        tail = segments[-1:] if split_last else []
        body = segments[len(head) : len(segments) - len(tail)]
        if len(body) < 2:
            return segments
        docs = np.array([s[0] for s in body], dtype=np.int64)
        src, dst = self.graph.edges_within(np.zeros(len(docs), dtype=np.int64), docs)
        targets: list[set[int]] = [set() for _ in body]
        for s, d in zip(src.tolist(), dst.tolist()):
            targets[s].add(d)
        remaining = list(range(len(body)))
        placed: set[int] = set()
        order = []
        while remaining:
            pick = 0
            for k, i in enumerate(remaining):
                if targets[i] <= placed:
                    pick = k
                    break
            i = remaining.pop(pick)
            placed.add(i)
            order.append(i)
        return head + [body[i] for i in order] + tail

    # ---- state --------------------------------------------------------------------
    def state_dict(self) -> dict:
        """Position and RNG of this stream (JSON-serialisable)."""
        version, internal, gauss = self.rng.getstate()
        return {
            "version": STATE_VERSION,
            "stream": self.stream,
            "num_streams": self.num_streams,
            "epoch": self.epoch,
            "cursor": self.cursor,
            "pending": list(self.pending) if self.pending is not None else None,
            "packs": self.packs,
            "starts_used": self.starts_used,
            "rng": [version, list(internal), gauss],
        }

    def load_state_dict(self, state: dict) -> None:
        if state.get("version") != STATE_VERSION:
            raise ValueError(
                f"sampler state version {state.get('version')} != {STATE_VERSION}; start the data stream fresh"
            )
        if (state["stream"], state["num_streams"]) != (self.stream, self.num_streams):
            raise ValueError(
                f"sampler state is for stream {state['stream']}/{state['num_streams']}, "
                f"not {self.stream}/{self.num_streams}"
            )
        self.epoch, self.cursor = int(state["epoch"]), int(state["cursor"])
        self.pending = tuple(state["pending"]) if state["pending"] is not None else None
        self.packs, self.starts_used = int(state["packs"]), int(state["starts_used"])
        version, internal, gauss = state["rng"]
        self.rng.setstate((version, tuple(internal), gauss))
        self._starts = None
