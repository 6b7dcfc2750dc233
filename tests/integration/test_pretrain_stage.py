"""The pretrain stage in-process on a generated learnable corpus, then its LM evaluation."""

import dataclasses
import json
import math

import pytest

from stages.core.artifacts import Artifact
from stages.core.config import resolve
from stages.core.context import StageContext
from stages.evaluate.spec import EvaluateConfig
from stages.pretrain.checkpoint import latest_checkpoint
from stages.pretrain.config import PretrainConfig
from stages.pretrain.evaluate import run_lm_eval
from stages.pretrain.train import run
from tests.fixtures import write_markov_corpus


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("pretrain")
    graph, tokens = write_markov_corpus(root, n_docs=150, vocab=128, mean_length=80)
    upstream = {"graph": Artifact.unmanaged(graph, "graph"), "pretokenize": Artifact.unmanaged(tokens, "pretokenize")}
    cfg = resolve(PretrainConfig, {"steps": "24", "packing.token_budget": "128", "packing.batch_size": "2", "val_every": "8",
                                   "checkpoint_every": "10", "log_every": "4", "val_fraction": "0.1"})
    ctx = StageContext.standalone(root / "out", upstream, "pretrain")
    metrics = run(cfg, ctx)
    return cfg, ctx, metrics, upstream


def test_training_lowers_the_loss_and_writes_its_outputs(trained):
    _cfg, ctx, metrics, _ = trained
    curve = [loss for _, loss in ctx.record["loss_curve"]]
    assert len(curve) == 24 and sum(curve[-4:]) / 4 < curve[0] - 0.5
    assert [step for step, _ in ctx.record["val_curve"]] == [8, 16, 24]
    assert metrics["val_loss"] < math.log(128) and metrics["tokens_per_s"] > 0
    assert metrics["tokens_seen"] == 24 * 2 * 128
    for name in ("model.safetensors", "model_config.json", "metrics.jsonl"):
        assert (ctx.out_dir / name).is_file()
    assert latest_checkpoint(ctx.out_dir).name == "step-00000024"  # keep_checkpoints=1 pruned step 10, 20
    lines = [json.loads(x) for x in (ctx.out_dir / "metrics.jsonl").read_text().splitlines()]
    assert {"loss", "lr", "tokens_per_s", "grad_norm"} <= set(lines[0]) and lines[-1]["final"]


def test_lm_evaluation_scores_three_contexts(trained, tmp_path):
    cfg, ctx, _, upstream = trained
    pretrain = Artifact.unmanaged(ctx.out_dir, "pretrain", dataclasses.asdict(cfg))
    eval_ctx = StageContext.standalone(tmp_path / "eval", {**upstream, "pretrain": pretrain}, "evaluate")
    metrics = run_lm_eval(resolve(EvaluateConfig, {"max_docs": "6", "generate_tokens": "8"}), eval_ctx)
    assert metrics["docs_scored"] >= 1 and metrics["eval_mask"] == "graph"
    for context in ("isolated", "graph", "random"):
        assert 1.0 < metrics[f"ppl_{context}"] < 128
    sample = eval_ctx.record["generation"]
    assert sample["with_graph_context"] and sample["without_context"]
    details = json.loads((eval_ctx.out_dir / "lm_eval.json").read_text())
    assert len(details["documents"]) == metrics["docs_scored"]
