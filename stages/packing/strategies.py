"""Traversal strategies: which document goes into the pack next.

A strategy only proposes documents. The sampler owns the budgets, deduplication, the
allowed-document filter and the start points: when a strategy returns None ("no move"),
the sampler takes the next start point of its per-epoch permutation and calls
`start(new_root)`. A strategy may propose a document that the sampler then rejects (already
in the pack, held out, too long under `skip`); it keeps moving from there.

Adding a strategy = one class with `start`/`propose` plus `@register_strategy("name")`.
"""

from __future__ import annotations

import dataclasses
import random
from collections import deque
from collections.abc import Callable
from typing import Protocol

from stages.formats.graph import GraphIndex


@dataclasses.dataclass
class TraversalContext:
    """What a strategy may use: the graph, the stream's RNG and the traversal knobs."""

    graph: GraphIndex
    rng: random.Random
    direction: str = "both"
    restart_prob: float = 0.15


class Strategy(Protocol):
    def start(self, root: int) -> None:
        """Begin a traversal at `root` (a new pack, or a jump within one); forget prior state."""

    def propose(self) -> int | None:
        """The next candidate document id, or None when this strategy has no move."""


STRATEGIES: dict[str, Callable[[TraversalContext], Strategy]] = {}


def register_strategy(name: str):
    def decorate(cls):
        if name in STRATEGIES:
            raise ValueError(f"strategy {name!r} is registered twice")
        STRATEGIES[name] = cls
        return cls

    return decorate


@register_strategy("random")
class RandomStrategy:
    """Ignores the graph: every document is the next start point of the shuffled epoch order,
    i.e. classic shuffled concatenation. The baseline."""

    def __init__(self, ctx: TraversalContext):
        pass

    def start(self, root: int) -> None:
        pass

    def propose(self) -> int | None:
        return None


@register_strategy("random_walk")
class RandomWalkStrategy:
    """Random walk along `direction` edges; with `restart_prob` it jumps back to the root,
    and a dead end also returns to the root. A root without neighbours ends the walk."""

    def __init__(self, ctx: TraversalContext):
        self.rng = ctx.rng
        self.restart_prob = ctx.restart_prob
        self.indptr, self.indices = ctx.graph.csr(ctx.direction)
        self.root = self.node = -1

    def start(self, root: int) -> None:
        self.root = self.node = root

    def propose(self) -> int | None:
        node = self.node
        if self.rng.random() < self.restart_prob:
            node = self.root
        lo, hi = int(self.indptr[node]), int(self.indptr[node + 1])
        if lo == hi:
            if node == self.root:
                return None
            node = self.root
            lo, hi = int(self.indptr[node]), int(self.indptr[node + 1])
            if lo == hi:
                return None
        nxt = int(self.indices[lo + self.rng.randrange(hi - lo)])
        self.node = nxt
        return nxt


class _SearchBase:
    """Shared neighbour scanning for BFS/DFS: each expanded node's neighbours are visited in
    sorted order rotated by a random offset (cheap randomisation, no O(degree) shuffle)."""

    def __init__(self, ctx: TraversalContext):
        self.rng = ctx.rng
        self.indptr, self.indices = ctx.graph.csr(ctx.direction)
        self.visited: set[int] = set()

    def _frame(self, node: int) -> list[int] | None:
        lo, hi = int(self.indptr[node]), int(self.indptr[node + 1])
        if lo == hi:
            return None
        degree = hi - lo
        return [lo, degree, self.rng.randrange(degree), 0]

    def _next_unvisited(self, frame: list[int]) -> int | None:
        lo, degree, rotation, k = frame
        indices, visited = self.indices, self.visited
        while k < degree:
            node = int(indices[lo + (rotation + k) % degree])
            k += 1
            if node not in visited:
                frame[3] = k
                visited.add(node)
                return node
        frame[3] = k
        return None


@register_strategy("bfs")
class BreadthFirstStrategy(_SearchBase):
    """Breadth-first search from the root; nodes visited once per traversal."""

    def start(self, root: int) -> None:
        self.visited = {root}
        self.queue = deque([root])
        self.frame: list[int] | None = None

    def propose(self) -> int | None:
        while True:
            if self.frame is None:
                if not self.queue:
                    return None
                self.frame = self._frame(self.queue.popleft())
                continue
            node = self._next_unvisited(self.frame)
            if node is not None:
                self.queue.append(node)
                return node
            self.frame = None


@register_strategy("dfs")
class DepthFirstStrategy(_SearchBase):
    """Depth-first search from the root; nodes visited once per traversal."""

    def start(self, root: int) -> None:
        self.visited = {root}
        frame = self._frame(root)
        self.stack = [frame] if frame else []

    def propose(self) -> int | None:
        stack = self.stack
        while stack:
            node = self._next_unvisited(stack[-1])
            if node is None:
                stack.pop()
                continue
            frame = self._frame(node)
            if frame is not None:
                stack.append(frame)
            return node
        return None


class CompositeStrategy:
    """Weighted mix: each proposal comes from a part drawn by weight, so a pack can switch
    strategy midway. All parts restart at the same root; a part with no move (e.g. `random`)
    makes the sampler jump to a new start point."""

    def __init__(self, parts: list[tuple[Strategy, float]], rng: random.Random):
        total = sum(w for _, w in parts)
        self.parts = [p for p, _ in parts]
        self.cumulative = []
        acc = 0.0
        for _, weight in parts:
            acc += weight / total
            self.cumulative.append(acc)
        self.rng = rng

    def start(self, root: int) -> None:
        for part in self.parts:
            part.start(root)

    def propose(self) -> int | None:
        draw = self.rng.random()
        for part, edge in zip(self.parts, self.cumulative):
            if draw < edge:
                return part.propose()
        return self.parts[-1].propose()


@dataclasses.dataclass(frozen=True)
class StrategyMix:
    """A parsed `strategy=` value: `parts` [(name, weight)], and whether it was written as a
    composite (a one-part composite still draws its part at random, so it is kept apart)."""

    parts: tuple[tuple[str, float], ...]
    composite: bool


def parse_strategy(text: str) -> StrategyMix:
    """The one parser of `strategy=` values: `name`, or `composite(a=0.7,b=0.3)` /
    `composite:a=0.7,b=0.3` (a weight defaults to 1). On the command line use the parenthesised
    form: the launcher reads a bare comma as a sweep. `PackingConfig.strategy_mix` holds the result."""
    known = ", ".join(sorted(STRATEGIES))
    text = text.strip()
    if not text.startswith("composite"):
        if text not in STRATEGIES:
            raise ValueError(f"strategy: unknown {text!r}; use one of {known} or composite(name=weight,...)")
        return StrategyMix(((text, 1.0),), composite=False)
    rest = text[len("composite") :].strip()
    if rest.startswith("(") and rest.endswith(")"):
        body = rest[1:-1]
    elif rest.startswith(":"):
        body = rest[1:]
    else:
        body = ""
    if not body.strip():
        raise ValueError(f"strategy: {text!r} names no parts; write e.g. composite(random_walk=0.7,random=0.3)")
    parts = []
    for item in body.split(","):
        name, _, weight = item.strip().partition("=")
        name = name.strip()
        if name not in STRATEGIES:
            raise ValueError(f"strategy: unknown part {name!r} in {text!r}; use one of {known}")
        try:
            value = float(weight) if weight.strip() else 1.0
        except ValueError:
            raise ValueError(f"strategy: weight {weight!r} of {name!r} is not a number") from None
        if value <= 0:
            raise ValueError(f"strategy: weight of {name!r} must be > 0, got {value}")
        parts.append((name, value))
    return StrategyMix(tuple(parts), composite=True)


def make_strategy(mix: StrategyMix, ctx: TraversalContext) -> Strategy:
    """Build the (parsed) strategy over a shared context."""
    if not mix.composite:
        return STRATEGIES[mix.parts[0][0]](ctx)
    return CompositeStrategy([(STRATEGIES[name](ctx), weight) for name, weight in mix.parts], ctx.rng)
