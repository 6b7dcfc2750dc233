"""The artifact contract through the real CLI: crash safety, resume by shard, cache hits, sweeps."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from jobs import results
from stages.core.artifacts import load_artifact

REPO = Path(__file__).resolve().parents[2]


def submit(*args, check=True):
    env = {**os.environ, "WIKIGRAPH_EXTRA_STAGES": "tests.toy_stages", "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, str(REPO / "jobs" / "submit.py"), *args], check=False, capture_output=True,
                          text=True, env=env, cwd=REPO)
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def only_artifact(root: Path, stage: str) -> Path:
    dirs = [p for p in (root / stage).iterdir() if not p.name.startswith(".")]
    assert len(dirs) == 1, dirs
    return dirs[0]


def test_killed_stage_leaves_nothing_visible_and_rerun_redoes_only_missing_shards(tmp_path):
    root, res = tmp_path / "art", tmp_path / "res"
    killed = submit("stage=toy_numbers", "executor=inline", f"root={root}", f"results={res}", "kill_in_shard=2",
                    check=False)
    assert killed.returncode == -9
    visible = [p for p in (root / "toy_numbers").iterdir() if not p.name.startswith(".")]
    assert visible == []
    partial = next((root / "toy_numbers").glob(".*.partial"))
    assert sorted(p.name for p in (partial / ".shards").iterdir()) == ["shard-000.done", "shard-001.done"]
    # Downstream cannot see the half-written artifact.
    blocked = submit("stage=toy_sum", "executor=inline", f"root={root}", f"results={res}", check=False)
    assert blocked.returncode == 2
    assert "missing upstream artifact: stage `toy_numbers`" in blocked.stderr
    assert "Traceback" not in blocked.stderr
    submit("stage=toy_numbers", "executor=inline", f"root={root}", f"results={res}")
    artifact = only_artifact(root, "toy_numbers")
    assert (artifact / "launches.log").read_text() == "computed 2\n"  # shards 2 and 3 only
    numbers = [int(x) for p in sorted(artifact.glob("shard-*.txt")) for x in p.read_text().split()]
    assert numbers == list(range(4000))
    manifest = json.loads((artifact / "manifest.json").read_text())
    assert {f["path"] for f in manifest["files"]} >= {"shard-000.txt", "shard-003.txt"}
    assert all(len(f["sha256"]) == 64 for f in manifest["files"])
    assert manifest["code"]["commit"] is None or len(manifest["code"]["commit"]) == 40
    submit("stage=toy_sum", "executor=inline", f"root={root}", f"results={res}")
    total = load_artifact(root, "toy_sum", only_artifact(root, "toy_sum").name).manifest["metrics"]["total"]
    assert total == sum(range(4000))


def test_cache_hit_does_not_rerun_and_force_does(tmp_path):
    root, res = tmp_path / "art", tmp_path / "res"
    submit("stage=toy_numbers", "executor=inline", f"root={root}", f"results={res}", "shards=2")
    log = only_artifact(root, "toy_numbers") / "launches.log"
    second = submit("stage=toy_numbers", "executor=inline", f"root={root}", f"results={res}", "shards=2",
                    "workers=5")
    assert "cache hit" in second.stdout
    assert log.read_text() == "computed 2\n"
    assert len(list((res / "records").glob("*.json"))) == 1
    submit("stage=toy_numbers", "executor=inline", f"root={root}", f"results={res}", "shards=2", "force=true")
    assert (only_artifact(root, "toy_numbers") / "launches.log").read_text() == "computed 2\n"
    assert len(list((res / "records").glob("*.json"))) == 2


def test_a_new_results_directory_gets_records_of_the_artifacts_that_exist(tmp_path):
    """A study rerun into a new `results=` directory reports every point of its comparison: those
    it runs and those whose artifacts exist already (recorded from their manifests, once)."""
    root, first, second = tmp_path / "art", tmp_path / "first", tmp_path / "second"
    args = ("executor=inline", f"root={root}", "toy_numbers.shards=1", "toy_numbers.per_shard=10")
    submit("stage=toy_numbers", "executor=inline", f"root={root}", f"results={first}", "shards=1", "per_shard=10")
    submit("stage=toy_sum", *args, f"results={first}", "offset=1")
    out = submit("stage=toy_sum", *args, f"results={second}", "offset=1,2")
    assert "1 job(s) to run" in out.stdout and "1 existing artifact(s) recorded" in out.stdout
    recorded = {r["sweep"]["offset"]: r for r in results.load_records(second)}
    assert sorted(recorded) == ["1", "2"]
    ran_before = next(r for r in results.load_records(first) if r["stage"] == "toy_sum")
    assert recorded["1"]["metrics"] == ran_before["metrics"] and recorded["1"]["signature"] == ran_before["signature"]
    assert "toy_sum" in (second / "summary.md").read_text()
    again = submit("stage=toy_sum", *args, f"results={second}", "offset=1,2")
    assert "nothing to run" in again.stdout and "recorded" not in again.stdout
    assert len(list((second / "records").glob("*.json"))) == 2


@pytest.mark.parametrize("executor", ["inline", "local"])
def test_sweep_of_three_values_gives_three_records_and_one_table(tmp_path, executor):
    root, res = tmp_path / "art", tmp_path / "res"
    submit("stage=toy_numbers", "executor=inline", f"root={root}", f"results={res}", "shards=1", "per_shard=10")
    out = submit("stage=toy_sum", f"executor={executor}", f"root={root}", f"results={res}", "offset=1,2,3",
                 "toy_numbers.shards=1", "toy_numbers.per_shard=10")
    assert "3 job(s) to run" in out.stdout
    records = [r for r in results.load_records(res) if r["stage"] == "toy_sum"]
    assert sorted(r["sweep"]["offset"] for r in records) == ["1", "2", "3"]
    assert sorted(r["metrics"]["total"] for r in records) == [46, 47, 48]
    table = (res / "toy_sum.csv").read_text().strip().splitlines()
    assert table[0].split(",")[:2] == ["signature", "offset"] and len(table) == 4
    assert "## toy_sum" in (res / "summary.md").read_text()


def test_concurrent_record_writers_never_clobber(tmp_path):
    code = ("import sys; from pathlib import Path; from jobs.results import write_record\n"
            "for i in range(50): write_record(Path(sys.argv[1]), stage='s', signature=f'{sys.argv[2]}-{i}', "
            "sweep={}, metrics={'i': i}, artifact=None, logs='', run_id='r', upstream={}, extra={})")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path), str(n)], cwd=REPO) for n in range(4)]
    assert [p.wait() for p in procs] == [0, 0, 0, 0]
    assert len(list((tmp_path / "records").glob("*.json"))) == 200
    assert len(results.load_records(tmp_path)) == 200


def test_summary_splits_a_stage_by_its_input_but_the_csv_keeps_every_record(tmp_path):
    common = {"sweep": {}, "artifact": None, "logs": "", "run_id": "r", "extra": {}}
    results.write_record(tmp_path, stage="evaluate", signature="lm1", metrics={"ppl_graph": 9.5},
                         upstream={"pretrain": "p", "graph": "g"}, **common)
    results.write_record(tmp_path, stage="evaluate", signature="qa1", metrics={"f1": 50.0},
                         upstream={"qa": "q"}, **common)
    summary = results.collect(tmp_path)
    lm = summary.split("## evaluate (of pretrain)")[1].split("\n## ")[0]
    qa = summary.split("## evaluate (of qa)")[1].split("\n## ")[0]
    assert "ppl_graph" in lm and "f1" not in lm and "lm1" in lm
    assert "f1" in qa and "ppl_graph" not in qa and "qa1" in qa
    header, *rows = (tmp_path / "evaluate.csv").read_text().splitlines()
    assert header == "signature,f1,ppl_graph" and len(rows) == 2
