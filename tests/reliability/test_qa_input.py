"""SQuAD v2 input that gave wrong answers without a word (issue 36 W3).

Duplicate question ids, a negative ``answer_start`` and the cost of answer repair; each test
fails on the code before the fix.
"""

from __future__ import annotations

import json

import pytest

from stages.qa import data as qa_data
from stages.qa import squad_eval

CONTEXT = "Lake Belor is deep. Its depth is 83 metres. The lake is cold; the depth is 83 metres."


def _qa(qid: str, text: str, start: int) -> dict:
    return {"id": qid, "question": f"What is {qid}?", "answers": [{"text": text, "answer_start": start}]}


def _write(tmp_path, data: list[dict]):
    path = tmp_path / "squad.json"
    path.write_text(json.dumps({"version": "v2.0", "data": data}))
    return path


def test_duplicate_question_ids_across_articles_are_an_error_naming_them_and_the_file(tmp_path):
    # 40 questions over 4 articles, the last one's ids restarting (two files concatenated): by id
    # the scorer saw 31 questions, and the answers of 9 were those of another article.
    data, deep = [], CONTEXT.index("deep")
    for article in range(4):
        ids = [f"q{10 * article + i}" for i in range(10)] if article < 3 else [f"q{i}" for i in range(1, 10)] + ["q39"]
        data.append({"title": f"Lake {article}",
                     "paragraphs": [{"context": CONTEXT, "qas": [_qa(qid, "deep", deep) for qid in ids]}]})
    assert len(squad_eval.has_answer_map(data)) == 31
    path = _write(tmp_path, data)
    with pytest.raises(ValueError) as err:
        qa_data.load_squad(str(path), "train", tmp_path)
    message = str(err.value)
    assert "\n" not in message
    assert str(path) in message and "q1" in message and "9" in message and "duplicate" in message
    assert "unique" in message  # the fix


def test_unique_ids_still_load(tmp_path):
    qas = [_qa(f"q{i}", "deep", CONTEXT.index("deep")) for i in range(3)]
    path = _write(tmp_path, [{"title": "Belor", "paragraphs": [{"context": CONTEXT, "qas": qas}]}])
    assert [e.qid for e in qa_data.iter_examples(qa_data.load_squad(str(path), "train", tmp_path))] == ["q0", "q1", "q2"]


def test_a_negative_answer_start_is_repaired_or_dropped_never_kept(tmp_path):
    end = -len(" metres.")  # context[-8:-1] == "metres"... read from the end, as Python slices do
    assert CONTEXT[end:end + len(" metres")] == " metres"
    qas = [_qa("cold", "cold", CONTEXT.index("cold") - len(CONTEXT)),  # unique text: repaired in place
           _qa("metres", " metres", end),                              # text twice: dropped, counted
           _qa("far", "deep", -1000)]                                  # unique text, start far off: repaired
    path = _write(tmp_path, [{"title": "Belor", "paragraphs": [{"context": CONTEXT, "qas": qas}]}])
    squad = qa_data.load_squad(str(path), "train", tmp_path)
    examples = {e.qid: e for e in qa_data.iter_examples(squad)}
    assert sorted(examples) == ["cold", "far"]
    for example in examples.values():
        (answer,) = example.answers
        start = answer["answer_start"]
        assert 0 <= start and example.context[start:start + len(answer["text"])] == answer["text"]
    assert examples["cold"].answers[0]["answer_start"] == CONTEXT.index("cold")
    assert qa_data.validation_counts(squad) == {"qa_answer_repaired": 2, "qa_answer_dropped": 1,
                                                "qa_question_dropped_no_valid_answer": 1}


def test_a_start_past_the_end_of_the_context_is_repaired_like_a_shifted_one(tmp_path):
    # Past the end, the start is still a position on the context's axis (e.g. byte offsets
    # counted as characters): the nearby rule applies, as for a start shifted inside it.
    last = CONTEXT.rindex(" metres")
    qas = [_qa("near", " metres", len(CONTEXT) + 20),   # only the last occurrence is near: repaired
           _qa("both", " metres", len(CONTEXT) + 3)]    # both occurrences near: dropped
    path = _write(tmp_path, [{"title": "Belor", "paragraphs": [{"context": CONTEXT, "qas": qas}]}])
    squad = qa_data.load_squad(str(path), "train", tmp_path)
    assert [(e.qid, e.answers[0]["answer_start"]) for e in qa_data.iter_examples(squad)] == [("near", last)]
    assert qa_data.validation_counts(squad) == {"qa_answer_repaired": 1, "qa_answer_dropped": 1,
                                                "qa_question_dropped_no_valid_answer": 1}


class _CountingContext(str):
    """A context that counts the characters its searches scan (a found match stops the scan)."""

    scanned = 0

    def _count(self, sub, start, end, at):
        begin = 0 if start is None else (max(len(self) + start, 0) if start < 0 else min(start, len(self)))
        stop = len(self) if end is None else (max(len(self) + end, 0) if end < 0 else min(end, len(self)))
        _CountingContext.scanned += max((at + len(sub) if at >= 0 else stop) - begin, 0)
        return at

    def find(self, sub, start=None, end=None):
        return self._count(sub, start, end, str.find(self, sub, start, end))

    def rfind(self, sub, start=None, end=None):
        at = str.rfind(self, sub, start, end)
        stop = len(self) if end is None else end
        _CountingContext.scanned += (stop - at) if at >= 0 else len(self)
        return at

    def index(self, sub, start=None, end=None):
        return self._count(sub, start, end, str.index(self, sub, start, end))

    def count(self, sub, start=None, end=None):
        _CountingContext.scanned += len(self)
        return str.count(self, sub, start, end)

    def __contains__(self, sub):
        _CountingContext.scanned += len(self)
        return str.__contains__(self, sub)


def test_answer_repair_scans_each_context_a_bounded_number_of_times():
    # 64 KB of context in which a common answer text occurs every 640 characters; 400 answers
    # given 10-20 characters off their occurrence (a tokenizer's offset drift), plus 50 whose
    # common text has no occurrence near their start (dropped) and 50 of one rare text far off.
    text = "83 metres"
    unit = f"The depth of the lake is {text} at the centre. " + "The water is cold and clear in winter. " * 20
    unit = unit[:640]
    context = unit * 100
    hits = [i for i in range(len(context)) if context.startswith(text, i)]
    assert len(hits) == 100
    context += " the Belor stone."
    answers = [{"text": text, "answer_start": hits[i % len(hits)] + 10 + i % 11} for i in range(400)]
    answers += [{"text": text, "answer_start": hits[i % len(hits)] + 300} for i in range(50)]   # none near
    answers += [{"text": "Belor stone", "answer_start": 7 * i} for i in range(50)]               # unique, far
    qas = [{"id": f"q{i}", "question": "?", "answers": [a]} for i, a in enumerate(answers)]
    squad = {"version": "v2.0", "data": [{"title": "t", "paragraphs": [{"context": _CountingContext(context),
                                                                         "qas": qas}]}]}
    _CountingContext.scanned = 0
    validated = qa_data.validate_squad(squad)
    scanned = _CountingContext.scanned
    kept = {e.qid: e.answers[0]["answer_start"] for e in qa_data.iter_examples(validated)}
    assert len(kept) == 450 and all(context.startswith(answers[int(q[1:])]["text"], s) for q, s in kept.items())
    assert qa_data.validation_counts(validated) == {"qa_answer_repaired": 450, "qa_answer_dropped": 50,
                                                    "qa_question_dropped_no_valid_answer": 50}
    # Linear: a window per answer and at most a few scans of the context per distinct text
    # (before: at least one full scan per answer, 500 x 64 KB).
    window = 2 * (qa_data._REPAIR_WINDOW + len(text)) + 16
    assert scanned <= 4 * len(context) + len(answers) * window, (scanned, len(context))
