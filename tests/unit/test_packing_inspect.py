"""Inspector: pack listing, links, snippets and summary over N packs."""

import json

import pytest

from stages.core.config import ConfigError
from stages.formats.generators import write_synthetic
from stages.packing.config import PackingConfig
from stages.packing.inspect import inspect_packs, main


@pytest.fixture(scope="module")
def art(tmp_path_factory):
    return write_synthetic(tmp_path_factory.mktemp("c"), n_docs=300, n_communities=6, mean_length=80, seed=2)


def test_inspect_packs_text_and_summary(art):
    cfg = PackingConfig(strategy="dfs", token_budget=256, batch_size=4)
    text, summary = inspect_packs(art.graph, art.tokens, cfg, n_packs=12, show=2)
    assert "pack 0:" in text and "pack 1:" in text and "pack 2:" not in text
    assert "batch shapes: tokens [4, 256], labels [4, 256]" in text
    assert "links (i->j: doc i links to doc j)" in text
    assert "Doc " in text  # titles from the graph
    assert summary["packs"] == 12
    assert summary["fill_rate"] >= 0.99
    assert summary["adjacent_linked_fraction"] > 0.5
    assert 0 < summary["coverage"] <= 1 and summary["documents_allowed"] == 300


def test_cli_overrides_and_json(art, capsys):
    assert (
        main(
            [
                "--graph",
                str(art.graph),
                "--tokens",
                str(art.tokens),
                "--strategy",
                "random",
                "--packs",
                "8",
                "--show",
                "1",
                "--seed",
                "3",
                "token_budget=128",
                "layout=none",
                "--json",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    summary = json.loads(out[out.index("{") :])
    assert summary["strategy"] == "random" and summary["token_budget"] == 128 and summary["packs"] == 8
    assert summary["adjacent_linked_fraction"] < 0.1
    assert ", seed 3" in out  # the seed is the inspector's own option, not a packing key
    with pytest.raises(ConfigError, match="unknown key `token_budgt`"):
        main(["--graph", str(art.graph), "--tokens", str(art.tokens), "token_budgt=5"])
    with pytest.raises(ConfigError, match="unknown key `seed`"):
        main(["--graph", str(art.graph), "--tokens", str(art.tokens), "seed=5"])


def test_the_seed_picks_the_packs(art):
    cfg = PackingConfig(strategy="random", token_budget=256, batch_size=4)
    first, _ = inspect_packs(art.graph, art.tokens, cfg, n_packs=4, show=1, seed=0)
    again, _ = inspect_packs(art.graph, art.tokens, cfg, n_packs=4, show=1, seed=0)
    other, _ = inspect_packs(art.graph, art.tokens, cfg, n_packs=4, show=1, seed=1)
    assert first == again and first != other


def test_missing_artifact_is_named(tmp_path, art):
    with pytest.raises(FileNotFoundError, match="run the `graph` stage first"):
        inspect_packs(tmp_path / "nope", art.tokens, PackingConfig(), n_packs=1)
