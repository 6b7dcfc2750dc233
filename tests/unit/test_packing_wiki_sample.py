"""Packing on artifacts made by the real wiki stages (extract -> graph, pretokenize) from the
generated sample corpus: graph strategies put linked articles next to each other, random does not."""

import pytest

from stages.core.artifacts import load_artifact
from stages.core.config import resolve
from stages.core.runner import execute
from stages.packing.config import PackingConfig
from stages.packing.inspect import inspect_packs, load_encoding
from stages.packing.loader import PackLoader
from stages.packing.stats import PackStats
from stages.wiki.config import ExtractConfig, GraphConfig, PretokenizeConfig
from stages.wiki.spec import EXTRACT, GRAPH, PRETOKENIZE


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    if load_encoding("gpt2") is None:
        pytest.skip("the gpt2 tiktoken encoding cannot be resolved offline here")
    root = tmp_path_factory.mktemp("root")
    done = {}
    for spec, cls, overrides in (
        (EXTRACT, ExtractConfig, {"workers": 1, "sample_articles": 200}),
        (GRAPH, GraphConfig, {}),
        (PRETOKENIZE, PretokenizeConfig, {"workers": 1}),
    ):
        outcome = execute(spec, resolve(cls, overrides), root, {"extract": done["extract"]} if done else {})
        done[spec.name] = load_artifact(root, spec.name, outcome.signature)
    return done["graph"].path, done["pretokenize"].path


def linked_fraction(sample, strategy):
    cfg = PackingConfig(strategy=strategy, token_budget=1024, doc_budget=128, batch_size=8)
    loader = PackLoader.from_paths(*sample, cfg, seed=0)
    stats = PackStats(loader.num_allowed)
    stream = iter(loader)
    for _ in range(6):
        stats.update(next(stream))
    summary = stats.summary()
    assert summary["fill_rate"] >= 0.99 and summary["docs_per_pack_mean"] > 4
    return summary["adjacent_linked_fraction"]


def test_adjacent_linked_fraction_on_the_sample_graph(sample):
    assert linked_fraction(sample, "random") < 0.1
    for strategy, floor in (("random_walk", 0.6), ("bfs", 0.3), ("dfs", 0.6)):
        assert linked_fraction(sample, strategy) > floor, strategy


def test_inspector_decodes_the_sample(sample):
    text, summary = inspect_packs(*sample, PackingConfig(strategy="dfs", token_budget=512, doc_budget=96), 16, 1)
    assert "# " in text  # decoded Markdown: pretokenize starts each document with `# Title`
    assert summary["packs"] == 16
