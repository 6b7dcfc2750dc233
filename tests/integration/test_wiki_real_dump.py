"""extract -> graph -> pretokenize on the real 206-page enwiki sample (skipped without it).

The expected numbers are recomputed here from the raw XML with an independent reader, so the
test checks the converter rather than restating its output.
"""

import bz2
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from stages.core import config as config_lib
from stages.core.artifacts import load_artifact
from stages.core.runner import execute
from stages.formats.articles import iter_articles, read_redirects, read_titles
from stages.wiki.spec import EXTRACT, GRAPH

DUMP = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "wiki" / "enwiki-2016-sample.xml.bz2"
pytestmark = pytest.mark.skipif(not DUMP.is_file(), reason=f"real dump sample not present at {DUMP}")

_NS = "{http://www.mediawiki.org/xml/export-0.10/}"
_OTHER_PREFIXES = {"image", "wp", "wikt", "wiktionary", "w", "commons", "s", "q", "n", "b", "v", "d", "meta"}


def raw_pages():
    """(title, ns, redirect target, wikitext) straight from the XML."""
    root = ET.fromstring(bz2.decompress(DUMP.read_bytes()))
    namespaces = {(n.text or "").lower() for n in root.iter(f"{_NS}namespace") if n.text}
    pages = []
    for page in root.iter(f"{_NS}page"):
        redirect = page.find(f"{_NS}redirect")
        pages.append((page.findtext(f"{_NS}title"), int(page.findtext(f"{_NS}ns")),
                      redirect.get("title") if redirect is not None else None,
                      page.findtext(f"{_NS}revision/{_NS}text") or ""))
    return pages, namespaces | _OTHER_PREFIXES


def body_links(wikitext, namespaces):
    """Namespace-0 `[[...]]` links in the prose: comments, refs, templates and tables removed."""
    text = re.sub(r"<!--.*?-->", "", wikitext, flags=re.DOTALL)
    text = re.sub(r"<ref[^>]*/>|<ref[^>]*>.*?</ref>", "", text, flags=re.DOTALL | re.IGNORECASE)
    previous = None
    while previous != text:
        previous = text
        text = re.sub(r"\{\{[^{}]*\}\}", "", text)
    text = re.sub(r"^\{\|.*?^\|\}", "", text, flags=re.DOTALL | re.MULTILINE)
    count = 0
    for target in re.findall(r"\[\[([^\[\]|]*)", text):
        target = target.strip()
        prefix = target.split(":", 1)[0].strip().lower() if ":" in target else None
        is_language = prefix is not None and re.fullmatch(r"[a-z]{2,3}(-[a-z]+)?|simple", prefix)
        if target and not target.startswith(("#", ":")) and prefix not in namespaces and not is_language:
            count += 1
    return count


@pytest.fixture(scope="module")
def extracted(tmp_path_factory):
    root = tmp_path_factory.mktemp("real")
    cfg = config_lib.resolve(EXTRACT.config_cls, {"dump": str(DUMP), "workers": 2, "export_markdown": True})
    outcome = execute(EXTRACT, cfg, root, {})
    return root, outcome


def test_all_articles_and_redirects_come_out(extracted):
    _, outcome = extracted
    pages, _ = raw_pages()
    main = [p for p in pages if p[1] == 0]
    assert sum(p[2] is None for p in main) == 106 and sum(p[2] is not None for p in main) == 99
    titles = read_titles(outcome.artifact)
    assert titles == sorted(p[0] for p in main if p[2] is None)
    assert outcome.metrics["articles"] == 106 and outcome.metrics["redirect_pages"] == 99
    assert outcome.metrics["skipped"] == 0
    assert len(list((outcome.artifact / "markdown").glob("*.md"))) == 106


def test_redirects_resolve_to_their_targets(extracted):
    _, outcome = extracted
    pages, _ = raw_pages()
    redirects = read_redirects(outcome.artifact)
    for title, ns, target, _ in pages:
        if ns == 0 and target is not None:
            expected = target.split("#")[0].replace("_", " ").strip()
            expected = expected[0].upper() + expected[1:]
            assert redirects[title] == redirects.get(expected, expected)


def test_at_least_95_percent_of_body_links_survive_as_markdown_links(extracted):
    _, outcome = extracted
    pages, namespaces = raw_pages()
    expected = sum(body_links(text, namespaces) for _, ns, target, text in pages if ns == 0 and target is None)
    survived = sum(len(re.findall(r"\]\([^)\s]+\)", a.text)) for a in iter_articles(outcome.artifact))
    assert expected > 10_000
    assert survived / expected >= 0.95, (survived, expected)


def test_graph_of_the_real_sample(extracted):
    root, outcome = extracted
    upstream = {"extract": load_artifact(root, "extract", outcome.signature)}
    graph = execute(GRAPH, config_lib.resolve(GRAPH.config_cls, {}), root, upstream)
    assert graph.metrics["nodes"] == 106
    assert graph.metrics["edges"] > 0 and graph.metrics["dangling"] > graph.metrics["edges"]
