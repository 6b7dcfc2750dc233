"""Packing configuration: the `pretrain.packing.*` component, also read by evaluate and the inspector."""

from __future__ import annotations

import dataclasses
import functools

from stages.core.config import knob

OVERFLOW_POLICIES = ("truncate", "skip", "split")
ORDER_MODES = ("as_traversed", "prefer_targets_first")
LAYOUTS = ("none", "bos_eos")
DIRECTIONS = ("out", "in", "both")


@dataclasses.dataclass
class PackingConfig:
    """How documents are chosen and laid out in fixed-length training sequences (packs).

    `strategy` is a registered strategy name (`random`, `random_walk`, `bfs`, `dfs`) or a
    weighted mix `composite(random_walk=0.7,random=0.3)` (also `composite:...`; on the command
    line use the parenthesised form, since the launcher reads a bare comma as a sweep).
    The seed of the start points and the traversal is not a packing key: it is the run's, and the
    sampler and loader take it as an argument.
    """

    strategy: str = knob("random_walk", "document traversal: random|random_walk|bfs|dfs|composite(name=w,...)")
    token_budget: int = knob(512, "pack length in tokens, decoration (BOS/EOS) tokens included", ge=2)
    doc_budget: int = knob(0, "cap on content tokens taken from one document (0 = no cap)", ge=0)
    overflow: str = knob("truncate", "document longer than the room left", choices=OVERFLOW_POLICIES)
    order_mode: str = knob("as_traversed", "document order inside a pack", choices=ORDER_MODES)
    layout: str = knob("bos_eos", "decoration around each document", choices=LAYOUTS)
    # Off by default: with absolute positions a linked context document is consistently "in the
    # past" of the document that reads it; restarting would overlap their positions.
    reset_positions: bool = knob(False, "position ids (RoPE) restart at 0 for each document")
    restart_prob: float = knob(0.15, "random_walk: probability of jumping back to the pack's root", ge=0.0, lt=1.0)
    walk_direction: str = knob("both", "graph edges followed by walks and searches", choices=DIRECTIONS)
    batch_size: int = knob(8, "packs per batch (per data-parallel rank)", ge=1)
    # The stream partition depends on the worker count, so it changes the data order: it is
    # part of the signature on purpose.
    num_workers: int = knob(0, "DataLoader worker processes per rank (0 = in-process)", ge=0)

    @functools.cached_property
    def strategy_mix(self):
        """`strategy` parsed (once per config): a `stages.packing.strategies.StrategyMix`."""
        from stages.packing.strategies import parse_strategy

        return parse_strategy(self.strategy)

    def validate(self) -> None:
        """Parse `strategy`; the pack must hold one decorated content token."""
        self.strategy_mix  # noqa: B018 - parsing is the check
        minimum = 3 if self.layout == "bos_eos" else 2
        if self.token_budget < minimum:
            raise ValueError(f"token_budget: {self.token_budget} is too small for layout={self.layout}; "
                             f"use at least {minimum}")
