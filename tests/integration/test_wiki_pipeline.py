"""extract -> graph -> pretokenize through the real CLI and the local (subprocess) executor."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from stages.core.artifacts import load_artifact

REPO = Path(__file__).resolve().parents[2]


def submit(*args):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, str(REPO / "jobs" / "submit.py"), *args], check=False,
                          capture_output=True,
                          text=True, env=env, cwd=REPO, timeout=600)
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


def artifact(root, stage):
    dirs = [p for p in (root / stage).iterdir() if not p.name.startswith(".")]
    assert len(dirs) == 1, dirs
    return load_artifact(root, stage, dirs[0].name)


def test_wiki_stages_run_under_the_local_executor(tmp_path):
    root, results = tmp_path / "art", tmp_path / "res"
    common = ("executor=local", f"root={root}", f"results={results}")
    submit("stage=extract", "sample_articles=80", "sample_format=cirrus", *common)
    submit("stage=graph", "extract.sample_articles=80", "extract.sample_format=cirrus", *common)
    submit("stage=pretokenize", "extract.sample_articles=80", "extract.sample_format=cirrus", *common)
    extract, graph, tokens = artifact(root, "extract"), artifact(root, "graph"), artifact(root, "pretokenize")
    assert extract.manifest["metrics"]["articles"] == 80
    assert graph.manifest["upstream"] == {"extract": extract.signature}
    assert graph.manifest["metrics"]["nodes"] == 80 and graph.manifest["metrics"]["components"] == 1
    assert np.load(graph.path / "out_indptr.npy")[-1] == graph.manifest["metrics"]["edges"]
    meta = json.loads((tokens.path / "tokenizer.json").read_text())
    assert meta["name"] == "gpt2" and tokens.manifest["metrics"]["documents"] == 80
    assert any(f["path"] == "tokens-00000.bin" and len(f["sha256"]) == 64 for f in tokens.manifest["files"])
    # A second submit is a cache hit: nothing reruns.
    again = submit("stage=extract", "sample_articles=80", "sample_format=cirrus", "workers=1", *common)
    assert "cache" in again.stdout.lower() or "cached" in again.stdout.lower()
