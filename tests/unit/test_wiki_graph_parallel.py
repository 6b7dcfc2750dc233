"""The graph stage over ranks x workers: the same artifact, byte for byte, for any world size,
worker count or memory budget; spills only under the partial directory, none left after the
commit; a crashed run resumes from its markers."""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from stages.core import config as config_lib
from stages.core.artifacts import load_artifact, partial_dir
from stages.core.runner import execute, stage_signature
from stages.formats.articles import iter_articles, read_titles
from stages.formats.graph import GRAPH_FILES, JSONL_FILE, concat_npy, write_graph
from stages.wiki import components, dump_writer
from stages.wiki import graph as graph_stage
from stages.wiki.spec import EXTRACT, GRAPH

REPO = Path(__file__).resolve().parents[2]

_RANK = """
import json, sys
from pathlib import Path
from stages.core import config
from stages.core.artifacts import load_artifact
from stages.core.runner import execute, stage_signature
from stages.wiki.spec import GRAPH
root, extract_sig, overrides = Path(sys.argv[1]), sys.argv[2], json.loads(sys.argv[3])
out = execute(GRAPH, config.resolve(GRAPH.config_cls, overrides), root,
              {"extract": load_artifact(root, "extract", extract_sig)})
print(json.dumps(out.metrics))
"""


def _extract(root: Path, **overrides) -> str:
    overrides.setdefault("workers", 1)
    return execute(EXTRACT, config_lib.resolve(EXTRACT.config_cls, overrides), root, {}).signature


def _graph_world(source_root: Path, extract_sig: str, root: Path, ranks: int, **overrides) -> dict:
    """The graph stage as `ranks` concurrent processes (RANK/WORLD_SIZE, as torchrun or srun
    set them) on a copy of the extract artifact; returns rank 0's metrics."""
    shutil.copytree(source_root / "extract" / extract_sig, root / "extract" / extract_sig)
    procs = []
    for rank in range(ranks):
        env = dict(os.environ, RANK=str(rank), WORLD_SIZE=str(ranks), LOCAL_RANK=str(rank), PYTHONPATH=str(REPO))
        procs.append(subprocess.Popen([sys.executable, "-c", _RANK, str(root), extract_sig, json.dumps(overrides)],
                                      env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outputs = [p.communicate(timeout=300) for p in procs]
    for p, (_, err) in zip(procs, outputs):
        assert p.returncode == 0, err[-3000:]
    return json.loads(outputs[0][0].strip().splitlines()[-1])


def _checksums(root: Path) -> dict[str, str]:
    (artifact,) = (root / "graph").iterdir()
    manifest = json.loads((artifact / "manifest.json").read_text())
    return {f["path"]: f["sha256"] for f in manifest["files"]}


def _reference(extract_dir: Path, out: Path) -> dict[str, str]:
    """The graph written in one piece from edge arrays built in plain Python."""
    titles = read_titles(extract_dir)
    ids = {t: i for i, t in enumerate(titles)}
    src, dst = [], []
    for article in iter_articles(extract_dir):
        for link in article.links:
            if link in ids:
                src.append(article.id)
                dst.append(ids[link])
    write_graph(out, titles, np.array(src, np.int32), np.array(dst, np.int32))
    return {name: hashlib.sha256((out / name).read_bytes()).hexdigest()
            for name in (*GRAPH_FILES, JSONL_FILE, "both_indptr.npy", "both_indices.npy")}


_WORLDS = [(1, 1, 256.0), (2, 2, 0.05), (3, 1, 0.005)]  # ranks, workers, memory_mb (tiny: many runs and ranges)


@pytest.mark.parametrize("source", ["sample", "multistream"])
def test_the_artifact_is_the_same_for_any_world_size(tmp_path, source):
    base = tmp_path / "extract"
    if source == "sample":
        sig = _extract(base, sample_articles=200, shards=4)
    else:
        pages = dump_writer.sample_pages(150, seed=1)
        dump = dump_writer.write_multistream(pages, tmp_path / "data" / "wiki-multistream.xml.bz2",
                                             pages_per_stream=10)["path"]
        sig = _extract(base, dump=str(dump), shards=5, read_unit_mb=0.001)
    sums, metrics = [], []
    for ranks, workers, memory_mb in _WORLDS:
        root = tmp_path / f"w{ranks}x{workers}"
        metrics.append(_graph_world(base, sig, root, ranks, workers=workers, memory_mb=memory_mb))
        sums.append(_checksums(root))
        (artifact,) = (root / "graph").iterdir()
        assert not (artifact / "_work").exists() and not any(root.glob("graph/.*"))  # no spill left behind
        assert not partial_dir(root, "graph", artifact.name).exists()
    assert sums[0] == sums[1] == sums[2]
    assert metrics[0]["reduce_ranges"] >= 1 and metrics[2]["reduce_ranges"] > 3  # the budget did cut
    assert metrics[2]["runs"] > metrics[2]["map_units"]  # and the map spilled several runs per shard
    expected = _reference(base / "extract" / sig, tmp_path / "reference")
    assert {k: sums[0][k] for k in expected} == expected  # the one-piece writer's bytes
    stats = json.loads((next((tmp_path / "w1x1" / "graph").iterdir()) / "stats.json").read_text())
    assert stats["edges"] > 0 and stats["nodes"] == metrics[0]["nodes"]


def test_a_crashed_reduce_leaves_spills_only_in_the_partial_directory_and_resumes(tmp_path, monkeypatch):
    root = tmp_path / "root"
    sig = _extract(root, sample_articles=120, shards=3)
    upstream = {"extract": load_artifact(root, "extract", sig)}
    cfg = config_lib.resolve(GRAPH.config_cls, {"workers": 1, "memory_mb": 0.02})
    calls = {"map": 0, "reduce": 0}
    real_map, real_reduce = graph_stage.map_shard, graph_stage.reduce_range

    def counting_map(task):
        calls["map"] += 1
        return real_map(task)

    def failing_reduce(task):
        calls["reduce"] += 1
        if calls["reduce"] == 3:
            raise RuntimeError("node lost")
        return real_reduce(task)

    monkeypatch.setattr(graph_stage, "map_shard", counting_map)
    monkeypatch.setattr(graph_stage, "reduce_range", failing_reduce)
    before = set(tmp_path.rglob("*"))
    with pytest.raises(RuntimeError, match="node lost"):
        execute(GRAPH, cfg, root, upstream)
    partial = partial_dir(root, "graph", stage_signature(GRAPH, cfg, upstream))
    new = {p for p in set(tmp_path.rglob("*")) - before if p.is_file()}
    spills = [p for p in new if "map-" in p.name or "part-" in p.name]
    assert spills and all(partial in p.parents for p in spills)  # nowhere but the partial directory
    assert calls["map"] == 3

    monkeypatch.setattr(graph_stage, "reduce_range", real_reduce)
    calls["map"] = 0
    # The relaunch cuts the ids differently (another budget): only ranges with the same bounds are kept.
    relaunch = config_lib.resolve(GRAPH.config_cls, {"workers": 1, "memory_mb": 0.03})
    done = execute(GRAPH, relaunch, root, upstream)
    assert calls["map"] == 0  # the map runs were kept; only the missing ranges were redone
    assert not partial.exists() and not (done.artifact / "_work").exists()
    fresh = tmp_path / "fresh"
    shutil.copytree(root / "extract", fresh / "extract")
    again = execute(GRAPH, config_lib.resolve(GRAPH.config_cls, {"workers": 1}), fresh,
                    {"extract": load_artifact(fresh, "extract", sig)})
    assert _checksums(root) == _checksums(fresh) and again.signature == done.signature


def test_components_over_csr_chunks_match_the_edge_list_union_find():
    from stages.formats.graph import build_csr

    rng = np.random.default_rng(5)
    for n, m in ((500, 380), (60, 400), (1, 0)):  # sparse: many trees; dense: many hooks of one root per chunk
        src, dst = rng.integers(0, n, m), rng.integers(0, n, m)
        indptr, indices = build_csr(n, src, dst)
        expected = components.weakly_connected_components(n, src, dst)
        for chunk in (1, 7, 64, 10_000):
            labels = components.weakly_connected_components_chunks(n, components.csr_chunks(indptr, indices, chunk))
            assert labels.tolist() == expected.tolist()


def test_degree_stats_from_counts_are_numpys_percentiles():
    rng = np.random.default_rng(2)
    percentiles = [0, 1, 33, 50, 90, 99, 100]
    for trial in range(300):
        degrees = rng.poisson(3, int(rng.integers(1, 400))) ** (1 + trial % 2)
        counts = components.DegreeCounts()
        for piece in np.array_split(degrees, 3):
            counts.add(piece)
        stats = counts.stats("out", percentiles)
        assert [stats[f"out_degree_p{p}"] for p in percentiles] == \
            [round(float(np.percentile(degrees, p)), 3) for p in percentiles]
        assert stats["out_degree_mean"] == round(float(degrees.mean()), 3)
        assert stats["out_degree_max"] == int(degrees.max())


def test_title_tables_read_in_windows_answer_like_the_mapped_ones(tmp_path):
    from stages.formats.tables import (
        HashFile,
        HashIndex,
        StringTable,
        TableSlices,
        hashes_of,
        write_lines,
        write_starts,
    )

    titles = [f"Title {i} {'é' * (i % 5)}" for i in range(5000)] + ["", "x", "Title 7 éé"]
    write_lines(tmp_path / "t.txt", titles)
    mapped = StringTable(tmp_path / "t.txt")
    assert write_starts(tmp_path / "t.txt", block=1000) == len(titles)
    assert np.load(tmp_path / "t.txt.starts.npy").tolist() == mapped.starts.tolist()
    table = TableSlices(tmp_path / "t.txt")
    assert len(table) == len(titles) and table.slice(4990, 5003) == titles[4990:5003] and table.slice(3, 3) == []
    queries = [*titles[::37], "absent", "Title 1", "title 1", "Title 7 éé"]
    expected = HashIndex.build(mapped, prefix=tmp_path / "ref").find(queries)
    for memory, window in ((1 << 30, 1 << 20), (4096, 7), (100, 1)):  # one bucket / window, then many
        index = HashFile.build(table, tmp_path / f"i{memory}.npy", memory, chunk=999)
        assert index.find_hashed(*hashes_of(queries), window).tolist() == expected.tolist()
    assert not list(tmp_path.glob("*.bucket*"))


def test_concat_npy_writes_the_bytes_of_np_save(tmp_path):
    rng = np.random.default_rng(0)
    parts = [rng.integers(0, 1000, size, dtype=np.int32) for size in (0, 5, 100_000, 3)]
    for k, part in enumerate(parts):
        np.save(tmp_path / f"p{k}.npy", part)
    concat_npy(tmp_path / "joined.npy", [tmp_path / f"p{k}.npy" for k in range(len(parts))], np.int32)
    np.save(tmp_path / "whole.npy", np.concatenate(parts))
    assert (tmp_path / "joined.npy").read_bytes() == (tmp_path / "whole.npy").read_bytes()


def test_plan_ranges_cuts_within_budget(tmp_path):
    assert graph_stage.plan_ranges(0, [], 10) == [(0, 0)]
    n = 1000
    keys = np.sort(np.random.default_rng(1).choice(n * n, 5000, replace=False)).astype(np.int64)
    np.save(tmp_path / "run.npy", keys)
    ranges = graph_stage.plan_ranges(n, [tmp_path / "run.npy"], 600)
    assert ranges[0][0] == 0 and ranges[-1][1] == n
    assert all(a[1] == b[0] for a, b in itertools.pairwise(ranges))
    for lo, hi in ranges:
        inside = int(((keys >= lo * n) & (keys < hi * n)).sum())
        assert inside <= 600 or hi - lo <= -(-n // 1000)
