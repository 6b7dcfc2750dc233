"""A neighbour who can write in the shared artifact root (issue 36, S1-S5, W1, W4).

Each test builds a real artifact with the runner (the toy stages, or a small extract), then
does what a hostile user of the same storage could: edit the manifest, plant a symlink, a FIFO
or an extra shard, pre-create a temporary file name. The run must refuse in one line or ignore
the planted file; it must never read or write outside the artifact.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from stages.core import config, locks, registry
from stages.core.artifacts import load_artifact, write_json_atomic
from stages.core.runner import execute
from stages.core.verify import STAMP, CorruptArtifact, verify_artifact

REPO = Path(__file__).resolve().parents[2]


def _toy(root: Path, **values):
    spec = registry.get("toy_numbers")
    out = execute(spec, config.resolve(spec.config_cls, {"shards": 2, "per_shard": 10, **values}), root, {})
    return out.artifact


def _edit_manifest(artifact: Path, change) -> None:
    path = artifact / "manifest.json"
    manifest = json.loads(path.read_text())
    change(manifest)
    os.chmod(path, 0o644)
    path.write_text(json.dumps(manifest))


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("where", ["dotdot", "absolute"])
def test_s1_manifest_path_outside_the_artifact_is_refused(tmp_path, where):
    artifact = _toy(tmp_path / "art")
    victim = tmp_path / "victim.txt"
    victim.write_text("secret\n")
    rel = os.path.relpath(victim, artifact) if where == "dotdot" else str(victim)
    _edit_manifest(artifact, lambda m: m["files"].append({"path": rel, "bytes": victim.stat().st_size,
                                                          "sha256": _sha(victim)}))
    loaded = load_artifact(tmp_path / "art", "toy_numbers", artifact.name)
    with pytest.raises(CorruptArtifact, match="not a normalised path inside the artifact"):
        verify_artifact(loaded)


def test_s1_fifo_in_the_artifact_does_not_hang(tmp_path):
    """Run in a child with a deadline: before the fix, opening the FIFO blocked forever."""
    artifact = _toy(tmp_path / "art")
    os.mkfifo(artifact / "pipe")
    _edit_manifest(artifact, lambda m: m["files"].append({"path": "pipe", "bytes": 0, "sha256": "0" * 64}))
    code = ("import sys; from pathlib import Path; from stages.core.artifacts import load_artifact;"
            "from stages.core.verify import verify_artifact;"
            f"a = load_artifact(Path({str(tmp_path / 'art')!r}), 'toy_numbers', {artifact.name!r});"
            "\ntry: verify_artifact(a)\nexcept Exception as e: print('REFUSED', e); sys.exit(3)")
    proc = subprocess.run([sys.executable, "-c", code], check=False, cwd=REPO, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 3 and "is not a regular file" in proc.stdout, proc.stdout + proc.stderr


def test_s2_manifest_without_a_file_list_is_refused(tmp_path):
    artifact = _toy(tmp_path / "art")
    _edit_manifest(artifact, lambda m: m.pop("files"))
    (artifact / "shard-000.txt").write_text("999999\n")
    with pytest.raises(CorruptArtifact, match="lists no files"):
        load_artifact(tmp_path / "art", "toy_numbers", artifact.name)


def test_s2_a_shard_the_manifest_does_not_list_is_not_read(tmp_path):
    from stages.formats.articles import shard_paths
    from stages.wiki.spec import EXTRACT

    root = tmp_path / "art"
    out = execute(EXTRACT, config.resolve(EXTRACT.config_cls, {"sample_articles": 40, "workers": 1}), root, {})
    listed = shard_paths(out.artifact)
    planted = out.artifact / "articles-99999.jsonl.zst"
    planted.write_bytes(listed[0].read_bytes())
    assert planted not in shard_paths(out.artifact)
    assert shard_paths(out.artifact) == listed


def test_s3_symlinked_file_is_refused_not_followed(tmp_path):
    artifact = _toy(tmp_path / "art")
    victim = tmp_path / "victim" / "private.txt"
    victim.parent.mkdir()
    shard = artifact / "shard-000.txt"
    victim.write_bytes(shard.read_bytes())  # same bytes: only the link itself gives it away
    os.chmod(victim, 0o600)
    shard.unlink()
    shard.symlink_to(victim)
    loaded = load_artifact(tmp_path / "art", "toy_numbers", artifact.name)
    with pytest.raises(CorruptArtifact, match="is a symlink"):
        verify_artifact(loaded)


def _planted(tmp_path: Path, name: str) -> Path:
    victim = tmp_path / f"victim-{name}"
    victim.write_text("do not overwrite\n")
    return victim


def test_s4_lock_temp_file_is_not_written_through_a_planted_symlink(tmp_path):
    lock = tmp_path / "art" / "toy_numbers" / ".abc.lock"
    lock.parent.mkdir(parents=True)
    victim = _planted(tmp_path, "lock")
    (lock.parent / f"{lock.name}.{socket.gethostname()}.{os.getpid()}.tmp").symlink_to(victim)
    locks.acquire(lock).release()
    assert victim.read_text() == "do not overwrite\n"


def test_s4_stamp_and_json_temp_files_are_not_written_through_planted_symlinks(tmp_path):
    artifact = _toy(tmp_path / "art")
    stamp_victim, json_victim = _planted(tmp_path, "stamp"), _planted(tmp_path, "json")
    (artifact / f"{STAMP}.{os.getpid()}.tmp").symlink_to(stamp_victim)
    (artifact / STAMP).unlink(missing_ok=True)
    verify_artifact(load_artifact(tmp_path / "art", "toy_numbers", artifact.name))
    out = tmp_path / "record.json"
    (tmp_path / f".record.json.{os.getpid()}.tmp").symlink_to(json_victim)
    write_json_atomic(out, {"a": 1})
    assert stamp_victim.read_text() == json_victim.read_text() == "do not overwrite\n"
    assert json.loads(out.read_text()) == {"a": 1}


def test_s5_recorded_config_is_not_interpolated(monkeypatch):
    from stages.wiki.spec import EXTRACT

    monkeypatch.setenv("WIKIGRAPH_TEST_SECRET", "the reader's secret")
    recorded = {"dump": "${oc.env:WIKIGRAPH_TEST_SECRET}", "workers": 1}
    assert config.from_dict(EXTRACT.config_cls, recorded).dump == "${oc.env:WIKIGRAPH_TEST_SECRET}"


@pytest.mark.parametrize("edit", ["signature", "config", "signed_key"])
def test_w1_manifest_must_match_its_directory_and_signature(tmp_path, edit):
    root = tmp_path / "art"
    first, second = _toy(root), _toy(root, scale=3)
    if edit == "signature":  # a copy of another artifact's manifest, read through `.from=<first>`
        (first / "manifest.json").write_text((second / "manifest.json").read_text())
    elif edit == "config":
        _edit_manifest(first, lambda m: m["signature_config"].update(scale=5))
    else:
        _edit_manifest(first, lambda m: m["config"].update(scale=7))
    with pytest.raises(CorruptArtifact, match="manifest.json records"):
        load_artifact(root, "toy_numbers", first.name)


def test_w1_a_component_agrees_with_its_signed_part_on_the_signed_keys_only():
    """pretrain's `model` records its kernel choice and derived values, which are not signed; a
    signed key that differs is named with its component."""
    from stages.core.artifacts import _first_difference

    assert _first_difference({"model": {"mask": "doc"}}, {"model": {"mask": "doc", "attention_impl": "flex"}}) is None
    assert _first_difference({"model": {"mask": "doc"}}, {"model": {"mask": "graph"}}) == "model.mask"
    assert _first_difference({"model": {"mask": "doc"}}, {"model": {"attention_impl": "flex"}}) == "model.mask"


def test_w4_artifact_is_readable_by_the_group_even_under_a_private_umask(tmp_path, monkeypatch):
    old = os.umask(0o077)
    try:
        artifact = _toy(tmp_path / "art")
    finally:
        os.umask(old)
    for path in [artifact, *artifact.rglob("*")]:
        mode = stat.S_IMODE(path.lstat().st_mode)
        assert mode & 0o040, f"{path} has mode {oct(mode)}"
        assert not mode & 0o022, f"{path} is writable by others: {oct(mode)}"
    monkeypatch.setenv("WIKIGRAPH_ARTIFACT_MODE", "600")  # a site that wants private artifacts
    private = _toy(tmp_path / "private")
    assert stat.S_IMODE((private / "shard-000.txt").stat().st_mode) == 0o600
