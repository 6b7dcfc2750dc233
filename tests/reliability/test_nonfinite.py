"""Non-finite training stops before anything is committed (issue 11).

`lr=inf` is refused by the config now; a finite but absurd learning rate still diverges, and
pretrain must then fail like qa does, not commit a NaN model with rc=0.
"""

from __future__ import annotations

import pytest

from stages.core.artifacts import Artifact
from stages.core.config import resolve
from stages.core.runner import execute
from stages.pretrain.config import PretrainConfig
from stages.pretrain.spec import STAGE
from tests.fixtures import write_markov_corpus


def test_pretrain_stops_on_a_non_finite_loss(tmp_path):
    graph, tokens = write_markov_corpus(tmp_path / "corpus", n_docs=60, vocab=64, mean_length=40)
    upstream = {"graph": Artifact.unmanaged(graph, "graph"), "pretokenize": Artifact.unmanaged(tokens, "pretokenize")}
    cfg = resolve(PretrainConfig, {"steps": "6", "packing.token_budget": "64", "packing.batch_size": "1", "val_every": "0",
                                   "checkpoint_every": "0", "lr": "1e30", "warmup_steps": "0", "grad_clip": "0"})
    with pytest.raises(FloatingPointError, match="lower lr"):
        execute(STAGE, cfg, tmp_path / "art", upstream)
    assert not [p for p in (tmp_path / "art" / "pretrain").iterdir() if not p.name.startswith(".")]
