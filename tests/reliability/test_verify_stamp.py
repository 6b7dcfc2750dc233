"""The writer stamps what it hashed at commit: the first reader checks sizes and stamps instead of
hashing the artifact again, and a file changed after the commit is still hashed and refused."""

import os

import pytest

from stages.core import config
from stages.core.artifacts import load_artifact
from stages.core.runner import execute
from stages.core.verify import CorruptArtifact, verify_artifact
from stages.wiki.spec import EXTRACT


def test_a_fresh_artifact_is_verified_without_hashing_and_a_later_change_is_caught(tmp_path):
    cfg = config.resolve(EXTRACT.config_cls, {"sample_articles": "30", "workers": "1"})
    outcome = execute(EXTRACT, cfg, tmp_path, {})
    artifact = load_artifact(tmp_path, "extract", outcome.signature)
    assert verify_artifact(artifact)["hashed_bytes"] == 0  # stamped by the commit
    entry = max(artifact.manifest["files"], key=lambda e: e["bytes"])
    path = artifact.path / entry["path"]
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    os.chmod(path, 0o644)
    path.write_bytes(bytes(data))  # same size, a new mtime
    with pytest.raises(CorruptArtifact, match="does not match the sha256"):
        verify_artifact(load_artifact(tmp_path, "extract", outcome.signature))
