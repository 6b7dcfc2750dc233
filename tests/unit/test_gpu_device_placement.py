"""Device placement on a virtual accelerator: every path that feeds a model puts its tensors on the
model's device (`benchmarks.gpucheck.standins`; a tensor left on the host raises, as on CUDA)."""

import dataclasses

import numpy as np
import pytest

from benchmarks.gpucheck.standins import ACCELERATOR, virtual_accelerator
from stages.core.artifacts import Artifact
from stages.core.config import resolve
from stages.core.context import StageContext
from stages.pretrain.config import PretrainConfig
from tests.fixtures import write_markov_corpus

QA_SMALL = {"sample.documents": 6, "sample.dev_documents": 2, "data.train_size": 12, "data.eval_size": 4,
            "curriculum.segments": [2], "max_n_segs": 2, "batch_size": 4, "curriculum.epochs": 1,
            "max_seq_length": 64, "doc_stride": 32, "max_query_length": 12, "tokenizer_vocab_size": 300,
            "memory.num_tokens": 2, "num_threads": 1}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    graph, tokens = write_markov_corpus(root, n_docs=60, vocab=64, mean_length=60)
    return root, {"graph": Artifact.unmanaged(graph, "graph"), "pretokenize": Artifact.unmanaged(tokens, "pretokenize")}


@pytest.mark.parametrize("smear_keys", ["false", "true"])
def test_pretrain_stage_and_its_evaluation_on_an_accelerator(corpus, tmp_path, smear_keys):
    from stages.evaluate.spec import EvaluateConfig
    from stages.pretrain.evaluate import run_lm_eval
    from stages.pretrain.train import run

    _, upstream = corpus
    cfg = resolve(PretrainConfig, {"steps": "3", "packing.token_budget": "64", "packing.batch_size": "2", "val_every": "2",
                                   "val_batches": "1", "checkpoint_every": "2", "log_every": "2",
                                   "val_fraction": "0.15", "model.smear_keys": smear_keys, "packing.num_workers": "0"})
    ctx = StageContext.standalone(tmp_path / "out", upstream, "pretrain")
    with virtual_accelerator():
        metrics = run(cfg, ctx)
        assert np.isfinite(metrics["val_loss"])
        pretrain = Artifact.unmanaged(ctx.out_dir, "pretrain", dataclasses.asdict(cfg))
        eval_ctx = StageContext.standalone(tmp_path / "eval", {**upstream, "pretrain": pretrain}, "evaluate")
        scores = run_lm_eval(resolve(EvaluateConfig, {"max_docs": "3", "generate_tokens": "4"}), eval_ctx)
    assert np.isfinite(scores["ppl_graph"])


@pytest.mark.parametrize("precision", ["auto", "bf16"])
def test_qa_training_its_epoch_evaluation_and_the_evaluate_stage_on_an_accelerator(tmp_path, precision):
    from stages.evaluate.spec import EvaluateConfig
    from stages.qa import train
    from stages.qa.config import QAConfig
    from stages.qa.evaluate import run_qa_eval

    cfg = resolve(QAConfig, {**QA_SMALL, "precision": precision})
    out = tmp_path / "qa"
    out.mkdir()
    with virtual_accelerator():
        metrics = train.run(cfg, StageContext(stage="qa", signature="x", root=tmp_path, out_dir=out, upstream={}))
        qa = Artifact.unmanaged(out, "qa", dataclasses.asdict(cfg))
        eval_ctx = StageContext.standalone(tmp_path / "eval", {"qa": qa}, "evaluate")
        scores = run_qa_eval(resolve(EvaluateConfig, {"task": "qa"}), eval_ctx)
    assert np.isfinite(metrics["loss_end"]) and "dev_f1" in metrics and "f1" in scores


def test_qa_prediction_reads_host_features_into_an_accelerator_model(tmp_path):
    from stages.qa import components, train
    from stages.qa.config import QAConfig
    from stages.qa.predict import predict

    cfg = resolve(QAConfig, QA_SMALL)
    ctx = StageContext(stage="qa", signature="x", root=tmp_path, out_dir=tmp_path, upstream={})
    train_split, dev = components.load_splits(cfg, ctx.cache_dir)
    data = train._phase_data(cfg, train_split, dev, ctx, first=0)
    model = components.build_model(cfg, data["tokenizer"], data["read_ids"], data["write_ids"])
    with virtual_accelerator():
        model.to(ACCELERATOR)
        preds, _ = predict(model, data["phase_stores"][0][1], 2, 2, 10, 0.0)
    assert len(preds) == len(data["phase_stores"][0][1])
