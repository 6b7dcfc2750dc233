"""MemXLNetForQA: memory flow across segments, save/load, differentiable memory."""

import pytest
import torch

from models.memxlnet import MemoryConfig, MemXLNetForQA, TimeStepMajorRunner

VOCAB = 120
READ, WRITE = [100, 101], [102, 103]
CLS, SEP, PAD = 3, 4, 5


def _memory(n_tokens: int, **kwargs) -> MemoryConfig:
    return MemoryConfig(num_tokens=n_tokens, read_token_ids=READ[:n_tokens], write_token_ids=WRITE[:n_tokens],
                        **kwargs)


def _segment(generator: torch.Generator, batch: int, length: int, n_tokens: int) -> dict:
    """[READ..] words <sep> [WRITE..] <cls>, as the features lay it out."""
    words = torch.randint(10, 90, (batch, length), generator=generator)
    parts = [torch.tensor(READ[:n_tokens], dtype=torch.long).expand(batch, -1), words, torch.full((batch, 1), SEP),
             torch.tensor(WRITE[:n_tokens], dtype=torch.long).expand(batch, -1), torch.full((batch, 1), CLS)]
    ids = torch.cat(parts, dim=1)
    return {
        "doc_index": torch.arange(batch),
        "input_ids": ids,
        "attention_mask": torch.ones(ids.shape),
        "token_type_ids": torch.zeros(ids.shape, dtype=torch.long),
        "p_mask": torch.zeros(ids.shape, dtype=torch.bool),
    }


def _steps(n_tokens: int, seed: int = 0) -> list[dict]:
    g = torch.Generator().manual_seed(seed)
    return [_segment(g, 2, 12, n_tokens) for _ in range(3)]


def _segment_one_changed(steps: list[dict]) -> list[dict]:
    """The same steps with context words of segment 1 (only) replaced."""
    changed = [dict(s) for s in steps]
    changed[0]["input_ids"] = steps[0]["input_ids"].clone()
    changed[0]["input_ids"][:, 4:8] = 42
    return changed


def _model(memory: MemoryConfig) -> MemXLNetForQA:
    torch.manual_seed(0)
    return MemXLNetForQA.tiny(VOCAB, memory).eval()


@pytest.mark.parametrize("memory", [_memory(2), _memory(2, update="replace", init="zeros"),
                                    _memory(2, differentiable=True, heads=2,
                                            usage_tracking=True, temporal_links=True)],
                         ids=["gated", "replace-zeros", "differentiable"])
def test_changing_segment_one_changes_segment_three_with_memory(memory):
    model = _model(memory)
    runner = TimeStepMajorRunner(model)
    steps = _steps(2)
    changed = _segment_one_changed(steps)
    with torch.no_grad():
        before = runner(steps, 2)
        after = runner(changed, 2)
    assert not torch.allclose(before[2]["start_logits"], after[2]["start_logits"])


@pytest.mark.parametrize("memory", [_memory(2), _memory(2, differentiable=True)],
                         ids=["gated", "differentiable"])
def test_frozen_memory_makes_segment_three_blind_to_segment_one_until_the_block_ends(memory):
    """The ablation behind `memory_gain_*`: with memory frozen, what segment 1 says cannot reach
    segment 3, every segment reads the initial memory, and leaving the block restores the flow."""
    model = _model(memory)
    runner = TimeStepMajorRunner(model)
    steps = _steps(2)
    changed = _segment_one_changed(steps)
    with torch.no_grad():
        with model.memory_frozen():
            before, after = runner(steps, 2), runner(changed, 2)
            initial = model(**{k: steps[0][k] for k in ("input_ids", "attention_mask", "token_type_ids")})
        assert torch.equal(before[2]["start_logits"], after[2]["start_logits"])
        for key, value in model.init_memory(2).items():
            assert torch.equal(initial.memory_state[key], value)
        flowing = runner(changed, 2)
    assert not torch.allclose(flowing[2]["start_logits"], after[2]["start_logits"])


@pytest.mark.parametrize("memory", [_memory(2), _memory(2, differentiable=True)],
                         ids=["gated", "differentiable"])
def test_swapped_memory_is_what_the_donor_documents_first_segment_wrote(memory):
    """The swap ablation (evaluation only): with memory_donor_shift=1, document i's later segments
    run exactly as if its first segment had been document i+1's (cyclically); the first segment
    itself is untouched, and the default runner does no swap."""
    model = _model(memory)
    g = torch.Generator().manual_seed(3)
    steps = [_segment(g, 3, 12, 2) for _ in range(3)]
    donor_first = [dict(s) for s in steps]
    donor_first[0] = {**steps[0], "input_ids": steps[0]["input_ids"].roll(-1, dims=0)}
    with torch.no_grad():
        swapped = TimeStepMajorRunner(model, memory_donor_shift=1)(steps, 3)
        expected = TimeStepMajorRunner(model)(donor_first, 3)
        plain = TimeStepMajorRunner(model)(steps, 3)
    assert torch.equal(swapped[0]["start_logits"], plain[0]["start_logits"])
    for t in (1, 2):
        assert torch.allclose(swapped[t]["start_logits"], expected[t]["start_logits"], atol=1e-6)
        assert not torch.allclose(swapped[t]["start_logits"], plain[t]["start_logits"])


def test_without_memory_tokens_segment_three_ignores_segment_one():
    model = _model(_memory(0))
    runner = TimeStepMajorRunner(model)
    steps = _steps(0)
    changed = [dict(s) for s in steps]
    changed[0]["input_ids"] = steps[0]["input_ids"].clone()
    changed[0]["input_ids"][:, 2:6] = 42
    with torch.no_grad():
        before = runner(steps, 2)
        after = runner(changed, 2)
    assert not torch.equal(before[0]["start_logits"], after[0]["start_logits"])
    assert torch.equal(before[2]["start_logits"], after[2]["start_logits"])


def test_memory_gradient_reaches_first_segment():
    model = _model(_memory(2)).train()
    steps = _steps(2)
    outs = TimeStepMajorRunner(model)(steps, 2)
    outs[2]["start_logits"].sum().backward()
    # Segment 3's loss only reaches the memory init through segments 1 and 2's write states.
    assert model.memory.initial.grad is not None and model.memory.initial.grad.abs().sum() > 0


def test_segment_checkpointing_gives_identical_gradients():
    grads = []
    for checkpointing in (False, True):
        model = _model(_memory(2)).train()
        torch.manual_seed(1)
        outs = TimeStepMajorRunner(model, checkpoint_segments=checkpointing)(_steps(2), 2)
        sum(o["start_logits"].sum() + o["end_logits"].sum() for o in outs).backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]))
    assert torch.allclose(grads[0], grads[1], atol=1e-6)


@pytest.mark.parametrize("memory", [_memory(2), _memory(0), _memory(2, differentiable=True, heads=4)],
                         ids=["token", "no-memory", "differentiable"])
def test_save_and_load_give_identical_outputs(tmp_path, memory):
    model = _model(memory)
    steps = _steps(memory.num_tokens)
    with torch.no_grad():
        expected = TimeStepMajorRunner(model)(steps, 2)
    model.save_pretrained(tmp_path / "ckpt")
    loaded = MemXLNetForQA.from_pretrained(tmp_path / "ckpt").eval()
    assert loaded.memory_config == model.memory_config
    with torch.no_grad():
        got = TimeStepMajorRunner(loaded)(steps, 2)
    for a, b in zip(expected, got):
        assert torch.equal(a["start_logits"], b["start_logits"]) and torch.equal(a["end_logits"], b["end_logits"])


def test_differentiable_memory_exposes_memory_info():
    model = _model(_memory(2, differentiable=True, slots=8, heads=2,
                           usage_tracking=True, temporal_links=True))
    with torch.no_grad():
        outs = TimeStepMajorRunner(model)(_steps(2), 2)
    with torch.enable_grad():
        checkpointed = TimeStepMajorRunner(model, checkpoint_segments=True)(_steps(2), 2)
    info = outs[1]["memory_info"]
    assert set(info) == {"read_weights", "write_weights", "memory_state", "usage", "temporal_links"}
    assert set(checkpointed[1]["memory_info"]) == set(info)  # filled with checkpoint_segments too
    assert info["read_weights"].shape == (2, 2, 8) and info["write_weights"].shape == (2, 2, 8)
    assert info["memory_state"].shape == (2, 8, 64) and info["usage"].shape == (2, 8)
    assert info["temporal_links"].shape == (2, 8, 8)
    assert torch.allclose(info["write_weights"].sum(-1), torch.ones(2, 2), atol=1e-5)
    assert (info["usage"] > 0).all()


@pytest.mark.parametrize("kwargs, message", [({"heads": 9}, "heads"),
                                             ({"update": "lstm"}, "update"),
                                             ({"num_tokens": 0, "differentiable": True},
                                              "differentiable")])
def test_bad_memory_config_is_rejected(kwargs, message):
    cfg = MemoryConfig(**{"num_tokens": 2, "read_token_ids": READ, "write_token_ids": WRITE, **kwargs})
    if cfg.num_tokens == 0:
        cfg.read_token_ids, cfg.write_token_ids = [], []
    with pytest.raises(ValueError, match=message):
        cfg.validate()


def test_missing_write_tokens_fail_clearly():
    model = _model(_memory(2))
    step = _steps(0)[0]
    with pytest.raises(ValueError, match="MEM_WRITE"):
        model(step["input_ids"], step["attention_mask"], step["token_type_ids"])


def test_from_base_loads_xlnet_weights_from_a_local_hf_folder(tmp_path):
    from transformers import XLNetConfig, XLNetModel

    torch.manual_seed(3)
    base = XLNetModel(XLNetConfig(vocab_size=VOCAB, d_model=32, n_layer=1, n_head=2, d_inner=64))
    base.save_pretrained(tmp_path / "xlnet")
    model = MemXLNetForQA.from_base(str(tmp_path / "xlnet"), _memory(2))
    model.resize_token_embeddings(VOCAB + 4)
    assert model.transformer.word_embedding.weight.shape[0] == VOCAB + 4
    assert torch.equal(model.transformer.word_embedding.weight[:VOCAB], base.word_embedding.weight)
    assert torch.equal(model.transformer.layer[0].ff.layer_1.weight, base.layer[0].ff.layer_1.weight)


def test_write_tokens_start_from_their_segment_not_their_embedding():
    """At init, the memory written by a segment must depend on that segment's words (the memory
    token embeddings start at zero; with random ones the write states barely move)."""
    model = _model(_memory(2))
    steps = _steps(2)
    changed = dict(steps[0])
    changed["input_ids"] = steps[0]["input_ids"].clone()
    changed["input_ids"][:, 2:14] = torch.randint(10, 90, (2, 12), generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        before = TimeStepMajorRunner(model)([steps[0]], 2)[0]["memory_info"]["memory_state"]
        after = TimeStepMajorRunner(model)([changed], 2)[0]["memory_info"]["memory_state"]
    relative = float((before - after).norm() / before.norm())
    assert relative > 0.05, f"write states moved {relative:.4f} when every context word changed"
    for ids in (READ, WRITE):
        assert torch.count_nonzero(model.transformer.word_embedding.weight[ids]) == 0
