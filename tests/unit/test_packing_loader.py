"""Loader: determinism, disjoint streams, state checks, and exact resume in a fresh process."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from stages.formats.generators import write_synthetic
from stages.formats.tokens import TokenStore
from stages.packing.collate import collate_packs
from stages.packing.config import PackingConfig
from stages.packing.loader import PackLoader
from stages.packing.stats import PackStats

REPO = Path(__file__).resolve().parents[2]
CFG = {
    "token_budget": 256,
    "batch_size": 2,
    "strategy": "composite:random_walk=0.6,dfs=0.2,random=0.2",
    "overflow": "split",
}


@pytest.fixture(scope="module")
def art(tmp_path_factory):
    return write_synthetic(tmp_path_factory.mktemp("c"), n_docs=400, n_communities=8, mean_length=90, seed=5)


def loader(art, rank=0, world_size=1, seed=0, **overrides):
    cfg = PackingConfig(**{**CFG, **overrides})
    return PackLoader.from_paths(art.graph, art.tokens, cfg, seed, rank=rank, world_size=world_size)


def take(source, n):
    it = iter(source)
    return [next(it) for _ in range(n)]


def assert_batches_equal(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x.keys() == y.keys()
        for key in x:
            if isinstance(x[key], torch.Tensor):
                assert torch.equal(x[key], y[key]), key
            else:
                assert x[key] == y[key], key


def test_same_seed_same_batches_other_seed_differs(art):
    assert_batches_equal(take(loader(art), 4), take(loader(art), 4))
    other = take(loader(art, seed=1), 1)[0]
    assert not torch.equal(other["tokens"], take(loader(art), 1)[0]["tokens"])


def test_iterating_again_continues(art):
    straight = take(loader(art), 5)
    again = loader(art)
    assert_batches_equal(take(again, 2) + take(again, 3), straight)


def test_workers_serve_their_streams_round_robin(art):
    ref = loader(art, num_workers=2)
    samplers = [ref.make_sampler(slot) for slot in range(2)]
    expected = []
    for k in range(4):
        sampler = samplers[k % 2]
        packs = [sampler.next_pack() for _ in range(CFG["batch_size"])]
        expected.append(collate_packs(packs, ref.store, ref.graph, CFG["token_budget"], False))
    assert_batches_equal(take(loader(art, num_workers=2), 4), expected)


def test_streams_are_disjoint_across_ranks_and_workers(art):
    starts = []
    for rank in range(2):
        ranked = loader(art, rank=rank, world_size=2, num_workers=2)
        starts += [set(ranked.make_sampler(slot).epoch_starts(0).tolist()) for slot in range(2)]
    assert sum(len(s) for s in starts) == len(set().union(*starts)) == loader(art).num_allowed
    a, b = take(loader(art, rank=0, world_size=2), 1)[0], take(loader(art, rank=1, world_size=2), 1)[0]
    assert not torch.equal(a["tokens"], b["tokens"])


def test_allowed_doc_ids_exclude_held_out_documents(art):
    cfg = PackingConfig(**CFG)
    train = np.arange(1, 400, 2)
    held = PackLoader.from_paths(art.graph, art.tokens, cfg, 0, allowed_doc_ids=train)
    for batch in take(held, 10):
        ids = batch["doc_ids"][batch["doc_ids"] >= 0]
        assert (ids % 2 == 1).all()


def test_state_refuses_mismatches(art):
    source = loader(art, rank=0, world_size=2)
    take(source, 2)
    state = source.state_dict()
    with pytest.raises(ValueError, match="world_size=2 but this run has world_size=4"):
        loader(art, rank=0, world_size=4).load_state_dict(state)
    with pytest.raises(ValueError, match="belongs to rank 0, not rank 1"):
        loader(art, rank=1, world_size=2).load_state_dict(state)
    with pytest.raises(ValueError, match="same num_workers"):
        loader(art, rank=0, world_size=2, num_workers=2).load_state_dict(state)
    with pytest.raises(ValueError, match=r"different packing settings \(seed\)"):
        loader(art, rank=0, world_size=2, seed=9).load_state_dict(state)
    with pytest.raises(ValueError, match="version 0"):
        loader(art, rank=0, world_size=2).load_state_dict({**state, "version": 0})


def test_in_process_resume(art):
    straight = take(loader(art), 7)
    first = loader(art)
    take(first, 3)
    resumed = loader(art)
    resumed.load_state_dict(first.state_dict())
    assert_batches_equal(take(resumed, 4), straight[3:])


@pytest.mark.parametrize(("strategy", "low"), [("random_walk", 0.5), ("dfs", 0.5), ("bfs", 0.25)])
def test_stats_fill_and_linked_fraction(art, strategy, low):
    for name, lo, hi in (("random", 0.0, 0.05), (strategy, low, 1.0)):
        source = loader(art, strategy=name, overflow="truncate", batch_size=8)
        stats = PackStats(source.num_allowed)
        for batch in take(source, 8):
            stats.update(batch)
        summary = stats.summary()
        assert summary["fill_rate"] >= 0.99
        assert lo <= summary["adjacent_linked_fraction"] <= hi


RESUME_SCRIPT = """
import sys, torch
from stages.packing.config import PackingConfig
from stages.packing.loader import PackLoader
graph, tokens, out, phase, k, m = sys.argv[1:7]
k, m = int(k), int(m)
cfg = PackingConfig(**eval(sys.argv[7]))
def make(rank):
    return PackLoader.from_paths(graph, tokens, cfg, 0, rank=rank, world_size=2)
def take(source, n):
    it = iter(source)
    return [next(it) for _ in range(n)]
result = {}
for rank in range(2):
    if phase == "first":
        straight = take(make(rank), k + m)
        partial = make(rank)
        take(partial, k)
        result[rank] = {"straight": straight, "state": partial.state_dict()}
    else:
        saved = torch.load(out.replace("second", "first"), weights_only=False)
        resumed = make(rank)
        resumed.load_state_dict(saved[rank]["state"])
        result[rank] = {"resumed": take(resumed, m)}
torch.save(result, out)
"""


def test_exact_resume_in_a_fresh_process_two_ranks_two_workers(art, tmp_path):
    cfg = repr({**CFG, "num_workers": 2})
    k, m = 3, 4  # an odd K: the resumed run must start with the second worker's stream
    outputs = {}
    for phase in ("first", "second"):
        out = tmp_path / f"{phase}.pt"
        cmd = [
            sys.executable,
            "-c",
            RESUME_SCRIPT,
            str(art.graph),
            str(art.tokens),
            str(out),
            phase,
            str(k),
            str(m),
            cfg,
        ]
        proc = subprocess.run(
            cmd,
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            capture_output=True,
            check=False,
            text=True,
            timeout=240,
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        outputs[phase] = torch.load(out, weights_only=False)
    for rank in range(2):
        straight = outputs["first"][rank]["straight"]
        assert_batches_equal(outputs["second"][rank]["resumed"], straight[k:])
        assert outputs["first"][rank]["state"]["next_slot"] == 1
    assert not torch.equal(outputs["first"][0]["straight"][0]["tokens"], outputs["first"][1]["straight"][0]["tokens"])


@pytest.mark.parametrize("num_workers", [0, 2])
def test_one_epoch_packs_each_held_out_document_exactly_once(art, num_workers):
    held_out = np.arange(0, 400, 4)
    seen = []
    for rank in range(2):
        cfg = PackingConfig(strategy="random", token_budget=256, batch_size=3, num_workers=num_workers)
        source = PackLoader.from_paths(
            art.graph, art.tokens, cfg, 0, rank=rank, world_size=2, allowed_doc_ids=held_out, max_epochs=1
        )
        for batch in source:
            seen += [span[2] for spans in batch["doc_spans"] for span in spans]
    lengths = TokenStore.open(art.tokens).lengths
    assert sorted(seen) == [d for d in held_out.tolist() if lengths[d] > 0]


def test_stats_report_epoch_progress(art):
    source = loader(art, strategy="random", token_budget=512, batch_size=4)
    take(source, 3)
    stats = source.stats()
    assert stats["batches"] == 3 and stats["packs"] == 12
    (epoch,) = stats["epochs"]
    assert stats["start_points_used"] / source.num_allowed == pytest.approx(epoch)
    assert 0 < epoch < 1
