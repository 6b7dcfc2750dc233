"""Wikitext -> Markdown, fast and dependency-free.

What survives: headings, bold/italic, lists, paragraphs, internal links as `[text](Target)`
with normalized targets, the text of external links, image captions (prose, often with
links), and the text parameters of a few formatting templates (`nowrap`, `lang`,
`convert`, ...). What goes: comments, `<ref>`s and other non-prose tags, files/images
themselves, categories (returned as metadata), interlanguage links,
all other templates and parser functions, and tables. Tables are dropped on purpose: their
cells are rarely prose, and flattening them produces token soup for a language model.

Conversion is two steps so that links can be resolved after the whole dump is read:
`convert` leaves each internal link as a private-use marker, and `render_links` turns the
markers into Markdown once redirects are known (resolving them on the way).
"""

from __future__ import annotations

import dataclasses
import html
import re
from collections.abc import Callable

from stages.wiki.titles import link_target, normalize_title

#: MediaWiki namespace names and common aliases/interwiki prefixes (lower case). A link whose
#: prefix before `:` is one of these is not a namespace-0 article link.
NAMESPACES = frozenset(
    ["media", "special", "talk", "user", "wikipedia", "project", "wp", "file", "image", "template", "help", "category", "portal", "book", "draft", "module", "mediawiki", "timedtext", "gadget", "topic", "education", "program", "wikt", "wiktionary", "w", "commons", "meta", "mw", "s", "q", "n", "b", "v", "d", "voy", "species", "wikisource", "wikiquote", "wikinews", "wikibooks", "wikiversity", "wikivoyage", "wikidata", "wikispecies", "foundation", "wmf", "phab"]
) | frozenset(
    {"user talk", "wikipedia talk", "file talk", "template talk", "help talk", "category talk",
     "portal talk", "book talk", "draft talk", "module talk", "mediawiki talk", "wp talk",
     "education program", "timedtext talk", "gadget definition"}
)
_FILE_NAMESPACES = frozenset({"file", "image", "media"})
#: Language-code prefixes (`de:`, `zh-yue:`, `simple:`): interlanguage links.
_LANGUAGE_PREFIX = re.compile(r"^(?:[a-z]{2,3}(?:-[a-z]{2,8})*|simple)$")

# Private-use characters mark a converted internal link until `render_links`.
LINK_OPEN, LINK_MID, LINK_CLOSE = "\ue000", "\ue001", "\ue002"
_MARKED_LINK = re.compile(f"{LINK_OPEN}([^{LINK_OPEN}{LINK_MID}]*){LINK_MID}([^{LINK_CLOSE}]*){LINK_CLOSE}")

_COMMENT = re.compile(r"<!--.*?(?:-->|\Z)", re.DOTALL)
_DROPPED_BLOCKS = re.compile(
    r"<(ref|gallery|math|timeline|score|syntaxhighlight|source|imagemap|hiero|chem|ce|graph|"
    r"mapframe|templatedata|references|noinclude|includeonly)\b[^>]*?(?:/>|>.*?</\1\s*>)",
    re.DOTALL | re.IGNORECASE,
)
_UNCLOSED_REF = re.compile(r"<ref\b[^>]*>[^<]*", re.IGNORECASE)
_BRACE_TOKEN = re.compile(r"\{\{|\}\}|\{\||\|\}(?!\})")
_EXTERNAL_LINK = re.compile(r"\[(?:https?:|ftp:|//)[^\s\]]*(?:[ \t]+([^\]\n]*))?\]", re.IGNORECASE)
_INTERNAL_LINK = re.compile(r"\[\[([^\[\]|\n]*)(?:\|((?:[^\[\]]|\[(?!\[)|\](?!\]))*))?\]\]([a-z]+)?")
_HEADING_LINE = re.compile(r"(={1,6})[ \t]*(.+?)[ \t]*\1[ \t]*$")
_LIST_MARKS = frozenset("*#:;")
_LIST_PREFIX = re.compile(r"[*#:;]+")
_HTML_BREAK = re.compile(r"<br\s*/?>", re.IGNORECASE)
_HTML_TAG = re.compile(r"</?[a-zA-Z][a-zA-Z0-9]*\b[^>]*>")
_MAGIC_WORD = re.compile(r"__[A-Z]+__")
#: What removed templates leave behind: "Einstein (; ; 14 March 1879" -> "Einstein (14 March 1879".
_EMPTY_PARENS = re.compile(r" ?\([\s,;]*\)")
_LEADING_SEPARATORS = re.compile(r"\((?:\s*[,;])+\s*")
_BLANK_LINES = re.compile(r"\n[ \t]*(?:\n[ \t]*)+")
_PARENTHETICAL = re.compile(r"\s*\([^)]*\)$")
_IMAGE_OPTION = re.compile(
    r"^(?:thumb|thumbnail|frame|framed|frameless|border|left|right|center|centre|none|baseline|middle|"
    r"sub|super|top|text-top|bottom|text-bottom|upright(?:\s*=?\s*[\d.]*)?|\d*x?\d+\s*px|"
    r"(?:alt|link|page|class|lang|upright)\s*=.*)?$", re.IGNORECASE)

#: Templates whose parameters are prose: name -> how to render them.
_KEEP_LAST_PARAM = frozenset({"nowrap", "nobr", "nobreak", "small", "big", "lang", "smallcaps",
                              "nowrap begin", "script", "transl", "ill", "linktext", "em", "strong"})


@dataclasses.dataclass
class Converted:
    """Markdown with link markers still in it, plus what conversion collected."""

    text: str
    categories: list[str]
    links_dropped: int  # links to other namespaces, interwiki, files, self-anchors


def _template_text(body: str) -> str:
    """Text kept from a whitelisted template (`body` is between the braces), else ''."""
    parts = body.split("|")
    name = parts[0].strip().lower().replace("_", " ")
    params = [p for p in parts[1:] if "=" not in p]
    if not params:
        return ""
    if name == "convert" and len(params) >= 2:
        return f"{params[0].strip()} {params[1].strip()}"
    if name == "ill":
        return params[0].strip()
    if name in _KEEP_LAST_PARAM or name.startswith("lang-"):
        return params[-1].strip()
    return ""


def strip_templates_and_tables(text: str) -> str:
    """Remove nested `{{...}}` and `{| ... |}` in one linear scan (kept templates excepted)."""
    out: list[str] = []
    stack: list[tuple[str, int]] = []  # (kind, start offset)
    emit_from = 0
    for match in _BRACE_TOKEN.finditer(text):
        token, pos = match.group(), match.start()
        if token == "{{":
            if not stack:
                out.append(text[emit_from:pos])
            stack.append(("t", pos))
        elif token == "{|":
            line_start = text.rfind("\n", 0, pos) + 1
            if text[line_start:pos].strip():
                continue  # `{|` inside a line is not a table
            if not stack:
                out.append(text[emit_from:pos])
            stack.append(("table", pos))
        elif token == "}}":
            if stack and stack[-1][0] == "t":
                _, start = stack.pop()
                if not stack:
                    out.append(_template_text(text[start + 2 : pos]))
                    emit_from = match.end()
        elif token == "|}" and stack and stack[-1][0] == "table":
            stack.pop()
            if not stack:
                emit_from = match.end()
    if stack:
        # Unclosed: drop only the line of the outermost opener, keep the rest of the page.
        line_end = text.find("\n", stack[0][1])
        if line_end >= 0:
            out.append(strip_templates_and_tables(text[line_end:]))
    else:
        out.append(text[emit_from:])
    return "".join(out)


def _caption(params: str | None) -> str:
    """A file link's caption (its last parameter that is not an image option), else ''."""
    if not params:
        return ""
    caption = params.rsplit("|", 1)[-1].strip()
    return "" if _IMAGE_OPTION.match(caption) else caption


def _link_replacer(categories: list[str], dropped: list[int]) -> Callable[[re.Match], str]:
    def replace(match: re.Match) -> str:
        raw_target, label, trail = match.group(1), match.group(2), match.group(3) or ""
        target = raw_target.strip()
        colon = target.startswith(":")
        if colon:
            target = target[1:].lstrip()
        prefix, sep, rest = target.partition(":")
        prefix_key = prefix.strip().lower().replace("_", " ")
        if sep and (prefix_key in NAMESPACES or (not colon and _LANGUAGE_PREFIX.match(prefix_key))):
            dropped[0] += 1
            if prefix_key == "category" and not colon:
                name = normalize_title(rest)
                if name:
                    categories.append(name)
                return ""
            if prefix_key in _FILE_NAMESPACES and not colon:
                return _caption(label)
            if not colon and _LANGUAGE_PREFIX.match(prefix_key):
                return ""  # interlanguage link
            return (label if label else rest) + trail
        if label is None:
            shown = target
        elif label == "":
            shown = _PARENTHETICAL.sub("", target)  # the pipe trick
        else:
            shown = label
        shown += trail
        title = normalize_title(target)
        if not title:  # `[[#Section]]`: a link within the page
            dropped[0] += 1
            return shown.lstrip("#")
        return f"{LINK_OPEN}{shown}{LINK_MID}{title}{LINK_CLOSE}"

    return replace


def _convert_lines(text: str) -> str:
    """One pass over the lines: list items, headings, horizontal rules, trailing space."""
    out = []
    for line in text.split("\n"):
        first = line[:1]
        if first in _LIST_MARKS:
            marks = _LIST_PREFIX.match(line).group()
            depth, last = len(marks), marks[-1]
            body = line[depth:].lstrip(" \t")
            indent = "  " * (depth - 1)
            if last == "*":
                line = f"{indent}- {body}"
            elif last == "#":
                line = f"{indent}1. {body}"
            else:  # `:` indentation and `;` definition terms become plain lines
                line = indent + body
        elif first == "=":
            heading = _HEADING_LINE.match(line)
            if heading:
                line = "#" * len(heading.group(1)) + " " + heading.group(2)
        elif first == "-" and line.startswith("----") and not line.strip("- \t"):
            line = ""
        out.append(line.rstrip())
    return "\n".join(out)


def convert(wikitext: str) -> Converted:
    """Convert one page's wikitext; internal links stay as markers (see `render_links`)."""
    text = _COMMENT.sub("", wikitext)
    text = _DROPPED_BLOCKS.sub("", text)
    text = _UNCLOSED_REF.sub("", text)
    text = strip_templates_and_tables(text)
    text = _EXTERNAL_LINK.sub(lambda m: m.group(1) or "", text)
    categories: list[str] = []
    dropped = [0]
    replace = _link_replacer(categories, dropped)
    while "[[" in text:
        converted = _INTERNAL_LINK.sub(replace, text)
        if converted == text:
            break
        text = converted
    # Lines before bold: the `*` of `**bold**` must not look like a list item.
    text = _convert_lines(text)
    text = text.replace("'''''", "***").replace("'''", "**").replace("''", "*")
    text = _HTML_BREAK.sub(" ", text)
    text = _HTML_TAG.sub("", text)
    text = _MAGIC_WORD.sub("", text)
    text = _EMPTY_PARENS.sub("", text)
    text = _LEADING_SEPARATORS.sub("(", text)
    text = html.unescape(text).replace("\u00a0", " ")
    text = _BLANK_LINES.sub("\n\n", text).strip()
    return Converted(text=text, categories=list(dict.fromkeys(categories)), links_dropped=dropped[0])


def render_links(
    text: str,
    resolve: Callable[[str], str] | None = None,
    target_form: Callable[[str], str] = link_target,
) -> tuple[str, list[str]]:
    """Turn link markers into `[text](Target)`; return the Markdown and the link titles.

    `resolve` maps a normalized title to its canonical title (redirects); `target_form`
    writes a title as a link target (the Markdown export passes the file-stem function).
    """
    links: list[str] = []

    def replace(match: re.Match) -> str:
        title = match.group(2)
        if resolve is not None:
            title = resolve(title)
        links.append(title)
        return f"[{match.group(1)}]({target_form(title)})"

    return _MARKED_LINK.sub(replace, text), links



def marked_link_titles(text: str) -> list[str]:
    """The titles of the link markers in converted text, unresolved, in order."""
    return [match[1] for match in _MARKED_LINK.findall(text)]


def strip_link_markers(text: str) -> tuple[str, list[str]]:
    """Plain text (link markers replaced by their text) and the marked link titles."""
    links: list[str] = []

    def replace(match: re.Match) -> str:
        links.append(match.group(2))
        return match.group(1)

    return _MARKED_LINK.sub(replace, text), links
