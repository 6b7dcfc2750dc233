"""Every bad input named early (issue 11): exit 2 before anything runs, one line naming the key.

Runs `jobs/submit.py`'s entry point in-process with each bad value; nothing may be written
under the artifact root (no run directory, no artifact).
"""

from __future__ import annotations

import json

import pytest

from jobs.cli import main

BAD = [
    (["stage=qa", "learning_rate=-1"], "learning_rate"),
    (["stage=qa", "learning_rate=nan"], "learning_rate"),
    (["stage=qa", "max_answer_length=0"], "max_answer_length"),
    (["stage=qa", "max_answer_length=-5"], "max_answer_length"),
    (["stage=qa", "data.eval_size=-1"], "data.eval_size"),
    (["stage=qa", "memory.num_tokens=-1"], "memory.num_tokens"),
    (["stage=qa", "memory.num_tokens=100000"], "memory.num_tokens"),
    (["stage=qa", "tokenizer_vocab_size=0"], "tokenizer_vocab_size"),
    (["stage=qa", "warmup_ratio=5"], "warmup_ratio"),
    (["stage=qa", "data.dataset=/no/such/squad.json"], "data.dataset"),
    (["stage=pretrain", "lr=inf"], "lr"),
    (["stage=pretrain", "lr=nan"], "lr"),
    (["stage=extract", "force=maybe"], "force"),
    (["stage=extract", "lock=sometimes"], "lock"),
    (["stage=extract", "debug=perhaps"], "debug"),
    (["stage=extract", "dump=/no/such/dump.xml.bz2"], "dump"),
    (["stage=pretokenize", "encoding=no_such_encoding"], "encoding"),
    (["stage=evaluate", "task=qa", "dataset=/no/such/dev.json"], "dataset"),
]


def _run(tmp_path, capsys, args: list[str]) -> tuple[int, list[str]]:
    root = tmp_path / "art"
    code = main([*args, "executor=inline", f"root={root}", f"results={tmp_path / 'results'}"])
    captured = capsys.readouterr()
    lines = [line for line in (captured.err + captured.out).splitlines() if line.strip()]
    return code, lines


@pytest.mark.parametrize(("args", "key"), BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_value_exits_2_with_one_line_naming_the_key(tmp_path, capsys, args, key):
    code, lines = _run(tmp_path, capsys, args)
    assert code == 2, lines
    assert len(lines) == 1 and lines[0].startswith("error:") and key in lines[0], lines
    assert not (tmp_path / "art").exists() or not any((tmp_path / "art").rglob("manifest.json"))
    assert not (tmp_path / "art" / "runs").exists()


def _fake_artifact(root, stage: str, signature: str, manifest_stage: str):
    path = root / stage / signature
    path.mkdir(parents=True)
    (path / "manifest.json").write_text(json.dumps({"stage": manifest_stage, "signature": signature, "config": {},
                                                    "upstream": {}, "upstream_all": {}, "files": []}))
    return path


@pytest.mark.parametrize("form", ["path", "wrong_stage", "other_stage_signature"])
def test_from_names_a_signature_of_the_right_stage(tmp_path, capsys, form):
    root = tmp_path / "art"
    graph = _fake_artifact(root, "graph", "a1b2c3d4e5f6", "graph")
    value = {"path": str(graph), "wrong_stage": _fake_artifact(root, "extract", "0a0b0c0d0e0f", "graph").name,
             "other_stage_signature": graph.name}[form]
    code, lines = _run(tmp_path, capsys, ["stage=pretokenize", f"extract.from={value}"])
    assert code == 2, lines
    assert len(lines) == 1 and "extract.from=" in lines[0], lines
    assert not (root / "runs").exists() and not (root / "pretokenize").exists()


@pytest.mark.parametrize("executor", ["local", "inline"])
@pytest.mark.parametrize("debug", [False, True])
def test_runtime_error_prints_stage_signature_reason_and_log(tmp_path, executor, debug):
    import os
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    dump = tmp_path / "notes.json"  # valid JSON lines, but not a dump: fails at run time, not at submit time
    dump.write_text("".join(json.dumps({"note": i}) + "\n" for i in range(20)))
    env = {**os.environ, "PYTHONPATH": str(repo), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(repo / "jobs" / "submit.py"), "stage=extract", f"dump={dump}",
                           "workers=1", f"executor={executor}", f"root={tmp_path / 'art'}",
                           f"results={tmp_path / 'results'}", f"debug={str(debug).lower()}"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    lines = out.splitlines()
    fail = next(i for i, line in enumerate(lines) if line.startswith("[fail] extract "))
    assert "ValueError: extract: no usable page" in lines[fail], out
    assert lines[fail + 1].strip().startswith("log: ") and str(tmp_path / "art" / "runs") in lines[fail + 1]
    assert ("Traceback" in out) == debug, out
