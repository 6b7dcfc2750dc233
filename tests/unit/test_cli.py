"""Bad input fails before any work, with one line that names the key and the fix."""

import subprocess
import sys
from pathlib import Path

import pytest

from jobs import cli
from tests.unit.test_core_runner import submit

REPO = Path(__file__).resolve().parents[2]


def test_help_lists_stages_keys_and_examples():
    out = submit("--help").stdout
    assert "stage `toy_numbers`" in out and "shards" in out and "default=4" in out
    assert "examples:" in out and "array_parallelism" in out


def test_help_lists_a_components_keys_dotted():
    out = submit("stage=pretrain", "--help").stdout
    for key in ("packing.strategy", "packing.token_budget", "model.mask", "model.smear_keys", "model.n_layers"):
        assert f"\n  {key} " in out
    assert "model.vocab_size" not in out  # derived: filled in by the stage, not a key


@pytest.mark.parametrize("args, new", [
    (["stage=pretrain", "strategy=random"], "packing.strategy"),
    (["stage=pretrain", "pretrain.strategy=random"], "pretrain.packing.strategy"),
    (["stage=pretrain", "batch_size=2"], "packing.batch_size"),  # qa's `batch_size` is still flat
    (["stage=all", "smear_keys=true"], "model.smear_keys"),
    (["stage=evaluate", "mask=doc"], "pretrain.model.mask"),
])
def test_an_old_flat_pretrain_key_fails_with_one_line_naming_its_new_name(tmp_path, args, new):
    proc = submit(*args, f"root={tmp_path}", "dry_run=true", check=False)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].endswith(f"is now `{new}`: write `{new}=...`"), proc.stderr


def test_help_after_a_stage_shows_that_stage_only():
    out = submit("stage=toy_numbers", "--help").stdout
    assert "stage `toy_numbers`" in out and "stage `toy_sum`" not in out and "global keys:" in out


@pytest.mark.parametrize("args, message", [
    (["stage=nope"], "unknown stage `nope`"),
    (["stage=toy_numbers", "no_such_key=1"], "unknown key `no_such_key`"),
    (["stage=toy_numbers", "shard=1"], "did you mean `shards`"),
    (["stage=toy_numbers", "shards=lots"], "key `shards`"),
    (["stage=toy_numbers", "executor=cloud"], "`executor=cloud` is unknown"),
    (["stage=toy_numbers", "nodes=2"], "needs executor=slurm"),
    (["stage=toy_numbers", "nodes=0"], "`nodes` must be >= 1"),
    (["stage=toy_sum", "shards=2"], "belongs to stage `toy_numbers`"),
    (["stage=toy_sum", "toy_numbers.from=abc"], "no complete artifact"),
    (["stage=toy_numbers", "oops"], "cannot parse `oops`"),
])
def test_bad_input_is_one_line_without_traceback(tmp_path, args, message):
    proc = submit(*args, f"root={tmp_path}", check=False)
    assert proc.returncode == 2
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "runs").exists()  # nothing was launched


def test_dry_run_shows_plan_and_cache_hits(tmp_path):
    submit("stage=toy_numbers", "executor=inline", f"root={tmp_path}", f"results={tmp_path / 'r'}", "shards=1")
    out = submit("stage=toy_sum", f"root={tmp_path}", "dry_run=true", "offset=1,2", "toy_numbers.shards=1").stdout
    assert "2 job(s) to run" in out and "upstream (exists)" in out and "job arrays: toy_sum[2]" in out
    assert not (tmp_path / "toy_sum").exists()


def test_submit_script_runs_from_any_directory(tmp_path):
    proc = subprocess.run([sys.executable, str(REPO / "jobs" / "submit.py"), "--help"], cwd=tmp_path,
                          check=False, capture_output=True, text=True)
    assert proc.returncode == 0 and "usage:" in proc.stdout


def test_stage_all_defaults_to_the_comparison_grid_and_explicit_keys_narrow_it(tmp_path):
    grid = submit("stage=all", f"root={tmp_path}", "dry_run=true").stdout
    # extract, graph and pretokenize twice: the training corpus and the LM evaluation's fresh one
    assert "job arrays: extract[2], graph[2], pretokenize[2], pretrain[8], qa[2], evaluate[8], evaluate[2]" in grid
    narrow = submit("stage=all", f"root={tmp_path}", "dry_run=true", "packing.strategy=bfs",
                    "qa.memory.num_tokens=4").stdout
    assert "pretokenize[2], pretrain[2], evaluate[2]" in narrow
    assert "default comparison grid for stage=all: pretrain.model.mask " in narrow


def test_study_runs_its_grid_and_stages_and_command_line_keys_win(tmp_path):
    out = submit("stage=all", "study=lm", f"root={tmp_path}", "dry_run=true").stdout
    assert "pretokenize[2], pretrain[12], evaluate[12]" in out  # 2 strategies x 2 masks x 3 seeds, no qa
    assert " qa " not in out
    fewer = submit("stage=all", "study=lm", "seed=0", "model.mask=graph", f"root={tmp_path}", "dry_run=true").stdout
    assert "pretokenize[2], pretrain[2], evaluate[2]" in fewer
    bad = submit("stage=all", "study=nope", f"root={tmp_path}", "dry_run=true", check=False)
    assert bad.returncode == 2 and "`study=nope` is unknown" in bad.stderr


def test_a_missing_upstream_lists_the_artifacts_that_exist_and_how_to_reuse_them(tmp_path):
    """stage=extract with a non-default key, then stage=graph: the error names the differing key
    and the exact command that reuses the existing extract, and that command works."""
    common = ["executor=inline", f"root={tmp_path}", f"results={tmp_path / 'res'}"]
    assert cli.main(["stage=extract", "sample_articles=40", *common]) == 0
    proc = subprocess.run([sys.executable, str(REPO / "jobs" / "submit.py"), "stage=graph", *common],
                          capture_output=True, text=True, cwd=REPO, timeout=300, check=False)
    assert proc.returncode == 2
    assert "differs in sample_articles=40 (asked: 300)" in proc.stderr
    command = proc.stderr.split("reuse it with: ")[1].strip().split()
    assert command[:2] == ["python", "jobs/submit.py"]
    assert cli.main(command[2:]) == 0
