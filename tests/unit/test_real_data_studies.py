"""The real-data studies (declared for a GPU cluster) dry-run, without their data.

`extract.dump` is checked for existence at submit time, so the test makes an empty placeholder
with the dump's name; the dry run reads nothing from it. `qa.model`/`qa.tokenizer` name a folder
that is only read when the job runs."""

import os
import re
import subprocess
import sys
from pathlib import Path

from jobs import studies

REPO = Path(__file__).resolve().parents[2]


def dry_run(*args):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, str(REPO / "jobs" / "submit.py"), "stage=all", *args, "dry_run=true"],
                          check=False, capture_output=True, text=True, env=env, cwd=REPO, timeout=300)


def planned(stdout: str, stage: str) -> list[str]:
    return [line for line in stdout.splitlines() if re.match(rf"\s+{stage}\s+[0-9a-f]{{12}}\s+run\b", line)]


def test_lm_enwiki_plans_the_four_cells_by_three_seeds(tmp_path):
    dump = tmp_path / "enwiki-latest-pages-articles-multistream.xml.bz2"
    dump.touch()
    proc = dry_run("study=lm_enwiki", f"extract.dump={dump}", f"root={tmp_path / 'art'}")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    runs = planned(proc.stdout, "pretrain")
    assert len(runs) == 12 and len(planned(proc.stdout, "evaluate")) == 12
    for strategy in ("random", "random_walk"):
        for mask in ("doc", "graph"):
            cell = [r for r in runs if f"strategy={strategy}," in r and f"mask={mask}," in r]
            assert sorted(r.rsplit("seed=", 1)[1] for r in cell) == ["0", "1", "2"]
    assert len(planned(proc.stdout, "extract")) == 1 and len(planned(proc.stdout, "pretokenize")) == 1
    study = studies.load("lm_enwiki")
    assert study.keys("pretrain")["preset"] == "gpt2-small" and study.keys("evaluate")["corpus"] == "heldout"
    assert "estimated" in study.cost.lower()


def test_lm_enwiki_without_a_dump_fails_naming_the_key(tmp_path):
    proc = dry_run("study=lm_enwiki", f"root={tmp_path / 'art'}")
    assert proc.returncode != 0
    assert "extract.dump=" in proc.stdout + proc.stderr


def test_qa_squad_plans_memory_0_and_16_by_three_seeds(tmp_path):
    model = tmp_path / "xlnet-base-cased"
    model.mkdir()
    proc = dry_run("study=qa_squad", f"qa.model={model}", f"qa.tokenizer={model}", f"root={tmp_path / 'art'}")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    runs = planned(proc.stdout, "qa")
    assert len(runs) == 6 and len(planned(proc.stdout, "evaluate")) == 6
    for memory in ("0", "16"):
        assert sorted(r.rsplit("seed=", 1)[1] for r in runs if f"memory.num_tokens={memory}," in r) == ["1", "2", "3"]
    study = studies.load("qa_squad")
    assert study.keys("qa")["preset"] == "base" and study.keys("qa")["data.long_context"] == "4"
    (criterion,) = study.criterion
    assert (criterion.metric, criterion.expect, criterion.minus) == (
        "dev_cross_segment_f1", "positive", {"memory.num_tokens": "0"})
    assert "estimated" in study.cost.lower()
