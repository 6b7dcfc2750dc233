"""Wikitext -> Markdown conversion and title handling."""

import pytest

from stages.wiki.titles import file_stem, normalize_title, strip_stem_hash, title_hash
from stages.wiki.wikitext import convert, render_links, strip_templates_and_tables


def md(wikitext: str, resolve=None) -> tuple[str, list[str]]:
    return render_links(convert(wikitext).text, resolve)


@pytest.mark.parametrize("raw, title", [
    ("foo bar", "Foo bar"),
    ("Foo_bar", "Foo bar"),
    ("  foo__bar  ", "Foo bar"),
    ("Foo bar#History", "Foo bar"),
    ("#Section", ""),
    ("éclair", "Éclair"),
])
def test_normalize_title(raw, title):
    assert normalize_title(raw) == title


def test_internal_links_become_markdown_with_normalized_targets():
    text, links = md("See [[foo_bar#Early life|the foo]] and [[Baz]]s and [[Qux (band)|]].")
    assert text == "See [the foo](Foo_bar) and [Bazs](Baz) and [Qux](Qux_(band))."
    assert links == ["Foo bar", "Baz", "Qux (band)"]


def test_links_resolve_through_redirects():
    text, links = md("A [[Old name]] link.", resolve={"Old name": "New name"}.get)
    assert text == "A [Old name](New_name) link."
    assert links == ["New name"]


def test_headings_emphasis_and_lists():
    text, _ = md("== History ==\n'''Bold''' and ''it'' and '''''both'''''\n* one\n** two\n# first\n: indented")
    assert text.splitlines() == [
        "## History", "**Bold** and *it* and ***both***", "- one", "  - two", "1. first", "indented",
    ]


def test_refs_comments_files_templates_tables_are_removed_and_categories_collected():
    wikitext = (
        "{{Infobox person|name=X|born={{birth date|1900|1|1}}}}\n"
        "Text<ref name=a>{{cite web|url=http://x}}</ref> more<ref name=a/>.<!-- hidden [[Nope]] -->\n"
        "[[File:A.jpg|thumb|left|upright=1.2|200px|alt=x]]\n"
        '{| class="wikitable"\n| cell [[InTable]]\n|}\n'
        "[[Category:Test pages]] [[Category:more_tests|sort key]] [[de:Beispiel]]"
    )
    converted = convert(wikitext)
    text, links = render_links(converted.text)
    assert text == "Text more."
    assert links == []
    assert converted.categories == ["Test pages", "More tests"]
    assert converted.links_dropped == 4  # file, two categories, interlanguage


def test_image_captions_are_kept_as_prose_with_their_links():
    text, links = md("[[File:A.jpg|thumb|200px|A caption with [[Inner]] link]] after")
    assert text == "A caption with [Inner](Inner) link after"
    assert links == ["Inner"]


def test_external_links_keep_their_text_and_entities_are_decoded():
    text, _ = md("An [https://example.org example site] &amp; [http://bare.example] &nbsp;&eacute;t&eacute;")
    assert text == "An example site &   été"


def test_text_of_formatting_templates_is_kept():
    text, _ = md("{{nowrap|kept words}}, {{convert|5|km|mi}}, {{lang|fr|bonjour}}, {{cite|gone}}")
    assert text == "kept words, 5 km, bonjour,"


def test_other_namespaces_keep_their_text_but_no_link():
    text, links = md("[[Wikipedia:About|about page]] and [[:Category:Cats|cats]] and [[wikt:word]]")
    assert text == "about page and cats and word"
    assert links == []


def test_nested_templates_scan_linearly_and_unclosed_braces_do_not_eat_the_page():
    assert strip_templates_and_tables("a{{x|{{y|{{z}}}}|b}}c{{w}}d") == "acd"
    text = strip_templates_and_tables("before {{broken template\nafter [[Link]]")
    assert "after [[Link]]" in text and "broken" not in text


def test_markdown_export_targets_are_file_stems_and_pretokenize_can_strip_them():
    text, _ = render_links(convert("[[AC/DC|band]]").text, target_form=file_stem)
    stem = file_stem("AC/DC")
    assert text == f"[band]({stem})"
    assert "/" not in stem and stem.endswith(title_hash("AC/DC"))
    assert file_stem("Apple") != file_stem("APPLE")
    assert strip_stem_hash(file_stem("Foo bar")) == "Foo_bar"
    assert strip_stem_hash("Deadbeef_cafe12") == "Deadbeef_cafe12"  # not its own hash: kept


def test_punctuation_left_by_removed_templates_is_tidied():
    text, _ = md("'''Einstein''' ({{IPA|x}}; {{audio|de|}}; 14 March 1879) and X ({{audio|y}}) spoke.")
    assert text == "**Einstein** (14 March 1879) and X spoke."
