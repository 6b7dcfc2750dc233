"""Damaged upstream artifacts are refused, not silently consumed (issue 11, integrity).

A real chain (extract -> graph -> pretokenize -> pretrain, generated sample) is built once
with the CLI; each test damages a copy of it and runs a downstream stage with a new signature,
which must fail with one line naming the damaged file and saying how to rebuild it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import zstandard

REPO = Path(__file__).resolve().parents[2]
SMALL = ["extract.sample_articles=60", "extract.workers=1", "pretokenize.workers=1", "pretrain.steps=2",
         "pretrain.packing.token_budget=128", "pretrain.val_every=0"]


def _cli(root: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, str(REPO / "jobs" / "submit.py"), "executor=inline", f"root={root}",
                           f"results={root.parent / 'results'}", *SMALL, *args], cwd=root.parent, env=env,
                          capture_output=True, text=True, timeout=900, check=False)


@pytest.fixture(scope="module")
def chain(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("chain") / "art"
    for stage in ("extract", "graph", "pretokenize", "pretrain"):
        proc = _cli(root, f"stage={stage}")
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return root


@pytest.fixture
def copy(chain, tmp_path) -> Path:
    root = tmp_path / "art"
    shutil.copytree(chain, root, symlinks=True)
    return root


def _artifact(root: Path, stage: str) -> Path:
    (path,) = [p for p in (root / stage).iterdir() if not p.name.startswith(".") and p.is_dir()]
    return path


def _assert_refused(proc: subprocess.CompletedProcess, damaged: Path, stage: str) -> None:
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out[-3000:]
    lines = [line for line in out.splitlines() if str(damaged) in line and "[fail]" in line]
    assert len(lines) == 1, out[-3000:]
    assert f"stage={stage} force=true" in lines[0]
    assert "Traceback" not in out


def test_deleted_article_shard_fails_pretokenize(copy):
    shard = max(_artifact(copy, "extract").glob("articles-*.jsonl.zst"))
    shard.unlink()
    _assert_refused(_cli(copy, "stage=pretokenize", "title_heading=false"), shard, "extract")


def test_flipped_byte_in_zst_shard_fails_pretokenize(copy):
    shard = min(_artifact(copy, "extract").glob("articles-*.jsonl.zst"))
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0x01
    shard.write_bytes(bytes(data))
    _assert_refused(_cli(copy, "stage=pretokenize", "title_heading=false"), shard, "extract")


def test_flipped_bytes_in_model_safetensors_fail_evaluate(copy):
    weights = _artifact(copy, "pretrain") / "model.safetensors"
    data = bytearray(weights.read_bytes())
    start = len(data) // 2
    data[start:start + 4096] = bytes(b ^ 0xFF for b in data[start:start + 4096])
    weights.write_bytes(bytes(data))
    _assert_refused(_cli(copy, "stage=evaluate", "max_docs=4", "generate_tokens=4"), weights, "pretrain")


def test_article_shards_carry_zstd_content_checksums(chain):
    for shard in _artifact(chain, "extract").glob("articles-*.jsonl.zst"):
        assert zstandard.get_frame_parameters(shard.read_bytes()[:18]).has_checksum, shard
