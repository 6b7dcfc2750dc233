"""`study=qa_binding` and its second declaration `qa_binding_2` (studies/*.yaml): the layout they rely
on, pinned with each study's own settings and tokenizer; the floors; the test split; the swap
ablation; the reader rule and criterion."""

import re
from pathlib import Path

import numpy as np
import pytest

from jobs import results, studies
from stages.core.config import resolve
from stages.qa import components
from stages.qa import data as qa_data
from stages.qa.config import QAConfig
from stages.qa.evaluate import ADMITTED, reader_admission, swap_order, swap_shares
from stages.qa.features import featurize
from stages.qa.predict import memory_donors
from stages.qa.sample import asked_person, generate_sample, patron_guild_of, register_of

YEAR = re.compile(r"\b\d{4}\b")


STUDIES = ("qa_binding", "qa_binding_2")


def _study_config(study: str, memory: int = 4) -> QAConfig:
    keys = studies.load(study).keys("qa")
    return resolve(QAConfig, {**{k: v for k, v in keys.items() if k not in ("seed", "memory.num_tokens")},
                              "memory.num_tokens": memory})


def _segments(example, arrays) -> list[str]:
    out = []
    for row in range(len(arrays["length"])):
        offsets = arrays["offsets"][row]
        out.append(example.context[offsets[offsets[:, 0] >= 0, 0].min(): offsets[:, 1].max()])
    return out


@pytest.fixture(scope="module", params=STUDIES)
def study_data(request, tmp_path_factory):
    """The study's train/dev splits, its test split and the tokenizer its runs train (same data)."""
    cfg = _study_config(request.param)
    cache = tmp_path_factory.mktemp(request.param)
    train, dev = components.load_splits(cfg, cache)
    tokenizer, read, write = components.build_tokenizer(cfg, train, cache)
    test = qa_data.load_squad("sample", "test", cache, 200, cfg.sample)
    return cfg, train, dev, test, tokenizer, read, write


def _cross_questions(squad):
    kinds = {q["id"]: q["kind"] for a in squad["data"] for p in a["paragraphs"] for q in p["qas"]}
    return [e for e in qa_data.iter_examples(squad) if kinds[e.qid] == qa_data.KIND_CROSS]


def test_segment_one_holds_the_subject_and_a_registered_distractor_and_no_year_segment_two_the_register(study_data):
    """With the study's tokenizer and segment layout: the memory stage cuts every document with a
    cross-segment question into two segments; the first names the subject, the subject's guild and
    a second, registered guild (the distractor) and no year; the second holds the answer and all
    four register entries and never names the subject. The reader stage sees each whole document."""
    cfg, _, dev, test, tokenizer, read, write = study_data
    whole, split = (components.segment_layout(cfg, read, write, stage) for stage in (0, 1))
    first = 0
    questions = _cross_questions(dev) + _cross_questions(test)
    assert len(questions) == 200 + 200
    for example in questions:
        arrays, _ = featurize(example, tokenizer, whole)
        assert len(arrays["length"]) == 1 and arrays["offsets"][0][:, 1].max() == len(example.context.rstrip())
        arrays, answer_segment = featurize(example, tokenizer, split)
        one, two = _segments(example, arrays)
        subject = asked_person(example.question)
        register = register_of(example.context)
        guild = patron_guild_of(example.context, subject)
        named = re.findall(r"patron guild of \w+ is the (\w+) Guild\.", one)
        assert len(arrays["length"]) == 2 and answer_segment == 1
        assert subject in one and not YEAR.search(one)
        assert guild in named and len(named) == 2 and set(named) <= set(register) and len(set(named)) == 2
        assert subject not in two and len(register) == 4
        assert all(f"The {g} Guild was founded in {y}." in two for g, y in register.items())
        first += named[0] == guild
    # The subject's guild is named first in about half the documents: "the first guild named" is a guess.
    assert 0.4 < first / len(questions) < 0.6


@pytest.mark.parametrize("study", STUDIES)
def test_the_floors_a_shortcut_scores_half_a_guess_a_quarter(study):
    """The floors the study states, on its test split: answering the year of the first (or the
    last) guild named before the register scores about 50 exact; the year of a random registered
    guild about 25; the binding 100."""
    cfg = _study_config(study)
    squad = generate_sample(400, cfg.sample.seed, "test", n_neighbours=cfg.sample.neighbours, distractor=True)
    hits = {"first": 0, "last": 0, "binding": 0, "guess": 0}
    rng = np.random.default_rng(0)
    questions = _cross_questions(squad)
    for example in questions:
        people, _ = example.context.split("\n\n", 1)
        named = re.findall(r"patron guild of \w+ is the (\w+) Guild\.", people)
        register = register_of(example.context)
        gold = example.answers[0]["text"]
        hits["first"] += register[named[0]] == gold
        hits["last"] += register[named[-1]] == gold
        hits["binding"] += register[patron_guild_of(example.context, asked_person(example.question))] == gold
        hits["guess"] += list(register.values())[rng.integers(4)] == gold
    share = {k: 100 * v / len(questions) for k, v in hits.items()}
    assert share["binding"] == 100
    # (first + last) is 100 but for the rare document whose two guilds share a founding year.
    assert 42 < share["first"] < 58 and 100 <= share["first"] + share["last"] <= 101
    assert 18 < share["guess"] < 32


def test_the_test_split_is_drawn_apart_from_train_and_dev(study_data):
    cfg, train, dev, test, *_ = study_data
    contexts = {a["paragraphs"][0]["context"] for a in train["data"] + dev["data"]}
    assert not contexts & {a["paragraphs"][0]["context"] for a in test["data"]}
    assert all(a["title"].startswith("test-") for a in test["data"])
    again = qa_data.load_squad("sample", "test", None, 200, cfg.sample)
    assert again == test
    # The default documents do not change with the knob at its default (their signatures stay).
    assert generate_sample(20, 0, "dev", n_neighbours=1) == generate_sample(20, 0, "dev", n_neighbours=1,
                                                                             distractor=False)
    assert generate_sample(20, 0, "dev", n_neighbours=1) != generate_sample(20, 0, "dev", n_neighbours=1,
                                                                             distractor=True)
    with pytest.raises(ValueError, match="sample.distractor"):
        resolve(QAConfig, {"sample.distractor": "true", "sample.neighbour_guilds": "unregistered"})


def test_the_swap_pairs_other_documents_and_counts_where_answers_go():
    squad = generate_sample(120, 0, "test", n_neighbours=1, distractor=True)
    examples = [{"id": e.qid, "context": e.context, "answers": e.answers} for e in qa_data.iter_examples(squad)]
    order = swap_order(examples)
    assert sorted(order.tolist()) == list(range(len(examples)))
    donors = memory_donors(order, 8)
    assert sum(examples[q]["context"] == examples[d]["context"] for q, d in donors.items()) == 0
    questions = {q["id"]: q["question"] for a in squad["data"] for p in a["paragraphs"] for q in p["qas"]}
    gold = {e["id"]: (e["answers"][0]["text"] if e["answers"] else "") for e in examples}
    own = swap_shares(examples, squad, gold, donors)
    assert own["swap_cross_segment_pairs"] == 120 and own["swap_follows_original"] == 100.0
    assert own["swap_follows_donor"] == 0.0 and 10 < own["swap_donor_registered"] < 40
    followed = {}
    for q, d in donors.items():
        guild = patron_guild_of(examples[d]["context"], asked_person(questions[examples[d]["id"]]) or "")
        followed[examples[q]["id"]] = register_of(examples[q]["context"]).get(guild, "")
    donor = swap_shares(examples, squad, followed, donors)
    assert donor["swap_follows_donor"] == 100.0 and donor["swap_follows_original"] < 15


def test_the_reader_rule_admits_on_the_kept_epochs_dev_cross_segment_f1():
    epochs = [{"epoch": 0, "f1": 40.0, "cross_segment_f1": 95.0}, {"epoch": 1, "f1": 60.0, "cross_segment_f1": 80.0},
              {"epoch": 2, "f1": 60.0, "cross_segment_f1": 99.0}]
    manifest = {"record": {"phases": [{"epochs": epochs}, {"epochs": []}]}}
    # The model kept is the first epoch of best dev F1 (epoch 1), not the best cross-segment epoch.
    assert reader_admission(manifest, 90) == {"reader_dev_cross_segment_f1": 80.0, "reader_best_epoch": 1,
                                              "reader_admitted": 0.0}
    assert reader_admission(manifest, 80)["reader_admitted"] == 1.0
    assert "reader_admitted" not in reader_admission(manifest, 0) and reader_admission({}, 90) == {}


@pytest.mark.parametrize("study", STUDIES)
def test_the_criterion_pairs_admitted_seeds_of_the_test_split_only(study):
    (criterion,) = studies.load(study).criterion
    assert criterion.stage == "evaluate" and criterion.metric.startswith("admitted_test_")
    assert criterion.metric.removeprefix("admitted_test_") in ADMITTED
    records = []
    for seed, (m0, m4, admitted) in {1: (20, 95, True), 2: (22, 90, True), 3: (25, 25, False)}.items():
        for memory, value in ((0, m0), (4, m4)):
            metrics = {"test_cross_segment_f1": value, **({criterion.metric: value} if admitted else {})}
            records.append({"stage": "evaluate", "sweep": {"qa.memory.num_tokens": str(memory), "qa.seed": str(seed)},
                            "metrics": metrics})
    estimate, holds, _ = studies.judge(criterion, records)
    assert estimate.n == 2 and estimate.mean == pytest.approx(71.5) and holds  # 75, 68: 71.5 +- 44.5
    # Seed 3's reader (not admitted) is left out; counted, its paired 0 would sink the CI.
    everyone = [{**r, "metrics": {criterion.metric: r["metrics"]["test_cross_segment_f1"]}} for r in records]
    estimate, holds, _ = studies.judge(criterion, everyone)
    assert estimate.n == 3 and not holds
    records = [r for r in records if r["sweep"]["qa.seed"] != "2"]
    estimate, holds, note = studies.judge(criterion, records)
    assert estimate.n == 1 and not holds and "at least 2" in note


def test_qa_binding_2s_committed_readers_leave_at_most_one_admissible():
    """The reported verdict of `qa_binding_2` before its record is complete: two of its three
    readers finished, and the rule's own admission (the evaluate stage's) admits neither, so at
    most one can be admitted, and fewer than two fails whatever the unfinished runs give."""
    spec = studies.load("qa_binding_2")
    threshold = float(spec.keys("evaluate")["reader_admission_f1"])
    readers = [r for r in results.load_records(Path(__file__).resolve().parents[2] / spec.results)
               if r["stage"] == "qa_reader"]
    admitted = [reader_admission({"record": r["extra"]}, threshold)["reader_admitted"] for r in readers]
    seeds = len(spec.keys("qa")["seed"].split(","))
    assert len(readers) == 2 and admitted == [0.0, 0.0]
    assert seeds - len(readers) + sum(admitted) < 2
