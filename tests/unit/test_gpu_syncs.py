"""Host-device syncs in the pretrain hot loop, counted on the virtual accelerator
(`benchmarks.gpucheck.standins`): at most one per logging interval, whatever the mask.

Runs of 8 and 16 steps differ only in their 8 extra hot-loop steps (set-up, the final validation
and the final save are the same), so the difference of their counts is what 8 steps cost. The
preemption check rides on the same read (with several ranks, in the same all-reduce).
"""

import pytest

from benchmarks.gpucheck.standins import virtual_accelerator
from stages.core.artifacts import Artifact
from stages.core.config import resolve
from stages.core.context import StageContext
from stages.pretrain.config import PretrainConfig
from tests.fixtures import write_markov_corpus

LOG_EVERY = 4


@pytest.fixture(scope="module")
def upstream(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    graph, tokens = write_markov_corpus(root, n_docs=60, vocab=64, mean_length=60)
    return {"graph": Artifact.unmanaged(graph, "graph"), "pretokenize": Artifact.unmanaged(tokens, "pretokenize")}


def syncs_of_a_run(upstream, out, steps: int, mask: str, grad_accum: int) -> tuple[int, dict]:
    from stages.pretrain.train import run

    cfg = resolve(PretrainConfig, {"steps": str(steps), "packing.token_budget": "64", "packing.batch_size": "2", "val_every": "0",
                                   "val_batches": "1", "checkpoint_every": "0", "log_every": str(LOG_EVERY),
                                   "val_fraction": "0.15", "model.mask": mask, "grad_accum": str(grad_accum),
                                   "model.smear_keys": "true", "packing.num_workers": "0"})
    with virtual_accelerator() as mode:
        run(cfg, StageContext.standalone(out, upstream, "pretrain"))
    return mode.sync_count, dict(mode.syncs)


@pytest.mark.parametrize("mask, grad_accum", [("graph", 1), ("doc", 2), ("causal", 1)])
def test_the_hot_loop_reads_the_device_once_per_logging_interval(upstream, tmp_path, mask, grad_accum):
    short, short_sites = syncs_of_a_run(upstream, tmp_path / "short", 8, mask, grad_accum)
    long, long_sites = syncs_of_a_run(upstream, tmp_path / "long", 16, mask, grad_accum)
    per_step = {site: (long_sites.get(site, 0) - short_sites.get(site, 0)) / 8
                for site in long_sites if long_sites.get(site, 0) != short_sites.get(site, 0)}
    assert long - short <= 8 // LOG_EVERY, f"{long - short} syncs in 8 steps; per step by site: {per_step}"
