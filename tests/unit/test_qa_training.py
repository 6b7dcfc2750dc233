"""qa stage warmups: base freezing trains only memory and head parameters."""

import torch
from safetensors.torch import load_file

from stages.core.config import resolve
from stages.core.context import StageContext
from stages.qa import components, train
from stages.qa.config import QAConfig

SMALL = {"sample.documents": 6, "sample.dev_documents": 2, "data.train_size": 16, "data.eval_size": 4, "curriculum.segments": [2], "max_n_segs": 2,
         "batch_size": 4, "curriculum.epochs": 1, "max_seq_length": 64, "doc_stride": 32, "max_query_length": 12,
         "tokenizer_vocab_size": 300, "memory.num_tokens": 2, "num_threads": 1}


def test_freeze_base_warmup_trains_only_memory_and_head(tmp_path):
    cfg = resolve(QAConfig, {**SMALL, "curriculum.warmup_freeze_base_epochs": 1})
    out = tmp_path / "qa"
    out.mkdir()
    train.run(cfg, StageContext(stage="qa", signature="x", root=tmp_path, out_dir=out, upstream={}))
    folder = out / "phase_1_segs_2" / "best_model"
    trained = load_file(str(folder / "model.safetensors"))
    _, tokenizer, _ = components.load_checkpoint_model(folder)
    read = tokenizer.convert_tokens_to_ids(["[MEM_READ_0]", "[MEM_READ_1]"])
    write = tokenizer.convert_tokens_to_ids(["[MEM_WRITE_0]", "[MEM_WRITE_1]"])
    train._seed_everything(cfg.seed)  # the stage seeds like this right before building its model
    initial = components.build_model(cfg, tokenizer, read, write).state_dict()
    base = [k for k in initial if k.startswith("transformer.")]
    rest = [k for k in initial if not k.startswith("transformer.")]
    assert base and rest
    assert all(torch.equal(initial[k], trained[k]) for k in base)
    assert all(not torch.equal(initial[k], trained[k]) for k in rest)
