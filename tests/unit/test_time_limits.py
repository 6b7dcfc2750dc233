"""A job stopped at its time limit is reported as such, and its rerun resumes."""

import types

from jobs.local import _blocked_by
from tests.unit.test_core_runner import only_artifact, submit


def test_a_job_stopped_at_its_time_limit_is_named_and_its_rerun_resumes(tmp_path):
    args = ("stage=toy_numbers", "executor=inline", f"root={tmp_path}", f"results={tmp_path / 'r'}")
    stopped = submit(*args, "preempt_at_shard=2", check=False)
    assert stopped.returncode == 1
    assert "preempted toy_numbers" in stopped.stdout
    assert "1 job(s) stopped at the time limit (time=60min) with a checkpoint" in stopped.stdout

    resumed = submit(*args)  # the same command without the stop: the two written shards are kept
    assert "completed toy_numbers" in resumed.stdout
    assert (only_artifact(tmp_path, "toy_numbers") / "launches.log").read_text() == "computed 2\n"


def test_a_job_downstream_of_a_stopped_one_says_so_rather_than_failed():
    node = types.SimpleNamespace(upstream_keys=("toy_numbers/a", "toy_numbers/b"))
    stopped = {"toy_numbers/b": "was preempted at its time limit (time=60min)"}
    assert _blocked_by(node, stopped) == "upstream toy_numbers/b was preempted at its time limit (time=60min)"
    assert _blocked_by(node, {"toy_numbers/a": "failed"}) == "upstream toy_numbers/a failed"
    assert _blocked_by(node, {"other/c": "failed"}) is None


def test_a_study_takes_the_time_limit_of_the_command_line_like_any_run(tmp_path):
    """Jobs resume after their time limit, so a study file names no limit of its own; a long
    study's command sets `time=` (the README's commands do)."""
    def plan_line(*extra):
        out = submit("stage=all", f"root={tmp_path}", "dry_run=true", *extra).stdout
        return out.splitlines()[0]

    assert "time=60min" in plan_line("study=qa_memory")
    assert "time=240min" in plan_line("study=qa_memory", "time=240")
