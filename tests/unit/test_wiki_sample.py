"""The generated sample corpus: deterministic, realistic markup, communities, hubs, facts."""

import collections
import gzip
import json

from stages.wiki.sample import generate_sample
from stages.wiki.titles import normalize_title
from stages.wiki.wikitext import convert, render_links


def test_same_seed_same_dump_other_seed_other_dump(tmp_path):
    a = generate_sample(60, seed=1).write_xml(tmp_path / "a.xml").read_bytes()
    b = generate_sample(60, seed=1).write_xml(tmp_path / "b.xml").read_bytes()
    c = generate_sample(60, seed=2).write_xml(tmp_path / "c.xml").read_bytes()
    assert a == b and a != c


def test_wikitext_uses_the_markup_real_pages_use():
    corpus = generate_sample(300)
    assert len(corpus.articles) == 300 and len({a.title for a in corpus.articles}) == 300
    joined = "\n".join(a.wikitext for a in corpus.articles)
    for markup in ("{{Infobox", "== History ==", "\n* ", "<ref", "{{cite book", "<!--", "[[Category:",
                   "&amp;", "[http://", '{| class="wikitable"', "|", "#History|"):
        assert markup in joined, markup
    assert len(corpus.redirects) >= 30
    assert all(target in {a.title for a in corpus.articles} for target in corpus.redirects.values())


def _link_graph(corpus):
    redirects = corpus.redirects
    graph = {}
    for article in corpus.articles:
        _, links = render_links(convert(article.wikitext).text, lambda t: redirects.get(t, t))
        graph[article.title] = [t for t in links if t != article.title]
    return graph


def test_links_stay_mostly_in_their_community_and_hubs_collect_many_links():
    corpus = generate_sample(300)
    community = {a.title: a.community for a in corpus.articles}
    graph = _link_graph(corpus)
    edges = [(s, t) for s, targets in graph.items() for t in targets]
    assert all(t in community for _, t in edges)  # every link resolves to an article
    local = sum(community[s] == community[t] for s, t in edges if community[s] >= 0 and community[t] >= 0)
    between_articles = sum(community[s] >= 0 and community[t] >= 0 for s, t in edges)
    assert local / between_articles > 0.8
    in_degree = collections.Counter(t for _, t in edges)
    degrees = sorted(in_degree.values(), reverse=True)
    assert degrees[0] >= 5 * (sum(degrees) / len(community))  # hubs


def test_facts_are_stated_by_their_subject_and_repeated_by_articles_linking_to_it():
    corpus = generate_sample(300)
    by_title = {a.title: a for a in corpus.articles}
    graph = _link_graph(corpus)
    repeated = 0
    for article in corpus.articles:
        text = convert(article.wikitext).text
        for fact in article.facts:
            assert fact.subject == article.title
            assert fact.sentence in text and fact.value in fact.sentence
        for target in graph[article.title]:
            if any(f"whose {f.attribute} is {f.value}" in text for f in by_title[target].facts):
                repeated += 1
    assert repeated >= 0.9 * sum(len(t) for t in graph.values())


def test_cirrus_dump_has_index_and_document_lines_with_source_text(tmp_path):
    corpus = generate_sample(40)
    path = corpus.write_cirrus(tmp_path / "dump.json.gz")
    with gzip.open(path, "rt") as handle:
        lines = handle.read().splitlines()
    assert len(lines) % 2 == 0
    index, doc = json.loads(lines[0]), json.loads(lines[1])
    assert set(index) == {"index"}
    assert doc["source_text"] == corpus.articles[0].wikitext
    assert doc["title"] == corpus.articles[0].title and doc["namespace"] == 0
    aliases = [r["title"] for line in lines[1::2] for r in json.loads(line)["redirect"]]
    assert sorted(aliases) == sorted(corpus.redirects)
    assert all(normalize_title(t) for t in doc["outgoing_link"])
