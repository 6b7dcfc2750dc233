"""The qa stage resumes bit for bit after a preemption (SIGUSR2 flag -> checkpoint -> Preempted)."""

import json

import pytest
import torch
from safetensors.torch import load_file

from stages.core.config import resolve
from stages.core.context import StageContext
from stages.core.preemption import Preempted, PreemptionFlag
from stages.qa import train
from stages.qa.config import QAConfig

SMALL = {"sample.documents": 6, "sample.dev_documents": 2, "data.train_size": 24, "data.eval_size": 6, "curriculum.segments": [2], "max_n_segs": 2,
             "batch_size": 4, "curriculum.epochs": 2, "max_seq_length": 64, "doc_stride": 32, "max_query_length": 12,
             "tokenizer_vocab_size": 300, "memory.num_tokens": 2, "num_threads": 1, "curriculum.warmup_disable_global_softmax_epochs": 1}


class FlagAfter(PreemptionFlag):
    """Behaves as if SIGUSR2 arrived after ``steps`` step-boundary checks (stands in for the signal)."""

    def __init__(self, steps: int):
        super().__init__()
        self.checks, self.steps = 0, steps

    def is_set_anywhere(self) -> bool:
        self.checks += 1
        return self.checks > self.steps


def _ctx(tmp_path, name):
    out = tmp_path / name
    out.mkdir()
    return StageContext(stage="qa", signature=name, root=tmp_path, out_dir=out, upstream={})


def test_resume_after_preemption_is_exact(tmp_path, monkeypatch):
    cfg = resolve(QAConfig, SMALL)
    straight = train.run(cfg, _ctx(tmp_path, "straight"))

    ctx = _ctx(tmp_path, "preempted")
    monkeypatch.setattr(PreemptionFlag, "install", classmethod(lambda cls: FlagAfter(8)))
    with pytest.raises(Preempted) as stopped:
        train.run(cfg, ctx)
    assert stopped.value.step == 8  # mid second epoch: sampler epoch and position both matter
    checkpoint = ctx.out_dir / "phase_1_segs_2" / "checkpoint"
    assert (checkpoint / "state.json").is_file() and not list(checkpoint.glob("*.pt"))
    assert json.loads((checkpoint / "training_config.json").read_text())["batch_size"] == 4
    monkeypatch.setattr(PreemptionFlag, "install", classmethod(lambda cls: FlagAfter(10**9)))
    resumed = train.run(cfg, ctx)

    assert resumed == straight
    done = [json.loads((tmp_path / n / "phase_1_segs_2" / "phase_done.json").read_text()) for n in ("straight", "preempted")]
    assert done[0]["loss_curve"] == done[1]["loss_curve"] and len(done[0]["loss_curve"]) == 12
    weights = [load_file(str(tmp_path / n / "phase_1_segs_2" / "best_model" / "model.safetensors"))
               for n in ("straight", "preempted")]
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    assert not checkpoint.exists()  # removed once the stage finished
