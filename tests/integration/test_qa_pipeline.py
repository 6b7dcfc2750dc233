"""qa (curriculum.segments=[2,4]) -> evaluate task=qa through the real CLI and the local executor."""

import json
import os
import subprocess
import sys
from pathlib import Path

from stages.core.artifacts import load_artifact
from stages.qa import squad_eval

REPO = Path(__file__).resolve().parents[2]
QA = ("qa.sample.documents=24", "qa.curriculum.segments=[2,4]", "qa.curriculum.epochs=2", "qa.data.eval_size=30")


def submit(*args):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, str(REPO / "jobs" / "submit.py"), *args], check=False,
                          capture_output=True, text=True, env=env, cwd=REPO, timeout=900)
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


def artifact(root, stage):
    dirs = [p for p in (root / stage).iterdir() if not p.name.startswith(".")]
    assert len(dirs) == 1, dirs
    return load_artifact(root, stage, dirs[0].name)


def test_qa_trains_through_the_curriculum_and_evaluate_scores_it(tmp_path):
    root, results = tmp_path / "art", tmp_path / "res"
    common = ("executor=local", f"root={root}", f"results={results}")
    submit("stage=qa", *(a.removeprefix("qa.") for a in QA), *common)
    qa = artifact(root, "qa")
    stages = [json.loads((qa.path / d / "phase_done.json").read_text()) for d in ("phase_1_segs_2", "phase_2_segs_4")]
    for d in ("phase_1_segs_2", "phase_2_segs_4"):
        best = qa.path / d / "best_model"
        assert (best / "model.safetensors").is_file() and (best / "memxlnet_config.json").is_file()
        assert json.loads((best / "training_config.json").read_text())["curriculum"]["segments"] == [2, 4]
        assert not (qa.path / d / "checkpoint").exists()
    assert [s["segments"] for s in stages] == [2, 4]
    # Warm-ups restart in every curriculum stage, so compare like with like: the first epoch of
    # each stage trains with the per-segment softmax; its loss goes down from stage 1 to stage 2.
    first_epochs = [s["epochs"][0] for s in stages]
    assert [e["global_softmax"] for e in first_epochs] == [False, False]
    assert first_epochs[1]["train_loss"] < first_epochs[0]["train_loss"]
    assert qa.manifest["metrics"]["final_model"] == "phase_2_segs_4/best_model"

    submit("stage=evaluate", "task=qa", "test_size=20", "test_documents=4", *QA, *common)
    evaluation = artifact(root, "evaluate")
    metrics = evaluation.manifest["metrics"]
    assert metrics["total"] == 20 and metrics["HasAns_total"] + metrics["NoAns_total"] == 20
    gold = json.loads((evaluation.path / "gold.json").read_text())
    preds = json.loads((evaluation.path / "predictions.json").read_text())
    na_probs = json.loads((evaluation.path / "na_probs.json").read_text())
    rescored = squad_eval.evaluate(gold["data"], preds, na_probs)
    assert json.loads((evaluation.path / "scores.json").read_text()) == rescored
    assert all(abs(metrics[k] - v) < 1e-9 for k, v in rescored.items())
    # The memory ablations, re-scored from the predictions each wrote: the same model with its
    # memory frozen (memory_frozen_*, and memory_gain_* = score - that) and with another
    # document's memory (swap_*), per kind and per question form, on dev and on the test split
    # (drawn apart: its own documents, test_total questions).
    assert metrics["test_total"] == 20 and all(a["title"].startswith("test-") for a in
                                               json.loads((evaluation.path / "test_gold.json").read_text())["data"])
    for split in ("", "test_"):
        gold = json.loads((evaluation.path / f"{split}gold.json").read_text())
        scored = json.loads((evaluation.path / f"{split}predictions.json").read_text())
        for ablation in ("memory_frozen", "swap"):
            preds = json.loads((evaluation.path / f"{split}predictions_{ablation}.json").read_text())
            assert set(preds) == set(scored)
            rescored = squad_eval.evaluate(gold["data"], preds)
            keys = [k for k in rescored if k in squad_eval.ABLATED_SCORES or
                    (k.startswith("form_") and k.endswith(("_exact", "_f1")))]
            assert len(keys) > len(squad_eval.ABLATED_SCORES)  # per question form too
            for key in keys:
                assert metrics[f"{split}{ablation}_{key}"] == rescored[key], (split, ablation, key)
                if ablation == "memory_frozen":
                    assert metrics[f"{split}memory_gain_{key}"] == metrics[f"{split}{key}"] - rescored[key]

    # The no-answer threshold: by default the one saved with the trained model (its qa config);
    # an explicit `no_answer_threshold=` overrides it (a huge one abstains on every question).
    saved = qa.typed_config().no_answer_threshold
    assert evaluation.manifest["record"]["no_answer_threshold"] == saved
    submit("stage=evaluate", "task=qa", "test_size=20", "no_answer_threshold=1e9", *QA, *common)
    (override,) = [load_artifact(root, "evaluate", p.name) for p in (root / "evaluate").iterdir()
                   if not p.name.startswith(".") and p.name != evaluation.path.name]
    assert override.manifest["record"]["no_answer_threshold"] == 1e9
    abstained = json.loads((override.path / "predictions.json").read_text())
    assert set(abstained.values()) == {""} and override.manifest["metrics"]["NoAns_exact"] == 100.0


def test_a_one_segment_stage_trains_a_memory_model_under_the_local_executor(tmp_path):
    """In a one-segment stage no step reads what memory wrote, so the memory update gets no
    gradient; the local executor runs the stage under DistributedDataParallel, which must allow
    that (it once stopped at the second step)."""
    root = tmp_path / "art"
    submit("stage=qa", "sample.documents=8", "sample.dev_documents=2", "data.eval_size=8", "batch_size=4",
           "memory.num_tokens=2", "curriculum.segments=[1,2]", "curriculum.epochs=1", "executor=local",
           f"root={root}", f"results={tmp_path / 'res'}")
    qa = artifact(root, "qa")
    stages = [json.loads((qa.path / d / "phase_done.json").read_text()) for d in ("phase_1_segs_1", "phase_2_segs_2")]
    assert all(s["steps"] > 1 for s in stages)


def test_evaluate_reuses_a_qa_run_that_continued_a_shared_reader(tmp_path):
    """`qa.from=<signature>` names a qa artifact whose plan also held its shared reader; evaluate
    derives its own nodes from its upstream configs, the reader's included, which the plan reads
    from the reader's manifest (it is no node of the evaluate run)."""
    root = tmp_path / "art"
    submit("stage=qa", "sample.documents=6", "sample.dev_documents=2", "data.eval_size=4", "batch_size=4",
           "memory.num_tokens=2", "curriculum.segments=[1,2]", "curriculum.epochs=1", "curriculum.shared_reader=true",
           "executor=inline", f"root={root}", f"results={tmp_path / 'res'}")
    qa = artifact(root, "qa")
    out = submit("stage=evaluate", "task=qa", f"qa.from={qa.signature}", "dry_run=true", f"root={root}")
    assert f"qa           {qa.signature}  upstream (exists)" in out.stdout and "evaluate" in out.stdout
