"""MFU counts the attention FLOPs the mask really computes: its block density, one formula for
the metrics log and the GPU check (`stages.pretrain.metrics.flops_per_token`)."""

import json

import pytest
import torch

from models.graphlm import build_attention_mask
from stages.core.artifacts import Artifact
from stages.core.config import resolve
from stages.core.context import StageContext
from stages.pretrain.config import PretrainConfig
from stages.pretrain.metrics import flops_per_token
from tests.fixtures import random_packed_batch, write_markov_corpus


@pytest.mark.parametrize("mode", ["doc", "graph"])
def test_block_density_is_the_same_from_the_block_mask_and_the_dense_mask(mode):
    batch = random_packed_batch(2, 512, 50, max_docs=6, seed=4)
    args = (mode, batch["doc_index"], batch["edges"])
    flex = build_attention_mask(*args, impl="flex").block_density()
    dense = build_attention_mask(*args, impl="sdpa").block_density()
    causal = build_attention_mask("causal", batch["doc_index"]).block_density()
    assert float(flex) == pytest.approx(float(dense))
    assert float(causal) == pytest.approx(10 / 16)  # 4 x 4 blocks, the lower triangle and diagonal
    assert 0 < float(dense) < float(causal)  # a document mask skips blocks a causal one computes


def test_attention_flops_scale_with_the_density():
    full, half = flops_per_token(1000, 12, 768, 1024, 1.0), flops_per_token(1000, 12, 768, 1024, 0.5)
    assert full - half == pytest.approx(6 * 12 * 768 * 1024)


def test_the_metrics_log_mfu_uses_the_interval_s_density(tmp_path):
    from stages.pretrain.train import run

    graph, tokens = write_markov_corpus(tmp_path, n_docs=60, vocab=64, mean_length=60)
    upstream = {"graph": Artifact.unmanaged(graph, "graph"), "pretokenize": Artifact.unmanaged(tokens, "pretokenize")}
    cfg = resolve(PretrainConfig, {"steps": "4", "packing.token_budget": "256", "packing.batch_size": "2", "log_every": "2",
                                   "val_every": "0", "val_batches": "1", "val_fraction": "0.15", "model.mask": "doc",
                                   "peak_tflops": "1"})
    ctx = StageContext.standalone(tmp_path / "out", upstream, "pretrain")
    metrics = run(cfg, ctx)
    lines = [json.loads(x) for x in (ctx.out_dir / "metrics.jsonl").read_text().splitlines()]
    logged = [x for x in lines if "mfu" in x and not x.get("final")]
    assert [x["step"] for x in logged] == [2, 4]
    cfg_model = json.loads((ctx.out_dir / "model_config.json").read_text())
    for line in logged:
        assert 0 < line["attention_density"] < 1
        per_token = flops_per_token(metrics["params"], cfg_model["n_layers"], cfg_model["d_model"], 256,
                                    line["attention_density"])
        assert line["mfu"] == pytest.approx(line["tokens_per_s"] * per_token / 1e12, abs=1e-4)
    assert torch.isfinite(torch.tensor(metrics["mfu"]))
