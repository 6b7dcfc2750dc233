"""Job groups run in dependency order, whatever the order of the sweep points."""

from jobs.plan import Node, Plan


def _node(stage: str, seed: int, cached: bool = False, upstream: str | None = None) -> Node:
    direct = (upstream,) if upstream else ()
    node = Node(stage=stage, cfg=None, signature=f"{stage[0]}{seed}", direct=direct,
                upstream={upstream: f"{upstream[0]}{seed}"} if upstream else {}, requested=True)
    node.existing = object() if cached else None
    return node


def test_a_downstream_group_waits_for_every_upstream_it_runs_even_when_its_first_point_is_cached():
    """Seed 1's training was cached, so its evaluation is the first node to run: listed in that
    order, the evaluation array would start before seed 2's training (it did, and failed)."""
    nodes = [_node("qa", 1, cached=True), _node("evaluate", 1, upstream="qa"),
             _node("qa", 2), _node("evaluate", 2, upstream="qa")]
    groups = Plan(nodes=nodes, sweep_keys=[], force=False).groups()
    assert [[n.key for n in group] for group in groups] == [["qa/q2"], ["evaluate/e1", "evaluate/e2"]]
