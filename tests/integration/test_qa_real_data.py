"""The qa stage on the real SQuAD v2 dev half (skipped without ../shared/data).

- the default tokenizer (`tokenizer=auto`, `long_context=0`: whole articles) trains on the real file;
- `stage=qa dataset=<real file>` with otherwise default keys runs, as a new user would type it;
- an XLNet-base-shaped model (random init, saved with `save_pretrained`, the XLNet cased
  SentencePiece model beside it) trains a few steps and is scored by `stage=evaluate task=qa`.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from stages.core.artifacts import load_artifact
from stages.qa import components, squad_eval
from stages.qa import data as qa_data
from stages.qa.config import QAConfig
from stages.qa.data import DataConfig
from stages.qa.tokenizer import MAX_SENTENCE_BYTES, trainer_sentences

REPO = Path(__file__).resolve().parents[2]
DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
SQUAD = DATA / "squad_v2" / "dev-v2.0-half.json"
SPIECE = DATA / "xlnet" / "spiece.model"
pytestmark = pytest.mark.skipif(not SQUAD.is_file(), reason=f"real SQuAD v2 data not present at {SQUAD}")


def submit(*args, timeout=600):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, str(REPO / "jobs" / "submit.py"), *args], check=False,
                          capture_output=True, text=True, env=env, cwd=REPO, timeout=timeout)
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    return proc


def artifact(root, stage):
    dirs = [p for p in (root / stage).iterdir() if not p.name.startswith(".")]
    assert len(dirs) == 1, dirs
    return load_artifact(root, stage, dirs[0].name)


def test_default_tokenizer_trains_on_whole_real_articles(tmp_path):
    cfg = QAConfig(data=DataConfig(dataset=str(SQUAD)))
    assert (cfg.tokenizer, cfg.data.long_context) == ("auto", 0)
    train, dev = components.load_splits(cfg, tmp_path)
    texts = list(qa_data.contexts(train))
    # Whole articles: every one is over SentencePiece's sentence limit, which the trainer skipped.
    assert min(len(t.encode()) for t in texts) > MAX_SENTENCE_BYTES
    sentences = list(trainer_sentences(texts))
    assert max(len(s.encode()) for s in sentences) <= MAX_SENTENCE_BYTES
    assert [w for s in sentences for w in s.split()] == [w for t in texts for w in t.split()]

    tok, _, _ = components.build_tokenizer(cfg, train, tmp_path)
    assert len(tok) >= cfg.tokenizer_vocab_size
    # Trained on the text: a held-out article takes well under one token per two characters.
    held_out = next(qa_data.contexts(dev))
    ids = tok.encode(held_out, add_special_tokens=False)
    assert len(ids) < 0.5 * len(held_out)
    assert tok.unk_token_id not in ids[:200]


def test_qa_stage_runs_on_the_real_file_with_default_keys(tmp_path):
    root, results = tmp_path / "art", tmp_path / "res"
    submit("stage=qa", f"data.dataset={SQUAD}", "executor=inline", f"root={root}", f"results={results}",
           "data.train_size=16", "data.eval_size=16", "curriculum.segments=[2]", "curriculum.epochs=1", "num_threads=2")
    metrics = artifact(root, "qa").manifest["metrics"]
    assert metrics["dev_total"] == 16 and metrics["train_steps"] >= 1


@pytest.mark.skipif(not SPIECE.is_file(), reason=f"XLNet cased SentencePiece model not present at {SPIECE}")
def test_xlnet_base_shaped_qa_smoke(tmp_path):
    import torch
    from transformers import XLNetConfig, XLNetModel

    folder = tmp_path / "xlnet-base-shaped"
    shape = {"vocab_size": 32000, "d_model": 768, "n_layer": 12, "n_head": 12, "d_inner": 3072}
    torch.manual_seed(0)
    XLNetModel(XLNetConfig(**shape)).save_pretrained(folder)
    shutil.copyfile(SPIECE, folder / "spiece.model")  # tokenizer=auto takes the model folder's

    root, results = tmp_path / "art", tmp_path / "res"
    qa = (f"qa.model={folder}", f"qa.data.dataset={SQUAD}", "qa.data.train_size=4", "qa.data.eval_size=4", "qa.max_seq_length=64",
          "qa.max_n_segs=2", "qa.curriculum.segments=[2]", "qa.curriculum.epochs=1", "qa.batch_size=2",
          "qa.num_threads=2")
    common = ("executor=inline", f"root={root}", f"results={results}")
    submit("stage=qa", *(a.removeprefix("qa.") for a in qa), *common)
    run = artifact(root, "qa")
    metrics = run.manifest["metrics"]
    assert metrics["train_steps"] >= 1 and metrics["dev_total"] == 4
    best = run.path / metrics["final_model"]
    config = json.loads((best / "config.json").read_text())
    assert {k: config[k] for k in ("d_model", "n_layer", "n_head", "d_inner")} == {
        k: shape[k] for k in ("d_model", "n_layer", "n_head", "d_inner")}
    assert config["vocab_size"] == 32000 + 2 * QAConfig().memory.num_tokens  # XLNet's pieces + memory tokens

    submit("stage=evaluate", "task=qa", "test_size=4", *qa, *common)
    evaluation = artifact(root, "evaluate")
    scores = json.loads((evaluation.path / "scores.json").read_text())
    assert scores["total"] == 4
    gold = json.loads((evaluation.path / "gold.json").read_text())
    preds = json.loads((evaluation.path / "predictions.json").read_text())
    na_probs = json.loads((evaluation.path / "na_probs.json").read_text())
    assert squad_eval.evaluate(gold["data"], preds, na_probs) == scores
