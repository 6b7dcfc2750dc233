"""QA data: every answer validated, one reading of unanswerable questions (issue 11).

A SQuAD v2 file with the defects found is loaded the way the qa stage loads it; training
examples and the scorer must agree, and nothing may be labelled on the wrong span.
"""

from __future__ import annotations

import json

from stages.qa import data as qa_data
from stages.qa import squad_eval

CONTEXT = "Lake Belor is deep. Its depth is 83 metres. The lake is cold; the depth is 83 metres."


def _load(tmp_path, paragraphs: list[dict], long_context: int = 1) -> dict:
    path = tmp_path / "squad.json"
    path.write_text(json.dumps({"version": "v2.0", "data": [{"title": "Belor", "paragraphs": paragraphs}]}))
    return qa_data.join_paragraphs(qa_data.load_squad(str(path), "train", tmp_path), long_context)


def _qa(qid: str, answers=None, **extra) -> dict:
    qa = {"id": qid, "question": f"What is {qid}?", **extra}
    if answers is not None:
        qa["answers"] = answers
    return qa


def test_every_answer_matches_its_span_or_is_repaired_or_dropped(tmp_path):
    deep = CONTEXT.index("deep")
    between = (CONTEXT.index("83 metres") + CONTEXT.rindex("83 metres")) // 2
    qas = [_qa("ok", [{"text": "deep", "answer_start": deep}]),
           _qa("shifted", [{"text": "deep", "answer_start": deep + 3}]),            # unique: repaired
           _qa("absent", [{"text": "shallow", "answer_start": 5}]),                # dropped with its question
           _qa("ambiguous", [{"text": "83 metres", "answer_start": between}])]     # two near matches: dropped
    squad = _load(tmp_path, [{"context": CONTEXT, "qas": qas}])
    examples = {e.qid: e for e in qa_data.iter_examples(squad)}
    assert sorted(examples) == ["ok", "shifted"]
    for example in examples.values():
        (answer,) = example.answers
        assert example.context[answer["answer_start"]:answer["answer_start"] + len(answer["text"])] == answer["text"]
    assert qa_data.validation_counts(squad) == {"qa_answer_repaired": 1, "qa_answer_dropped": 2,
                                                "qa_question_dropped_no_valid_answer": 2}


def test_an_empty_first_paragraph_moves_no_label_onto_the_next(tmp_path):
    empty = {"context": "", "qas": [_qa(f"e{i}", [{"text": "Lake", "answer_start": 0}]) for i in range(5)]}
    real = {"context": CONTEXT, "qas": [_qa("real", [{"text": "Lake", "answer_start": 0}])]}
    squad = _load(tmp_path, [empty, real], long_context=0)
    assert [e.qid for e in qa_data.iter_examples(squad)] == ["real"]
    assert qa_data.validation_counts(squad)["qa_question_dropped_no_valid_answer"] == 5


def test_impossible_with_answers_is_read_the_same_by_training_and_scorer(tmp_path):
    qas = [_qa("imp", [{"text": "deep", "answer_start": CONTEXT.index("deep")}], is_impossible=True)]
    squad = _load(tmp_path, [{"context": CONTEXT, "qas": qas}])
    (example,) = qa_data.iter_examples(squad)
    assert example.is_impossible
    assert squad_eval.has_answer_map(squad["data"]) == {"imp": False}
    raw = json.loads((tmp_path / "squad.json").read_text())["data"]  # the scorer on the raw file, too
    assert squad_eval.has_answer_map(raw) == {"imp": False}
    scores = squad_eval.evaluate(raw, {"imp": ""}, {"imp": 1.0})
    assert scores["exact"] == 100.0 and scores["NoAns_total"] == 1


def test_a_missing_answers_key_is_handled(tmp_path):
    qas = [_qa("no_key"), _qa("no_key_impossible", is_impossible=True),
           _qa("fine", [{"text": "deep", "answer_start": CONTEXT.index("deep")}])]
    squad = _load(tmp_path, [{"context": CONTEXT, "qas": qas}])
    examples = {e.qid: e for e in qa_data.iter_examples(squad)}
    assert sorted(examples) == ["fine", "no_key_impossible"] and examples["no_key_impossible"].is_impossible
    assert qa_data.validation_counts(squad) == {"qa_missing_answers_dropped": 1}
