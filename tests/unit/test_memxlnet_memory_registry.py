"""Memory variants: `none` keeps the initial memory; a new variant plugs in through the registry."""

import pytest
import torch
from torch import nn

from models.memxlnet import MemoryConfig, MemXLNetForQA, TimeStepMajorRunner
from models.memxlnet.memory import MEMORY_VARIANTS, register_memory

READ, WRITE = [100, 101], [102, 103]


def _steps(seed: int, change_first: bool = False) -> list[dict]:
    g = torch.Generator().manual_seed(seed)
    steps = []
    for t in range(3):
        words = torch.randint(10, 90, (2, 10), generator=g)
        if change_first and t == 0:
            words = torch.full_like(words, 42)
        ids = torch.cat([torch.tensor(READ).expand(2, -1), words, torch.full((2, 1), 4),
                         torch.tensor(WRITE).expand(2, -1), torch.full((2, 1), 3)], dim=1)
        steps.append({"doc_index": torch.arange(2), "input_ids": ids, "attention_mask": torch.ones(ids.shape),
                      "token_type_ids": torch.zeros(ids.shape, dtype=torch.long),
                      "p_mask": torch.zeros(ids.shape, dtype=torch.bool)})
    return steps


def _model(update: str) -> MemXLNetForQA:
    torch.manual_seed(0)
    cfg = MemoryConfig(num_tokens=2, update=update, read_token_ids=READ, write_token_ids=WRITE)
    return MemXLNetForQA.tiny(120, cfg).eval()


def test_none_leaves_memory_at_its_initial_value():
    model = _model("none")
    with torch.no_grad():
        outs = TimeStepMajorRunner(model)(_steps(0), 2)
        changed = TimeStepMajorRunner(model)(_steps(0, change_first=True), 2)
    initial = model.memory.initial.unsqueeze(0).expand(2, -1, -1)
    for out in outs:
        assert torch.equal(out["memory_info"]["memory_state"], initial)
    # Later segments therefore do not depend on earlier ones.
    assert torch.equal(outs[2]["start_logits"], changed[2]["start_logits"])


def test_replace_makes_segment_three_depend_on_segment_one():
    model = _model("replace")
    with torch.no_grad():
        outs = TimeStepMajorRunner(model)(_steps(0), 2)
        changed = TimeStepMajorRunner(model)(_steps(0, change_first=True), 2)
    assert not torch.allclose(outs[2]["start_logits"], changed[2]["start_logits"])


@pytest.fixture
def toy_variant():
    @register_memory("toy_mean")
    class MeanMemory(nn.Module):
        """Toy: the memory is the running mean of the write states (no parameters but the initial value)."""

        def __init__(self, cfg, d_model):
            super().__init__()
            self.initial = nn.Parameter(torch.zeros(cfg.num_tokens, d_model))

        def init_state(self, batch_size):
            return {"memory": self.initial.expand(batch_size, -1, -1), "count": torch.zeros(batch_size, 1, 1)}

        def read(self, state):
            return state["memory"], {}

        def write(self, state, written, read_info):
            count = state["count"] + 1
            memory = state["memory"] + (written - state["memory"]) / count
            return {"memory": memory, "count": count}, {"memory_state": memory}

    yield MeanMemory
    del MEMORY_VARIANTS["toy_mean"]


def test_a_toy_variant_plugs_in_through_the_registry(toy_variant, tmp_path):
    model = _model("toy_mean")
    assert isinstance(model.memory, toy_variant)
    with torch.no_grad():
        outs = TimeStepMajorRunner(model)(_steps(0), 2)
        changed = TimeStepMajorRunner(model)(_steps(0, change_first=True), 2)
    assert not torch.allclose(outs[2]["start_logits"], changed[2]["start_logits"])
    model.save_pretrained(tmp_path / "m")
    assert isinstance(MemXLNetForQA.from_pretrained(tmp_path / "m").memory, toy_variant)


def test_the_stage_accepts_a_registered_variant_and_rejects_unknown_ones(toy_variant):
    from stages.core.config import resolve
    from stages.qa.config import QAConfig

    assert resolve(QAConfig, {"memory.update": "toy_mean"}).memory.update == "toy_mean"
    with pytest.raises(ValueError, match="memory.update: 'lstm' unknown"):
        resolve(QAConfig, {"memory.update": "lstm"})


def test_registering_a_name_twice_fails():
    with pytest.raises(ValueError, match="registered twice"):
        register_memory("gated")(nn.Module)
