"""Disk-backed string tables: the sort matches Python's `sorted`, lookups are exact."""

import random

import numpy as np

from stages.formats.tables import HashIndex, StringTable, equal_rows, hash_list, hash_strings, sorted_order, write_lines
from stages.wiki import dump_writer


def _strings(n=3000, seed=1):
    rng = random.Random(seed)
    stems = ["List of", "Ab", "ab", "Zürich", "Éa", "日本", "a" * 20, "a" * 20 + "b", "a" * 16, "x", "Äb"]
    return [rng.choice(stems) + (f" {rng.randrange(40)}" if rng.random() < 0.5 else "") for _ in range(n)]


def test_sorted_order_is_pythons_stable_sort(tmp_path):
    strings = _strings()
    write_lines(tmp_path / "t.txt", strings)
    table = StringTable(tmp_path / "t.txt")
    assert len(table) == len(strings) and table.slice(5, 9) == strings[5:9] and table[42] == strings[42]
    order = sorted_order(table)
    assert order.tolist() == sorted(range(len(strings)), key=lambda i: (strings[i], i))


def test_lookups_are_exact_and_hashes_agree(tmp_path):
    strings = sorted(set(_strings()))
    write_lines(tmp_path / "t.txt", strings)
    table = StringTable(tmp_path / "t.txt")
    assert (hash_strings(table) == hash_list(strings)).all()
    assert len(set(hash_strings(table).tolist())) == len(strings)
    index = HashIndex.build(table)
    queries = [strings[7], "absent", strings[-1], "ab 1", "a" * 20]
    found = index.find(queries)
    assert [strings[r] if r >= 0 else None for r in found] == [q if q in strings else None for q in queries]
    write_lines(tmp_path / "q.txt", queries)
    assert index.find_table(StringTable(tmp_path / "q.txt")).tolist() == found.tolist()
    rows = np.arange(len(strings))
    assert not equal_rows(table, rows[1:], rows[:-1]).any() and equal_rows(table, rows, rows).all()


def test_tiled_copies_rename_titles_and_links_consistently():
    base = dump_writer.sample_pages(30)
    pages = list(dump_writer.tiled_pages(base, 75))
    articles = [p for p in pages if p.namespace == 0 and p.redirect is None]
    assert len(articles) == 75 and len({p.title for p in pages}) == len(pages)
    copy = next(p for p in pages if p.title.endswith(" (2)") and p.redirect is None)
    assert "[[" in copy.text and all(t.rstrip().endswith("(2)") for t in
                                     (m.split("|")[0].split("#")[0].split("]")[0] for m in copy.text.split("[[")[1:])
                                     if not t.startswith("Category:"))
