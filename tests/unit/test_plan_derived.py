"""The plan holds every job: the shared QA reader and a fresh evaluation corpus are nodes of the
plan (`StageSpec.derived`), shown by a dry run; no stage runs another stage's work."""

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def dry_run(tmp_path, *args) -> list[tuple[str, str, str]]:
    proc = subprocess.run([sys.executable, str(REPO / "jobs" / "submit.py"), "stage=all", *args, "dry_run=true",
                           f"root={tmp_path}"], capture_output=True, text=True, cwd=REPO, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    return re.findall(r"^\s+(\w+)\s+([0-9a-f]{12})\s+(\S+)", proc.stdout, re.MULTILINE)


def test_the_lm_study_plans_its_fresh_evaluation_corpus(tmp_path):
    nodes = dry_run(tmp_path, "study=lm")
    stages = [stage for stage, _, _ in nodes]
    # the training corpus and the fresh one: two of each, every evaluation reads the same fresh one
    assert stages.count("extract") == stages.count("graph") == stages.count("pretokenize") == 2
    assert stages.count("pretrain") == stages.count("evaluate") == 12
    first_evaluate = stages.index("evaluate")
    assert max(i for i, s in enumerate(stages) if s == "pretokenize") < first_evaluate


def test_the_qa_study_plans_its_reader_before_the_runs_that_continue_it(tmp_path):
    nodes = dry_run(tmp_path, "study=qa_memory")
    stages = [stage for stage, _, _ in nodes]
    assert stages.count("qa_reader") == 1  # one reader (shared_reader_seed) for every seed and variant
    assert stages.index("qa_reader") < stages.index("qa") and stages.count("qa") == 6


def test_no_stage_runs_another_stage():
    callers = [str(p.relative_to(REPO)) for p in (REPO / "stages").rglob("*.py")
               if re.search(r"(?<!def )\bexecute\(", p.read_text())]
    assert callers == []
