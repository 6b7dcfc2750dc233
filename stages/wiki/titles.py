"""Title normalization and the file stems used by the Markdown export."""

from __future__ import annotations

import hashlib
import re

_SPACES = re.compile(r"[\s_]+")
_UNSAFE_FILENAME = re.compile(r'[/\\:*?"<>|\x00-\x1f]')
#: A Markdown link target that carries the export's 6-hex suffix: `Title_a1b2c3`.
_STEM_SUFFIX = re.compile(r"_([0-9a-f]{6})$")


def normalize_title(raw: str) -> str:
    """Canonical namespace-0 title: fragment dropped, `_`/whitespace unified to one space,
    trimmed, first letter upper case (MediaWiki's `first-letter` case rule)."""
    title = raw.split("#", 1)[0]
    title = _SPACES.sub(" ", title).strip()
    if not title:
        return ""
    return title[0].upper() + title[1:]


def link_target(title: str) -> str:
    """The form a normalized title takes inside a Markdown link: spaces become `_`."""
    return title.replace(" ", "_")


def title_from_target(target: str) -> str:
    """Inverse of `link_target`."""
    return target.replace("_", " ")


def title_hash(title: str) -> str:
    """6 hex digits that keep file names unique across case and filesystem collisions."""
    return hashlib.sha1(title.encode("utf-8")).hexdigest()[:6]


#: Bytes of a title kept in a file name: `<title>_<6hex>.md` stays within the 255-byte name
#: limit of common filesystems whatever the script (Cyrillic takes 2 bytes a letter, CJK 3).
_STEM_TITLE_BYTES = 240


def file_stem(title: str) -> str:
    """`Title_<6hex>`: the Markdown export's file name (without `.md`) for a title."""
    safe = _UNSAFE_FILENAME.sub("-", link_target(title))[:180]
    safe = safe.encode("utf-8")[:_STEM_TITLE_BYTES].decode("utf-8", "ignore")  # never half a character
    return f"{safe}_{title_hash(title)}"


def strip_stem_hash(target: str) -> str:
    """`Title_a1b2c3` -> `Title` when the suffix is that title's own hash; else unchanged."""
    match = _STEM_SUFFIX.search(target)
    if match and title_hash(title_from_target(target[: match.start()])) == match.group(1):
        return target[: match.start()]
    return target
