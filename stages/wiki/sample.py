"""A deterministic synthetic Wikipedia, written in both real dump formats.

The corpus is built so that graph-aware packing has something to find:
- articles fall into communities (regions); each region has its own vocabulary and a hub
  article, and a few global hubs are linked from everywhere;
- articles link mostly within their community (preferring its hub), some across;
- every article states facts about itself ("The population of Varnok is 41,200.") and
  repeats facts of the articles it links to ("Varnok lies near [[Ostel Lake]], whose depth
  is 83 metres."), so the context of linked articles helps predict an article's text. The
  QA stage derives questions from `Fact`s; `SampleArticle.repeated` lists the repeated facts of
  linked articles, whose values LM evaluation scores (on a corpus of another seed, they can only
  be read from the linked article, never recalled).
The wikitext uses what real pages use: an infobox, sections, lists, refs with cite
templates, comments, piped and trailing links, links through redirects, lower-case and
underscore link targets, external links, HTML entities, a table now and then, categories.
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import random
from pathlib import Path
from typing import IO
from xml.sax.saxutils import escape, quoteattr

from stages.wiki.titles import normalize_title

_SYLLABLES = ["ar", "ba", "bel", "cor", "dan", "del", "dor", "el", "fen", "gar", "hal", "is", "kel", "lan", "lor", "mar", "mir", "nor", "ol", "or", "pel", "quin", "ral", "ren", "sar", "sil", "tam", "tor", "ul", "val", "ven", "vor", "wen", "yor", "zan", "ith", "eth", "ost", "var", "nok"]
_KINDS = ("town", "river", "lake", "mountain", "person", "guild", "battle")
_ATTRIBUTES = {
    "town": ("population", "founding year", "patron"),
    "river": ("length", "source", "main tributary"),
    "lake": ("depth", "area", "largest island"),
    "mountain": ("height", "first climber", "range"),
    "person": ("birth year", "occupation", "birthplace"),
    "guild": ("founding year", "founder", "emblem"),
    "battle": ("year", "victor", "commander"),
}
_PERSON_ATTRIBUTES = frozenset({"patron", "first climber", "founder", "commander", "victor"})
_OCCUPATIONS = ("cartographer", "weaver", "astronomer", "shipwright", "poet", "judge", "brewer")
_EMBLEMS = ("a silver heron", "a red lantern", "two crossed oars", "a green acorn", "a golden key")


@dataclasses.dataclass(frozen=True)
class Fact:
    """A fact stated in `subject`'s article and repeated in articles that link to it."""

    subject: str
    attribute: str
    value: str
    sentence: str


@dataclasses.dataclass
class SampleArticle:
    title: str
    wikitext: str
    categories: list[str]
    facts: list[Fact]
    community: int = 0
    #: Facts of link targets that this article repeats ("tied to [[Y]], whose depth is 83 metres"):
    #: their values can only be known from the linked article (or its other linkers).
    repeated: list[Fact] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class SampleCorpus:
    articles: list[SampleArticle]
    redirects: dict[str, str]  # alias title -> target title

    def write_xml(self, path: str | Path) -> Path:
        """Write a MediaWiki XML export (schema 0.10); `.bz2`/`.gz` suffixes compress."""
        with _open_output(path) as out:
            write_xml(self, out)
        return Path(path)

    def write_cirrus(self, path: str | Path) -> Path:
        """Write a CirrusSearch content dump (`.gz` compresses)."""
        with _open_output(path) as out:
            write_cirrus(self, out)
        return Path(path)


def _open_output(path: str | Path) -> IO[str]:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".bz2":
        import bz2

        return bz2.open(path, "wt", encoding="utf-8")
    if path.suffix == ".gz":
        return gzip.open(path, "wt", encoding="utf-8")
    return open(path, "w", encoding="utf-8")


class _Names:
    """Unique pronounceable names; each community prefers its own syllables."""

    def __init__(self, rng: random.Random):
        self.rng = rng
        self.used: set[str] = set()

    def word(self, syllables: tuple[str, ...], parts: int = 2) -> str:
        attempts = 0
        while True:
            # Longer names once the short ones run out (large corpora).
            length = parts + attempts // 4
            name = "".join(self.rng.choices(syllables, k=length)).capitalize()
            if name not in self.used:
                self.used.add(name)
                return name
            attempts += 1


def _title_for(kind: str, name: str, surname: str) -> str:
    return {
        "town": name, "river": f"{name} River", "lake": f"Lake {name}", "mountain": f"Mount {name}",
        "person": f"{name} {surname}", "guild": f"{name} Guild", "battle": f"Battle of {name}",
    }[kind]


def _fact_value(rng: random.Random, kind: str, attribute: str, peers: list[str]) -> str:
    if attribute in ("population",):
        return f"{rng.randrange(2, 900) * 100:,}"
    if attribute in ("founding year", "birth year", "year"):
        return str(rng.randrange(1100, 1900))
    if attribute in ("length", "height", "depth", "area"):
        unit = {"length": "kilometres", "height": "metres", "depth": "metres", "area": "square kilometres"}
        return f"{rng.randrange(12, 4000)} {unit[attribute]}"
    if attribute == "occupation":
        return rng.choice(_OCCUPATIONS)
    if attribute == "emblem":
        return rng.choice(_EMBLEMS)
    return rng.choice(peers) if peers else "unrecorded"


FACT_STYLES = ("whose", "restate")


def generate_sample(n_articles: int = 300, seed: int = 0, fact_style: str = "whose") -> SampleCorpus:
    """Build the corpus: same `(n_articles, seed, fact_style)` -> byte-identical dumps.

    `fact_style` is how an article repeats a fact of a link target: `whose` ("tied to [[Y]],
    whose depth is 83 metres; ...") or `restate` ("tied to [[Y]]. The depth of Y is 83 metres.
    ..."), the linked article's own sentence word for word, so that a model can copy the value
    by matching the words before it (what the LM positive control plants).
    """
    if fact_style not in FACT_STYLES:
        raise ValueError(f"sample_fact_style: {fact_style!r} is not one of {FACT_STYLES}")
    if n_articles < 10:
        raise ValueError(f"sample_articles: {n_articles} is too small; use at least 10")
    rng = random.Random(seed)
    names = _Names(rng)
    n_communities = max(3, n_articles // 30)
    n_global_hubs = max(2, n_articles // 100)
    community_syllables = [tuple(rng.sample(_SYLLABLES, 12)) for _ in range(n_communities)]
    community_vocab = [[names.word(s, 3).lower() for _ in range(24)] for s in community_syllables]

    # Titles first: community hubs (regions), global hubs, then ordinary articles.
    titles: list[str] = []
    kinds: list[str] = []
    community: list[int] = []
    for c in range(n_communities):
        titles.append(names.word(community_syllables[c], 3))
        kinds.append("region")
        community.append(c)
    global_hubs = ["Sunwell Calendar", "Northern Confederation", "Old Trade Road", "Grand Archive",
                   "River Compact", "Council of Lamps"][:n_global_hubs]
    global_hubs += [f"{names.word(_SYLLABLES, 3)} Treaty" for _ in range(n_global_hubs - len(global_hubs))]
    for hub in global_hubs:
        titles.append(hub)
        kinds.append("hub")
        community.append(-1)
    while len(titles) < n_articles:
        c = rng.randrange(n_communities)
        kind = rng.choice(_KINDS)
        syl = community_syllables[c]
        titles.append(_title_for(kind, names.word(syl), names.word(syl)))
        kinds.append(kind)
        community.append(c)

    members: list[list[int]] = [[] for _ in range(n_communities)]
    for i, c in enumerate(community):
        if c >= 0:
            members[c].append(i)

    # Facts, then links, then text (text repeats the facts of link targets).
    facts: list[list[Fact]] = []
    for i, title in enumerate(titles):
        kind, c = kinds[i], community[i]
        if kind in ("region", "hub"):
            attrs = ("founding year", "emblem")
        else:
            attrs = _ATTRIBUTES[kind]
        pool = [j for j in members[c] if j != i] if c >= 0 else []
        people = [titles[j] for j in pool if kinds[j] == "person"]
        places = [titles[j] for j in pool if kinds[j] in ("town", "river", "lake", "mountain", "region")]
        article_facts = []
        for attribute in attrs:
            peers = people if attribute in _PERSON_ATTRIBUTES else places
            value = _fact_value(rng, kind, attribute, peers)
            article_facts.append(Fact(title, attribute, value, f"The {attribute} of {title} is {value}."))
        facts.append(article_facts)

    hub_ids = list(range(n_communities, n_communities + n_global_hubs))
    links: list[list[int]] = []
    for i in range(len(titles)):
        c = community[i]
        chosen: list[int] = []
        if c >= 0:
            chosen.append(c)  # the community hub
            local = [j for j in members[c] if j != i and j != c]
            chosen += rng.sample(local, min(len(local), rng.randrange(3, 7)))
            if rng.random() < 0.5:
                chosen.append(rng.choice(hub_ids))
            if rng.random() < 0.25:
                other = rng.randrange(n_communities)
                chosen.append(rng.choice(members[other]))
        else:
            chosen += rng.sample(range(n_communities), min(n_communities, 6))
        links.append([j for j in dict.fromkeys(chosen) if j != i])

    redirects: dict[str, str] = {}
    title_set = set(titles)
    for i, title in enumerate(titles):
        if rng.random() < 0.3:
            alias = title.lower() if " " not in title else title.split(" ", 1)[0] + " " + title.split(" ", 1)[1].lower()
            alias = normalize_title(alias)
            if alias != title and alias not in title_set and alias not in redirects:
                redirects[alias] = title
    alias_of = {target: alias for alias, target in redirects.items()}

    articles = []
    for i, title in enumerate(titles):
        c = community[i]
        category = "Sample hubs" if c < 0 else f"{titles[c]} region"
        repeated: list[Fact] = []
        text = _article_wikitext(rng, i, titles, kinds, facts, links[i], alias_of,
                                 community_vocab[c] if c >= 0 else community_vocab[0], category, repeated,
                                 fact_style)
        articles.append(SampleArticle(title, text, [category], facts[i], c, repeated))
    return SampleCorpus(articles, redirects)


def _link_markup(rng: random.Random, target: str, alias_of: dict[str, str]) -> str:
    """One of the ways real pages write a link to `target`."""
    roll = rng.random()
    if roll < 0.2 and target in alias_of:
        return f"[[{alias_of[target]}]]"  # through a redirect
    if roll < 0.35:
        return f"[[{target}|{target.split(' ')[0]}]]"
    if roll < 0.45:
        return f"[[{target[0].lower() + target[1:]}]]"
    if roll < 0.55:
        return f"[[{target.replace(' ', '_')}#History|{target}]]"
    return f"[[{target}]]"


def _article_wikitext(rng, i, titles, kinds, facts, targets, alias_of, vocab, category, repeated,
                      fact_style="whose") -> str:
    title, kind = titles[i], kinds[i]
    words = lambda k: " ".join(rng.choices(vocab, k=k))
    infobox = "\n".join(f"| {f.attribute.replace(' ', '_')} = {f.value}" for f in facts[i])
    lines = [
        f"{{{{Infobox {kind}\n| name = {title}\n{infobox}\n}}}}",
        (f"'''{title}''' is a {kind} known for its {words(2)} and {words(1)}.<ref name=\"r{i}\">"
         f"{{{{cite book |title={words(2)} |year=1901}}}}</ref> {facts[i][0].sentence}"),
        "<!-- editors: keep the facts below sourced -->",
        "",
        "== History ==",
    ]
    for fact in facts[i][1:]:
        lines.append(f"{fact.sentence} The ''{words(1)}'' of {title} shaped its {words(2)}.")
    lines += ["", "== Connections =="]
    for j in targets:
        ref = facts[j][rng.randrange(len(facts[j]))]
        repeated.append(ref)
        link = _link_markup(rng, titles[j], alias_of)
        if fact_style == "restate":
            lines.append(f"* {title} is tied to {link}. {ref.sentence} Both share the {words(2)}.")
        else:
            lines.append(f"* {title} is tied to {link}, whose {ref.attribute} is {ref.value}; both share the {words(2)}.")
    if rng.random() < 0.2:
        lines += ["", '{| class="wikitable"', "! Year !! Event", "|-", f"| 1700 || {words(3)}", "|}"]
    lines += [
        "", "== Notes ==",
        (f"Locals call it the &quot;{words(1)}&quot; &amp; the {words(1)}. See also the "
         f"[http://example.org/{i} {words(2)} archive]."),
        "<references />",
        "",
        f"[[Category:{category}]]",
    ]
    return "\n".join(lines) + "\n"


def _pages(corpus: SampleCorpus):
    """(page id, namespace, title, wikitext, redirect target or None) in dump order."""
    page_id = 1
    for article in corpus.articles:
        yield page_id, 0, article.title, article.wikitext, None
        page_id += 1
    for alias, target in corpus.redirects.items():
        yield page_id, 0, alias, f"#REDIRECT [[{target}]]", target
        page_id += 1
    yield page_id, 10, "Template:Infobox town", "{{{name}}} infobox", None


def write_xml(corpus: SampleCorpus, out: IO[str]) -> None:
    """Stream the corpus as a MediaWiki XML export 0.10."""
    from stages.wiki.dump_writer import SITEINFO, XML_HEADER

    out.write(XML_HEADER + SITEINFO)
    for page_id, ns, title, text, target in _pages(corpus):
        redirect = f"    <redirect title={quoteattr(target)} />\n" if target else ""
        out.write(
            f"  <page>\n    <title>{escape(title)}</title>\n    <ns>{ns}</ns>\n    <id>{page_id}</id>\n"
            f"{redirect}    <revision>\n      <id>{1000 + page_id}</id>\n"
            f"      <timestamp>2020-01-01T00:00:00Z</timestamp>\n"
            f"      <contributor>\n        <username>SampleBot</username>\n        <id>1</id>\n      </contributor>\n"
            f"      <model>wikitext</model>\n      <format>text/x-wiki</format>\n"
            f'      <text xml:space="preserve" bytes="{len(text.encode())}">{escape(text)}</text>\n'
            f"    </revision>\n  </page>\n"
        )
    out.write("</mediawiki>\n")


def write_cirrus(corpus: SampleCorpus, out: IO[str]) -> None:
    """Stream the corpus as a CirrusSearch content dump (index line, document line)."""
    from stages.wiki.wikitext import convert, strip_link_markers

    aliases: dict[str, list[str]] = {}
    for alias, target in corpus.redirects.items():
        aliases.setdefault(target, []).append(alias)
    for page_id, ns, title, text, target in _pages(corpus):
        if target is not None:
            continue  # CirrusSearch lists redirects on their target's document
        converted = convert(text)
        plain, links = strip_link_markers(converted.text)
        doc = {
            "namespace": ns, "title": title, "timestamp": "2020-01-01T00:00:00Z",
            "category": converted.categories, "wiki": "samplewiki",
            "redirect": [{"namespace": 0, "title": a} for a in aliases.get(title, [])],
            "outgoing_link": [t.replace(" ", "_") for t in dict.fromkeys(links)],
            "text": plain, "source_text": text,
        }
        out.write(json.dumps({"index": {"_type": "page", "_id": str(page_id)}}) + "\n")
        out.write(json.dumps(doc, ensure_ascii=False) + "\n")
