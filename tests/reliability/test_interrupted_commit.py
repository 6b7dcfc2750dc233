"""Commits that a signal can interrupt anywhere, and state files a kill can tear (issue 36, L1-L5, W2).

Signals are sent at named lines (`stages.core.faults`, ``WIKIGRAPH_FAULT=<point>[:term|:int]``),
never after a timed delay. After each interruption the next plain run (no force=true) must
complete the artifact, lose nothing, and leave no hidden leftovers.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from stages.core import config, registry
from stages.core.runner import execute
from stages.core.verify import verify_artifact

REPO = Path(__file__).resolve().parents[2]
DRIVER = """
import sys
from pathlib import Path
from stages.core import config, registry
from stages.core.runner import execute
spec = registry.get(sys.argv[2])
values = dict(arg.split("=", 1) for arg in sys.argv[4:])
execute(spec, config.resolve(spec.config_cls, values), Path(sys.argv[1]), {}, force=sys.argv[3] == "force")
"""


def _drive(root: Path, stage: str, *values: str, force: bool = False, fault: str | None = None):
    env = {**os.environ, "PYTHONPATH": str(REPO), "WIKIGRAPH_EXTRA_STAGES": "tests.toy_stages", "OMP_NUM_THREADS": "1"}
    env.pop("WIKIGRAPH_FAULT", None)
    if fault:
        env["WIKIGRAPH_FAULT"] = fault
    return subprocess.run([sys.executable, "-c", DRIVER, str(root), stage, "force" if force else "plain", *values],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=False)


def _toy(root: Path, **values):
    spec = registry.get("toy_numbers")
    return execute(spec, config.resolve(spec.config_cls, {"shards": 2, "per_shard": 10, **values}), root, {})


def _hidden(root: Path, stage: str) -> list[str]:
    return sorted(p.name for p in (root / stage).iterdir() if p.name.startswith(".") and not p.name.endswith(".lock"))


def test_l1_unknown_directory_at_the_artifact_path_is_moved_aside_not_deleted(tmp_path):
    root = tmp_path / "art"
    signature = _toy(tmp_path / "probe").signature
    mine = root / "toy_numbers" / signature
    mine.mkdir(parents=True)
    (mine / "notes.txt").write_text("a week of someone's work\n")
    out = _toy(root)
    assert (out.artifact / "manifest.json").is_file()
    kept = [p for p in (root / "toy_numbers").glob(f".{signature}.unknown-*") if (p / "notes.txt").is_file()]
    assert kept and (kept[0] / "notes.txt").read_text() == "a week of someone's work\n"


def test_l2_extract_interrupted_after_its_scratch_is_removed_completes_on_rerun(tmp_path):
    root = tmp_path / "art"
    killed = _drive(root, "extract", "sample_articles=40", "workers=1", fault="extract.after_raw_removed:term")
    assert killed.returncode == -signal.SIGTERM, killed.stderr[-2000:]
    rerun = _drive(root, "extract", "sample_articles=40", "workers=1")
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    (artifact,) = [p for p in (root / "extract").iterdir() if not p.name.startswith(".")]
    manifest = json.loads((artifact / "manifest.json").read_text())
    assert manifest["metrics"]["articles"] > 0 and not (artifact / "raw").exists()


def test_l2_extract_killed_while_the_runner_hashes_completes_on_rerun(tmp_path, monkeypatch):
    """The state of a kill inside the commit's hashing: extract's run returned, its scratch is
    gone, the shard markers are still there and no manifest is written."""
    from stages.core import runner
    from stages.wiki.spec import EXTRACT

    root = tmp_path / "art"
    cfg = config.resolve(EXTRACT.config_cls, {"sample_articles": 40, "workers": 1})

    def killed(*_args, **_kwargs):
        raise KeyboardInterrupt  # SIGINT while hashing

    monkeypatch.setattr(runner, "commit_artifact", killed)
    with pytest.raises(KeyboardInterrupt):
        execute(EXTRACT, cfg, root, {})
    monkeypatch.undo()
    out = execute(EXTRACT, cfg, root, {})
    assert out.metrics["articles"] > 0
    verify_artifact(registry_artifact(root, "extract", out.signature))


def registry_artifact(root: Path, stage: str, signature: str):
    from stages.core.artifacts import load_artifact

    return load_artifact(root, stage, signature)


def test_l3_interrupted_force_swap_is_completed_by_the_next_plain_run(tmp_path):
    """The state a kill leaves between moving the old artifact aside and renaming the new one in."""
    root = tmp_path / "art"
    out = _toy(root)
    partial = root / "toy_numbers" / f".{out.signature}.partial"
    os.replace(out.artifact, partial)  # a complete new artifact, manifest written, not yet renamed
    aside = root / "toy_numbers" / f".{out.signature}.replaced-1700000000"
    _toy(tmp_path / "old")  # the artifact that was being replaced
    os.replace(tmp_path / "old" / "toy_numbers" / out.signature, aside)
    rerun = _toy(root)
    assert rerun.artifact == out.artifact and (out.artifact / "manifest.json").is_file()
    assert _hidden(root, "toy_numbers") == []
    assert (out.artifact / "launches.log").read_text().splitlines() == ["computed 2"]  # not recomputed


POINTS = ["commit.after_hash", "commit.after_manifest", "commit.after_markers", "commit.after_rename",
          "commit.after_move_aside"]


@pytest.mark.parametrize("how", ["kill", "term"])
@pytest.mark.parametrize("point", POINTS)
def test_signal_at_every_commit_line_is_completed_by_the_next_plain_run(tmp_path, point, how):
    root = tmp_path / "art"
    force = point == "commit.after_move_aside"  # only a forced rerun has something to move aside
    if force:
        assert _drive(root, "toy_numbers", "shards=2", "per_shard=10").returncode == 0
    killed = _drive(root, "toy_numbers", "shards=2", "per_shard=10", force=force, fault=f"{point}:{how}")
    assert killed.returncode == -{"kill": signal.SIGKILL, "term": signal.SIGTERM}[how], killed.stderr[-2000:]
    rerun = _drive(root, "toy_numbers", "shards=2", "per_shard=10")
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    out = _toy(root)
    assert out.cache_hit
    verify_artifact(registry_artifact(root, "toy_numbers", out.signature))
    assert _hidden(root, "toy_numbers") == []


def test_l4_torn_metrics_line_is_skipped_and_counted(tmp_path):
    from stages.pretrain.metrics import MetricsLog

    log = tmp_path / "metrics.jsonl"
    log.write_text(json.dumps({"step": 1, "loss": 3.0}) + "\n" + json.dumps({"step": 2, "loss": 2.5}) + "\n"
                   + '{"step": 3, "lo')
    metrics = MetricsLog(log, True, resume_step=2)
    assert metrics.torn_lines == 1
    assert [json.loads(line)["step"] for line in log.read_text().splitlines()] == [1, 2]


@pytest.mark.parametrize("damage", ["optimizer.bin", "trainer_state.json"])
def test_l5_damaged_newest_checkpoint_falls_back_to_the_previous(tmp_path, caplog, damage):
    from stages.pretrain import checkpoint as ckpt

    for step in (10, 20):
        tmp = ckpt.checkpoint_dir(tmp_path, step).with_name(f"step-{step:08d}.tmp")
        tmp.mkdir(parents=True)
        (tmp / "optimizer.bin").write_bytes(b"\x01" * 4096)
        (tmp / ckpt.TRAINER_STATE).write_text(json.dumps({"step": step}))
        if hasattr(ckpt, "_seal"):
            ckpt._seal(tmp)
        os.replace(tmp, ckpt.checkpoint_dir(tmp_path, step))
    newest = ckpt.checkpoint_dir(tmp_path, 20) / damage
    newest.write_bytes(newest.read_bytes()[: len(newest.read_bytes()) // 2])
    assert ckpt.latest_checkpoint(tmp_path) == ckpt.checkpoint_dir(tmp_path, 10)
    assert str(newest) in caplog.text


@pytest.mark.parametrize("cycle", [2, 3, 4])
def test_w2_redirect_cycles_of_any_length_are_dropped(tmp_path, cycle):
    from stages.formats.articles import read_redirects
    from stages.wiki.spec import EXTRACT

    pages = [("Target", "A real article linking to [[R0]].", None)]
    pages += [(f"R{i}", "", f"R{(i + 1) % cycle}") for i in range(cycle)]
    pages += [("Chain0", "", "Chain1"), ("Chain1", "", "Target")]
    dump = tmp_path / "dump.xml"
    body = "".join(
        f"<page><title>{title}</title><ns>0</ns><id>{i + 1}</id>"
        + (f'<redirect title="{target}" />' if target else "")
        + f"<revision><id>{i + 1}</id><text>{'#REDIRECT [[' + target + ']]' if target else text}</text></revision></page>"
        for i, (title, text, target) in enumerate(pages))
    dump.write_text('<mediawiki xmlns="http://www.mediawiki.org/xml/export-0.10/"><siteinfo><namespaces>'
                    '<namespace key="0" /></namespaces></siteinfo>' + body + "</mediawiki>")
    out = execute(EXTRACT, config.resolve(EXTRACT.config_cls, {"dump": str(dump), "workers": 1}), tmp_path / "art", {})
    redirects = read_redirects(out.artifact)
    assert redirects == {"Chain0": "Target", "Chain1": "Target"}, redirects
