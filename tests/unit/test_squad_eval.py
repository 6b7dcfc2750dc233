"""SQuAD v2 scorer against hand-computed values."""

import json
from pathlib import Path

import pytest

from stages.qa import squad_eval

DEV_HALF = Path(__file__).resolve().parents[3] / "shared" / "data" / "squad_v2" / "dev-v2.0-half.json"


def _dataset():
    qas = [
        {"id": "q1", "question": "?", "answers": [{"text": "The Eiffel Tower", "answer_start": 0},
                                                   {"text": "Eiffel tower", "answer_start": 4}]},
        {"id": "q2", "question": "?", "answers": [{"text": "Paris, France", "answer_start": 0}]},
        {"id": "q3", "question": "?", "answers": [], "is_impossible": True},
        {"id": "q4", "question": "?", "answers": [], "is_impossible": True},
        # A gold answer that normalises to nothing ("a") is dropped; "an apple" remains.
        {"id": "q5", "question": "?", "answers": [{"text": "a", "answer_start": 0}, {"text": "an apple", "answer_start": 0}]},
    ]
    return [{"title": "t", "paragraphs": [{"context": "c", "qas": qas}]}]


PREDS = {"q1": "eiffel tower!", "q2": "in Paris", "q3": "", "q4": "London", "q5": "Apple."}
NA_PROBS = {"q1": 0.1, "q2": 0.6, "q3": 0.9, "q4": 0.8, "q5": 0.2}


def test_normalisation_removes_case_punctuation_articles_and_extra_space():
    assert squad_eval.normalize_answer("  The Eiffel-Tower,  an  ICON! ") == "eiffeltower icon"
    assert squad_eval.normalize_answer("theatre a") == "theatre"  # articles only as whole words


def test_f1_of_partial_overlap_and_empty_answers():
    assert squad_eval.f1_score("Paris, France", "in Paris") == pytest.approx(0.5)
    assert squad_eval.f1_score("", "") == 1.0 and squad_eval.f1_score("", "x") == 0.0
    assert squad_eval.f1_score("x b b", "b b c") == pytest.approx(2 / 3)  # multiset overlap of 2
    assert squad_eval.f1_score("a b b", "b b c") == pytest.approx(0.8)  # "a" is an article, dropped


def test_scores_without_na_probs():
    out = squad_eval.evaluate(_dataset(), PREDS)
    expected = {"exact": 60.0, "f1": 70.0, "total": 5, "HasAns_exact": 200 / 3, "HasAns_f1": 250 / 3,
                "HasAns_total": 3, "NoAns_exact": 50.0, "NoAns_f1": 50.0, "NoAns_total": 2}
    assert list(out) == list(expected)
    for key, value in expected.items():
        assert out[key] == pytest.approx(value, abs=1e-9), key


def test_threshold_and_best_threshold_sweep():
    out = squad_eval.evaluate(_dataset(), PREDS, NA_PROBS, na_prob_thresh=0.5)
    # q2 (na 0.6) and q4 (0.8) and q3 (0.9) are predicted unanswerable at threshold 0.5.
    assert out["exact"] == pytest.approx(80.0) and out["f1"] == pytest.approx(80.0)
    # Sweep in na order q1, q5, q2, q4, q3 from 2 (the no-answer count): exact 3, 4, 4, 3, 3;
    # F1 3, 4, 4.5, 3.5, 3.5.
    assert out["best_exact"] == pytest.approx(80.0) and out["best_exact_thresh"] == 0.2
    assert out["best_f1"] == pytest.approx(90.0) and out["best_f1_thresh"] == 0.6
    assert list(out)[-4:] == ["best_exact", "best_exact_thresh", "best_f1", "best_f1_thresh"]


def test_missing_prediction_is_a_clear_error():
    with pytest.raises(ValueError, match="no prediction"):
        squad_eval.evaluate(_dataset(), {"q1": ""})


def test_memory_gain_covers_every_kind_and_question_form_both_scorings_have():
    scores = {"f1": 70.0, "cross_segment_f1": 30.0, "form_absent_person_guild_year_exact": 97.0,
              "form_absent_person_guild_year_total": 108, "HasAns_total": 10}
    frozen = {"f1": 68.0, "cross_segment_f1": 25.0, "form_absent_person_guild_year_exact": 0.0,
              "form_absent_person_guild_year_total": 108, "HasAns_total": 10}
    assert squad_eval.memory_gain(scores, frozen) == {
        "memory_frozen_f1": 68.0, "memory_gain_f1": 2.0,
        "memory_frozen_cross_segment_f1": 25.0, "memory_gain_cross_segment_f1": 5.0,
        "memory_frozen_form_absent_person_guild_year_exact": 0.0, "memory_gain_form_absent_person_guild_year_exact": 97.0}


def test_command_line_writes_out_file(tmp_path):
    data, preds, na = tmp_path / "data.json", tmp_path / "pred.json", tmp_path / "na.json"
    data.write_text(json.dumps({"version": "v2.0", "data": _dataset()}))
    preds.write_text(json.dumps(PREDS))
    na.write_text(json.dumps(NA_PROBS))
    out = tmp_path / "eval.json"
    assert squad_eval.main([str(data), str(preds), "--na-prob-file", str(na), "--na-prob-thresh", "0.5",
                            "--out-file", str(out)]) == 0
    assert json.loads(out.read_text()) == pytest.approx(dict(squad_eval.evaluate(_dataset(), PREDS, NA_PROBS, 0.5)))


@pytest.mark.skipif(not DEV_HALF.is_file(), reason="shared SQuAD v2 dev half not present")
def test_all_empty_predictions_on_real_dev_half(tmp_path):
    dataset = json.loads(DEV_HALF.read_text())["data"]
    preds = {qa["id"]: "" for a in dataset for p in a["paragraphs"] for qa in p["qas"]}
    out = squad_eval.evaluate(dataset, preds)
    assert out["NoAns_exact"] == 100.0 and out["HasAns_exact"] == 0.0 and out["total"] == 6078
