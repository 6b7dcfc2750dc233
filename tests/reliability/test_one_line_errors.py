"""Bad state on shared storage gives one line naming the path and the fix, never a traceback or
a hang (issue 36, T1-T11). Lock cases run in a child with a deadline: before the fix some spun
or waited forever."""

from __future__ import annotations

import bz2
import errno
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from stages.core import config
from stages.core.verify import CorruptArtifact

REPO = Path(__file__).resolve().parents[2]
ACQUIRE = """
import sys
from stages.core import locks
locks.GARBAGE_STALE_S = 0.5
try:
    locks.acquire(sys.argv[1], poll_s=0.05).release()
    print("ACQUIRED")
except Exception as err:
    print(f"REFUSED {type(err).__name__}: {err}")
"""


def _acquire(lock: Path) -> str:
    proc = subprocess.run([sys.executable, "-c", ACQUIRE, str(lock)], check=False, cwd=REPO, capture_output=True, text=True,
                          timeout=30, env={**os.environ, "PYTHONPATH": str(REPO)})
    out = [line for line in (proc.stdout + proc.stderr).splitlines() if line.strip()]
    assert "Traceback" not in proc.stderr, proc.stderr
    return next((line for line in out if line.startswith(("ACQUIRED", "REFUSED"))), "\n".join(out))


@pytest.mark.parametrize("pid", ["abc", 1e30, -1, 0])
def test_t1_lock_with_a_garbage_pid_is_taken_over(tmp_path, pid):
    lock = tmp_path / ".abc.lock"
    lock.write_text(json.dumps({"host": "elsewhere", "pid": pid, "since": 0}))
    old = time.time() - 3600
    os.utime(lock, (old, old))
    assert _acquire(lock) == "ACQUIRED"


def test_t2_dangling_symlink_lock_is_refused_in_one_line(tmp_path):
    lock = tmp_path / ".abc.lock"
    lock.symlink_to(tmp_path / "nowhere")
    line = _acquire(lock)
    assert line.startswith("REFUSED") and str(lock) in line and "remove it" in line


def test_t3_garbage_lock_with_a_future_mtime_is_taken_over(tmp_path):
    lock = tmp_path / ".abc.lock"
    lock.write_text("\x00garbage")
    future = time.time() + 86400
    os.utime(lock, (future, future))
    assert _acquire(lock) == "ACQUIRED"


def test_t4_lock_path_that_is_a_directory_is_refused_in_one_line(tmp_path):
    lock = tmp_path / ".abc.lock"
    lock.mkdir()
    old = time.time() - 3600
    os.utime(lock, (old, old))
    line = _acquire(lock)
    assert line.startswith("REFUSED") and str(lock) in line and "remove it" in line


def _cli(capsys, tmp_path: Path, *args: str) -> tuple[int, list[str]]:
    from jobs.cli import main

    code = main(["stage=toy_numbers", "executor=inline", f"results={tmp_path / 'results'}", "shards=1",
                 "per_shard=3", *args])
    captured = capsys.readouterr()
    return code, [line for line in (captured.err + captured.out).splitlines() if line.startswith(("error", "[fail]"))]


def test_t5_read_only_root_is_one_line(tmp_path, capsys, monkeypatch):
    """Tests run as root here, where chmod cannot make a directory read-only: the file system's
    answer is simulated at mkdir."""
    root = tmp_path / "ro"
    real_mkdir = Path.mkdir

    def read_only(self, *args, **kwargs):
        if str(self).startswith(str(root)):
            raise OSError(errno.EROFS, "Read-only file system", str(self))
        return real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", read_only)
    code, lines = _cli(capsys, tmp_path, f"root={root}")
    assert code != 0 and len(lines) == 1 and str(root) in lines[0] and "writable root=" in lines[0], lines


def test_t6_full_disk_is_one_line_naming_the_file(tmp_path, capsys, monkeypatch):
    import tests.toy_stages as toy

    def full(cfg, ctx):
        raise OSError(errno.ENOSPC, "No space left on device", str(ctx.out_dir / "shard-000.txt"))

    monkeypatch.setattr(toy, "run_numbers", full)
    code, lines = _cli(capsys, tmp_path, f"root={tmp_path / 'art'}")
    assert code != 0 and len(lines) == 1 and "shard-000.txt" in lines[0] and "free space" in lines[0], lines


@pytest.mark.parametrize("name", ["runs", "cache"])
def test_t7_runs_or_cache_that_is_a_file_is_one_line(tmp_path, capsys, name):
    root = tmp_path / "art"
    root.mkdir()
    (root / name).write_text("not a directory\n")
    args = ("stage=extract", "sample_articles=20", "workers=1") if name == "cache" else ()
    from jobs.cli import main

    code = main([*(args or ("stage=toy_numbers", "shards=1", "per_shard=3")), "executor=inline",
                 f"root={root}", f"results={tmp_path / 'results'}"])
    captured = capsys.readouterr()
    lines = [line for line in (captured.err + captured.out).splitlines() if line.startswith(("error", "[fail]"))]
    assert code != 0 and len(lines) == 1 and str(root / name) in lines[0] and "move" in lines[0], lines
    assert "Traceback" not in captured.err


def test_t8_root_with_a_comma_is_a_path_not_a_sweep():
    from jobs.args import parse_args

    parsed = parse_args(["stage=extract", "root=/data/a,b", "results=/r/x,y"], ["nodes"])
    assert parsed.globals["root"] == "/data/a,b" and parsed.globals["results"] == "/r/x,y"


def test_t9_deeply_nested_manifest_is_one_line(tmp_path):
    from stages.core.artifacts import load_artifact

    artifact = tmp_path / "extract" / "0123456789ab"
    artifact.mkdir(parents=True)
    (artifact / "manifest.json").write_text("[" * 200_000 + "]" * 200_000)
    with pytest.raises(CorruptArtifact) as err:
        load_artifact(tmp_path, "extract", "0123456789ab")
    assert "\n" not in str(err.value) and "manifest.json" in str(err.value)


@pytest.mark.parametrize("value", ["`x", "@x", "%x", "!!python/object:os.system"])
def test_t10_yaml_special_values_are_taken_literally(value):
    from stages.wiki.spec import EXTRACT

    with pytest.raises(config.ConfigError) as err:  # the literal text reaches the key's own check
        config.resolve(EXTRACT.config_cls, {"dump": value})
    assert f"dump {value} not found" in str(err.value)
    with pytest.raises(config.ConfigError, match="workers"):
        config.resolve(EXTRACT.config_cls, {"workers": value})


def test_t11_utf16_compressed_dump_says_to_decompress_first(tmp_path):
    from stages.wiki.dumps import detect_format

    dump = tmp_path / "pages.xml.bz2"
    dump.write_bytes(bz2.compress('<?xml version="1.0"?><mediawiki></mediawiki>'.encode("utf-16")))
    with pytest.raises(ValueError) as err:
        detect_format(dump)
    message = str(err.value)
    assert "bzip2 -dc pages.xml.bz2 | iconv" in message and "iconv -f UTF-16 -t UTF-8 pages.xml.bz2" not in message
