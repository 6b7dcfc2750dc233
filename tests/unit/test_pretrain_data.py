"""Held-out split, LR schedule, metrics log and loader exclusion of held-out documents."""

import itertools
import json

import numpy as np
import pytest

from stages.core.config import resolve
from stages.formats.graph import GraphIndex
from stages.formats.tokens import TokenStore
from stages.pretrain.config import PretrainConfig
from stages.pretrain.data import is_heldout, split_documents, train_loader, validation_batches
from stages.pretrain.metrics import MetricsLog, flops_per_token
from stages.pretrain.schedule import warmup_cosine
from tests.fixtures import write_markov_corpus


def test_heldout_split_is_a_pure_function_of_the_id():
    ids = np.arange(100_000)
    held = is_heldout(ids, 0.05)
    assert 0.045 < held.mean() < 0.055
    assert np.array_equal(held[500:600], is_heldout(np.arange(500, 600), 0.05))  # no dependence on the set
    assert not (held & ~is_heldout(ids, 0.10)).any()  # a larger fraction only adds documents


def test_warmup_then_cosine_to_floor():
    lrs = [warmup_cosine(s, 1.0, 4, 20, 0.1) for s in range(20)]
    assert lrs[:4] == [0.25, 0.5, 0.75, 1.0]
    assert all(a >= b for a, b in itertools.pairwise(lrs[3:]))
    assert lrs[-1] == pytest.approx(0.1, abs=0.01)


def test_metrics_log_drops_lines_after_the_resume_step(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text("".join(json.dumps({"step": s}) + "\n" for s in range(1, 8)))
    log = MetricsLog(path, enabled=True, resume_step=4)
    log.write({"step": 5})
    assert [json.loads(x)["step"] for x in path.read_text().splitlines()] == [1, 2, 3, 4, 5]
    assert flops_per_token(100, 2, 8, 16, 0.25) == 6 * 100 + 12 * 2 * 8 * 16 * 0.25


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    graph, tokens = write_markov_corpus(tmp_path_factory.mktemp("corpus"), n_docs=120, vocab=64, mean_length=30)
    return GraphIndex.open(graph), TokenStore.open(tokens)


def test_training_stream_never_contains_heldout_documents(corpus):
    graph, store = corpus
    cfg = resolve(PretrainConfig, {"packing.token_budget": "64", "packing.batch_size": "2", "val_fraction": "0.2"})
    split = split_documents(graph, store, cfg.val_fraction)
    assert len(split.heldout) and not set(split.heldout) & set(split.train)
    stream = iter(train_loader(graph, store, cfg, split, rank=0, world_size=1))
    seen = np.concatenate([next(stream)["doc_ids"].flatten() for _ in range(40)])
    seen = set(seen[seen >= 0].tolist())
    assert seen and not seen & set(split.heldout.tolist())
    val = validation_batches(graph, store, cfg, split, 0, 1, n_batches=2)
    val_ids = set(np.concatenate([b["doc_ids"].flatten() for b in val]).tolist()) - {-1}
    assert val_ids <= set(split.heldout.tolist())
    again = validation_batches(graph, store, cfg, split, 0, 1, n_batches=2)
    assert all(np.array_equal(a["tokens"], b["tokens"]) for a, b in zip(val, again))


def test_too_small_split_is_rejected(corpus):
    graph, store = corpus
    with pytest.raises(ValueError, match="val_fraction"):
        split_documents(graph, store, 1e-9)
