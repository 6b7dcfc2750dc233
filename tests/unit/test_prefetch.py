"""Submit-side prefetch into the artifact root's cache (compute nodes are offline).

Nothing can be downloaded on this machine, so HF resources are exercised through the hub's
on-disk cache layout (refs/, snapshots/ with relative symlinks into blobs/), which is what
`from_pretrained` reads when offline; the download branch itself is not exercised here.
"""

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from jobs.offline import offline_env
from stages.core import offline as prefetch
from stages.core import registry
from stages.qa.config import QAConfig
from stages.wiki.config import PretokenizeConfig

REPO = Path(__file__).resolve().parents[2]
REPO_ID = "wikigraph-test/tiny-xlnet"


def _offline_python(code: str, root: Path) -> subprocess.CompletedProcess:
    """Run `code` the way a job runs: only the root's caches, hubs offline, no user cache."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "TIKTOKEN"))}
    env.update(offline_env(root), PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120,
                          check=False)


def _user_hub_cache_with_tiny_xlnet(hub: Path) -> None:
    """An HF hub cache holding a real (tiny) XLNet config, in the hub's blob/snapshot layout."""
    from transformers import XLNetConfig

    staging = hub.parent / "staging"
    XLNetConfig(vocab_size=32, d_model=16, n_layer=1, n_head=2, d_inner=32).save_pretrained(staging)
    repo = hub / ("models--" + REPO_ID.replace("/", "--"))
    commit = "0" * 40
    (repo / "blobs").mkdir(parents=True)
    (repo / "snapshots" / commit).mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    data = (staging / "config.json").read_bytes()
    blob = hashlib.sha256(data).hexdigest()
    (repo / "blobs" / blob).write_bytes(data)
    (repo / "snapshots" / commit / "config.json").symlink_to(f"../../blobs/{blob}")


def test_hub_ids_and_local_paths(tmp_path):
    assert prefetch.is_hub_id("xlnet/xlnet-base-cased") and prefetch.is_hub_id("squad_v2")
    assert not prefetch.is_hub_id(str(tmp_path)) and not prefetch.is_hub_id("data/dev.json")
    assert not prefetch.is_hub_id("/abs/spiece.model") and not prefetch.is_hub_id("a/b/c")


def test_tiktoken_encoding_lands_in_the_root_cache_and_resolves_offline(tmp_path, monkeypatch):
    monkeypatch.delenv("TIKTOKEN_CACHE_DIR", raising=False)
    cache = tmp_path / "art" / "cache"
    try:
        line = registry.get("pretokenize").prefetch_for(PretokenizeConfig(encoding="gpt2"), cache)
    except FileNotFoundError as err:
        pytest.skip(f"no offline source for gpt2 on this machine: {err}")
    assert len(line) == 1 and "tiktoken gpt2" in line[0]
    assert len(list((cache / "tiktoken").iterdir())) == 2  # vocab.bpe and encoder.json, named sha1(url)
    # A job sees only TIKTOKEN_CACHE_DIR, which now holds everything it needs.
    proc = _offline_python("import tiktoken; print(tiktoken.get_encoding('gpt2').encode('hello world'))",
                           tmp_path / "art")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[31373, 995]"


def test_hf_repo_is_copied_from_the_users_cache_and_loads_offline(tmp_path, monkeypatch):
    user_hub = tmp_path / "home" / "hub"
    _user_hub_cache_with_tiny_xlnet(user_hub)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(user_hub))
    root = tmp_path / "art"
    lines = registry.get("qa").prefetch_for(QAConfig(model=REPO_ID), root / "cache")
    assert lines == [f"qa.model={REPO_ID}: copied from {user_hub / 'models--wikigraph-test--tiny-xlnet'}"]
    proc = _offline_python(f"from transformers import XLNetConfig; print(XLNetConfig.from_pretrained('{REPO_ID}').d_model)",
                           root)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "16"
    again = prefetch.fetch_hf_repo("qa.model", REPO_ID, root / "cache", online=False)
    assert again.startswith(f"qa.model={REPO_ID}: cached at {root / 'cache' / 'hf' / 'hub'}")


def test_missing_hf_repo_fails_before_submission_with_the_fix(tmp_path, monkeypatch):
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "empty"))
    with pytest.raises(FileNotFoundError, match=r"qa.model='xlnet/xlnet-base-cased' is not in the offline cache .*"
                                                r"huggingface-cli download xlnet/xlnet-base-cased"):
        prefetch.fetch_hf_repo("qa.model", "xlnet/xlnet-base-cased", tmp_path / "cache", online=False)


def test_missing_dataset_fails_before_submission(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"qa.dataset='no-such-org/no-such-squad' \(split train\) is not in"):
        prefetch.fetch_dataset("qa.dataset", "no-such-org/no-such-squad", "train", tmp_path / "cache", online=False)


def test_stages_without_downloads_fetch_nothing(tmp_path):
    assert registry.get("qa").prefetch_for(QAConfig(), tmp_path) == []  # tiny model, trained tokenizer, sample data
    assert registry.get("extract").prefetch_for(object(), tmp_path) == []
