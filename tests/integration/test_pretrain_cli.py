"""pretrain strategy sweep and LM evaluation through the real CLI and the local executor."""

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CORPUS = ("extract.sample_articles=80",)


def submit(*args):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, str(REPO / "jobs" / "submit.py"), *args], check=False,
                          capture_output=True, text=True, env=env, cwd=REPO, timeout=900)
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def records(results: Path, stage: str) -> list[dict]:
    found = [json.loads(p.read_text()) for p in (results / "records").glob(f"{stage}-*.json")]
    return sorted(found, key=lambda r: r["sweep"].get("packing.strategy", r["sweep"].get("pretrain.packing.strategy", "")))


def test_strategy_sweep_trains_and_evaluates(tmp_path):
    root, results = tmp_path / "art", tmp_path / "res"
    inline = ("executor=inline", f"root={root}", f"results={results}")
    for stage in ("extract", "graph", "pretokenize"):
        submit(f"stage={stage}", "sample_articles=80" if stage == "extract" else CORPUS[0], *inline)
    train = ("steps=6", "packing.token_budget=512", "val_every=3", "warmup_steps=2", *CORPUS)
    submit("stage=pretrain", "packing.strategy=random,random_walk", *train, "executor=local",
           f"root={root}", f"results={results}")
    pretrain = records(results, "pretrain")
    assert [r["sweep"]["packing.strategy"] for r in pretrain] == ["random", "random_walk"]
    for record in pretrain:
        curve = [loss for _, loss in record["extra"]["loss_curve"]]
        assert len(curve) == 6 and curve[-1] < curve[0]
    submit("stage=evaluate", "task=lm", "max_docs=3", "generate_tokens=4", "pretrain.packing.strategy=random,random_walk",
           *[f"pretrain.{kv}" for kv in train if not kv.startswith("extract.")], *CORPUS, "executor=local",
           f"root={root}", f"results={results}")
    evaluations = records(results, "evaluate")
    assert len(evaluations) == 2
    for record in evaluations:
        assert all(record["metrics"][f"ppl_{c}"] > 1 for c in ("isolated", "graph", "random"))
        assert record["extra"]["generation"]["with_graph_context"] is not None
    assert "ppl_graph" in (results / "summary.md").read_text()
