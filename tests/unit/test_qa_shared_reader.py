"""The shared reader (`shared_reader=true`): curriculum stage 1 trained once without memory and
continued by every run that differs only in its memory keys, so that a memory study's variants
start their memory stage from the same weights."""

import json

import pytest
import torch
from safetensors.torch import load_file

from jobs import studies
from models.memxlnet import MemoryConfig, MemXLNetForQA
from stages.core.artifacts import load_artifact
from stages.core.config import ConfigError, resolve, signature_dict
from stages.core.context import StageContext
from stages.core.runner import execute
from stages.qa import train
from stages.qa.config import QAConfig
from stages.qa.spec import READER, shared_reader_node
from tests.unit.test_qa_fidelity import SMALL

SHARED = {**SMALL, "curriculum.segments": [1, 2], "curriculum.phase_epochs": [1, 1], "curriculum.phase_seq_lengths": [96, 64],
          "curriculum.shared_reader": True}


def test_runs_that_differ_only_in_memory_name_the_same_reader():
    base = resolve(QAConfig, {**SHARED, "memory.num_tokens": 0}).reader_config()
    for keys in ({"memory.num_tokens": 4, "memory.extends_segment": True}, {"memory.update": "none"},
                 {"curriculum.phase_epochs": [1, 3]}):
        assert resolve(QAConfig, {**SHARED, **keys}).reader_config() == base
    assert (base.memory.num_tokens, base.curriculum.segments, base.max_seq_length) == (0, [1], 96)
    assert base.curriculum.epochs_of(0) == 1 and not base.curriculum.shared_reader
    for keys in ({"seed": 7}, {"curriculum.phase_epochs": [2, 1]}, {"sample.documents": 5}, {"learning_rate": 1e-3}):
        assert signature_dict(resolve(QAConfig, {**SHARED, **keys}).reader_config()) != signature_dict(base)
    with pytest.raises(ConfigError, match="shared_reader: needs a reader phase and a later one"):
        resolve(QAConfig, {**SMALL, "curriculum.segments": [2], "curriculum.shared_reader": True})


def test_a_shared_reader_seed_gives_every_run_seed_that_seed_s_reader():
    """With shared_reader_seed, the runs of seeds 1 and 3 continue seed 2's reader, the very reader
    a run of seed 2 alone names; the runs themselves stay apart (their seeds vary the later stages)."""
    own = signature_dict(resolve(QAConfig, {**SHARED, "seed": 2}).reader_config())
    runs = [resolve(QAConfig, {**SHARED, "seed": seed, "curriculum.shared_reader_seed": 2}) for seed in (1, 2, 3)]
    assert all(signature_dict(run.reader_config()) == own for run in runs)
    assert len({json.dumps(signature_dict(run), sort_keys=True) for run in runs}) == 3
    with pytest.raises(ConfigError, match="shared_reader_seed: only means something with shared_reader=true"):
        resolve(QAConfig, {**SHARED, "curriculum.shared_reader": False, "curriculum.shared_reader_seed": 2})


def test_a_knob_that_joins_the_signature_when_set_leaves_it_unchanged_at_its_default():
    """Knobs added after artifacts exist (signature=WHEN_SET) keep those artifacts reachable: at
    their default the signature has no trace of them; set, it changes."""
    plain = signature_dict(resolve(QAConfig, SHARED))
    assert "shared_reader_seed" not in plain["curriculum"]
    seeded = signature_dict(resolve(QAConfig, {**SHARED, "curriculum.shared_reader_seed": 2}))
    assert seeded == {**plain, "curriculum": {**plain["curriculum"], "shared_reader_seed": 2}}


def test_a_memory_model_from_a_reader_keeps_its_backbone_and_head_and_zeroes_the_new_memory_tokens():
    reader = MemXLNetForQA.tiny(50, MemoryConfig(), d_model=32, n_layer=1, n_head=2, d_inner=64)
    memory = MemoryConfig(num_tokens=2, read_token_ids=[50, 51], write_token_ids=[52, 53])
    model = reader.with_memory(memory, 54)
    assert model.memory is not None and model.memory_config == memory
    embeddings = model.transformer.word_embedding.weight
    assert embeddings.shape[0] == 54 and torch.equal(embeddings[:50], reader.transformer.word_embedding.weight[:50])
    assert torch.count_nonzero(embeddings[50:]) == 0
    assert torch.equal(model.qa_outputs.weight, reader.qa_outputs.weight)
    ids = torch.tensor([[50, 51, 5, 6, 7, 52, 53]])
    ones = torch.ones_like(ids)
    out = model(ids, ones, torch.zeros_like(ids), memory_state=model.init_memory(1))
    assert out.start_logits.shape == (1, 7)


def test_both_runs_continue_the_plan_s_reader_and_add_their_memory(tmp_path):
    """The reader is a node of the plan (run here as the runner runs it); memory 0 and memory 2
    both start their memory stage from it."""
    records, stage_two_starts = [], []
    original_setup = train.PhaseTrainer.setup

    def setup(self, start_from):
        original_setup(self, start_from)
        if self.index == 1:
            stage_two_starts.append({k: v.clone() for k, v in self.model.state_dict().items()})

    configs = [resolve(QAConfig, {**SHARED, "memory.num_tokens": m, "memory.extends_segment": True}) for m in (0, 2)]
    (role, (reader_cfg, _)), = shared_reader_node(configs[0], {}).items()
    assert shared_reader_node(configs[1], {})[role][0] == reader_cfg
    outcome = execute(READER, reader_cfg, tmp_path, {})
    upstream = {role: load_artifact(tmp_path, role, outcome.signature)}
    for memory, cfg in zip((0, 2), configs):
        out = tmp_path / f"qa{memory}"
        out.mkdir()
        ctx = StageContext(stage="qa", signature=f"m{memory}", root=tmp_path, out_dir=out, upstream=upstream)
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(train.PhaseTrainer, "setup", setup)
            train.run(cfg, ctx)
        records.append(ctx.record)
    readers = [r["shared_reader"] for r in records]
    assert readers[0]["signature"] == readers[1]["signature"] == outcome.signature
    reader = load_artifact(tmp_path, "qa_reader", readers[0]["signature"])
    assert reader is not None and reader.manifest["config"]["memory"]["num_tokens"] == 0
    assert not (tmp_path / "qa0" / "phase_1_segs_1").exists() and not (tmp_path / "qa2" / "phase_1_segs_1").exists()
    assert records[0]["phases"][0] == records[1]["phases"][0]  # the reader's epochs, reported by both runs
    weights = load_file(str(reader.path / "phase_1_segs_1" / "best_model" / "model.safetensors"))
    for start in stage_two_starts:
        assert torch.equal(start["qa_outputs.weight"], weights["qa_outputs.weight"])
        for name in ("transformer.layer.0.ff.layer_1.weight", "transformer.layer.1.rel_attn.q"):
            assert torch.equal(start[name], weights[name])
    grown = stage_two_starts[1]["transformer.word_embedding.weight"]
    vocab = weights["transformer.word_embedding.weight"].shape[0]
    assert grown.shape[0] == vocab + 4 and torch.equal(grown[:vocab], weights["transformer.word_embedding.weight"])
    assert torch.count_nonzero(grown[vocab:]) == 0


def test_the_memory_study_continues_one_reader_in_every_seed_and_variant():
    keys = studies.load("qa_memory").keys("qa")
    assert keys["curriculum.shared_reader"] == "true"
    study = {k: v for k, v in keys.items() if k not in ("seed", "memory.num_tokens")}
    readers = {json.dumps(signature_dict(resolve(QAConfig, {**study, "seed": seed, "memory.num_tokens": memory})
                                         .reader_config()), sort_keys=True)
               for seed in (1, 2) for memory in (0, 4)}
    assert len(readers) == 1  # shared_reader_seed: one reader for memory 0 and 4 of every seed
