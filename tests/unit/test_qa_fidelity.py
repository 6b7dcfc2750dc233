"""MemXLNet fidelity: warm-ups per curriculum stage, extraction rules, answer-centred windows,
position-blind evaluation, and generated cross-segment questions that need an earlier segment."""

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from jobs import studies
from models.memxlnet import MemoryConfig, MemXLNetForQA, add_memory_tokens
from stages.core.config import ConfigError, resolve
from stages.core.context import StageContext
from stages.qa import components, sample, squad_eval, train
from stages.qa import data as qa_data
from stages.qa.batching import answer_centred_starts, document_batch
from stages.qa.config import QAConfig
from stages.qa.features import SegmentLayout, build_features, featurize
from stages.qa.predict import best_answer, predict
from stages.qa.sample import NEIGHBOUR_GUILDS, SampleConfig, generate_sample
from stages.qa.tokenizer import resolve_tokenizer
from tests.fixtures import qa_example

SMALL = {"sample.documents": 4, "sample.dev_documents": 1, "data.train_size": 8, "data.eval_size": 4, "max_n_segs": 3,
         "batch_size": 4, "max_seq_length": 64, "doc_stride": 32, "max_query_length": 12,
         "tokenizer_vocab_size": 300, "memory.num_tokens": 2, "num_threads": 1}


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    squad = generate_sample(8, 0, "train")
    tok = resolve_tokenizer("auto", lambda: qa_data.contexts(squad), tmp_path_factory.mktemp("tok"), 400)
    add_memory_tokens(tok, 2)
    return tok


def _spec(tok, max_n_segs=12):
    read, write = add_memory_tokens(tok, 2)
    return SegmentLayout(40, 12, 8, max_n_segs, tuple(read), tuple(write))


def test_each_warmup_switches_at_the_right_epoch_of_every_curriculum_stage(tmp_path):
    cfg = resolve(QAConfig, {**SMALL, "curriculum.segments": [1, 2], "curriculum.epochs": 3,
                             "curriculum.warmup_freeze_base_epochs": 1, "curriculum.warmup_disable_global_softmax_epochs": 2,
                             "curriculum.warmup_disable_any_positive_epochs": 1})
    out = tmp_path / "qa"
    out.mkdir()
    train.run(cfg, StageContext(stage="qa", signature="x", root=tmp_path, out_dir=out, upstream={}))
    for stage in ("phase_1_segs_1", "phase_2_segs_2"):
        epochs = json.loads((out / stage / "phase_done.json").read_text())["epochs"]
        assert [e["epoch"] for e in epochs] == [0, 1, 2]
        assert [e["freeze_base"] for e in epochs] == [True, False, False]
        assert [e["global_softmax"] for e in epochs] == [False, False, True]
        assert [e["extraction"] for e in epochs] == ["best_score", "any_positive", "any_positive"]


def test_each_curriculum_stage_trains_its_own_epochs(tmp_path):
    cfg = resolve(QAConfig, {**SMALL, "curriculum.segments": [1, 2], "curriculum.phase_epochs": [3, 1]})
    out = tmp_path / "qa"
    out.mkdir()
    result = train.run(cfg, StageContext(stage="qa", signature="x", root=tmp_path, out_dir=out, upstream={}))
    stages = [json.loads((out / s / "phase_done.json").read_text()) for s in ("phase_1_segs_1", "phase_2_segs_2")]
    assert [len(s["epochs"]) for s in stages] == [3, 1]
    assert stages[0]["steps"] == 3 * stages[1]["steps"] > 0
    assert result["train_steps"] == 4 * stages[1]["steps"]
    with pytest.raises(ConfigError, match="curriculum.phase_epochs"):
        resolve(QAConfig, {**SMALL, "curriculum.segments": [1, 2], "curriculum.phase_epochs": [3]})


def test_each_curriculum_stage_reads_segments_of_its_own_length(tmp_path):
    cfg = resolve(QAConfig, {**SMALL, "curriculum.segments": [1, 2], "curriculum.phase_seq_lengths": [128, 64],
                             "curriculum.phase_epochs": [1, 1]})
    out = tmp_path / "qa"
    out.mkdir()
    train.run(cfg, StageContext(stage="qa", signature="x", root=tmp_path, out_dir=out, upstream={}))
    built = [json.loads(m.read_text()) for m in (tmp_path / "cache" / "qa_features").glob("*/meta.json")]
    assert sorted(m["max_seq_length"] for m in built) == [64, 64, 128, 128]  # train and dev, each stage
    assert components.segment_layout(cfg, [], []).max_seq_length == 64  # evaluation reads the last stage's
    for bad in ([128], [128, 96], [8, 64]):
        with pytest.raises(ConfigError, match="curriculum.phase_seq_lengths"):
            resolve(QAConfig, {**SMALL, "curriculum.segments": [1, 2], "curriculum.phase_seq_lengths": bad})
    with pytest.raises(ConfigError, match="no context room in a 18-token segment"):
        resolve(QAConfig, {**SMALL, "curriculum.segments": [1, 2], "curriculum.phase_seq_lengths": [18, 64]})


def test_cross_only_documents_add_only_their_cross_segment_question():
    def load(cross_only):
        sample = SampleConfig(neighbour_guilds="unregistered", neighbours=1, cross_only_documents=cross_only)
        return qa_data.load_squad("sample", "train", Path("."), 3, sample)

    squad = load(5)
    kinds = [qa_data_kinds({"data": [a]}) for a in squad["data"]]
    assert len(kinds) == 8 and all(len(set(k.values())) == 3 for k in kinds[:3])
    assert all(list(k.values()) == [qa_data.KIND_CROSS] for k in kinds[3:])
    assert squad["data"][:3] == load(0)["data"]


def test_memory_tokens_that_extend_the_segment_leave_the_context_windows_as_without_memory(tokenizer):
    """With memory.extends_segment, a memory model reads exactly the windows a model without memory
    reads; by default its memory tokens take their room from the context."""
    example = next(iter(qa_data.iter_examples(generate_sample(1, 0, "dev"))))
    read, write = add_memory_tokens(tokenizer, 2)

    def windows(**keys):
        cfg = resolve(QAConfig, {**SMALL, "max_n_segs": 12, **keys})
        ids = ([], []) if cfg.memory.num_tokens == 0 else (read, write)
        arrays, _ = featurize(example, tokenizer, components.segment_layout(cfg, *ids))
        return [tuple(map(tuple, o[o[:, 0] >= 0])) for o in arrays["offsets"]]

    plain = windows(**{"memory.num_tokens": 0})
    assert len(plain) > 1
    assert windows(**{"memory.num_tokens": 2, "memory.extends_segment": True}) == plain
    assert windows(**{"memory.num_tokens": 2}) != plain


def _segment(start_logits, end_logits, text_positions):
    """A hand-made segment: positions in ``text_positions`` are context (offsets into 'abcdefgh')."""
    n = len(start_logits)
    offsets = np.full((n, 2), -1)
    for i, p in enumerate(text_positions):
        offsets[p] = (i, i + 1)
    return {"start": np.array(start_logits, float), "end": np.array(end_logits, float), "offsets": offsets, "cls": n - 1}


def test_any_positive_and_best_score_extraction_differ_and_the_warmup_chooses():
    # Segment 1 has the highest span score but is even surer that it holds no answer (null 10);
    # segment 2's span is lower but beats its own null score.
    segments = [_segment([0, 2.5, 0, 5.0], [0, 2.5, 0, 5.0], [1, 2]),
                _segment([0, 0, 2.0, 0.5], [0, 0, 2.0, 0.5], [1, 2])]
    context = "ab"
    any_text, any_margin = best_answer(segments, context, 5, "any_positive")
    best_text, best_margin = best_answer(segments, context, 5, "best_score")
    assert any_text == "b" and any_margin == pytest.approx(3.0)
    assert best_text == "" and best_margin == pytest.approx(5.0 - 10.0)
    cfg = resolve(QAConfig, {"curriculum.warmup_disable_any_positive_epochs": 1})
    assert cfg.curriculum.warmups(0, True, cfg.extraction)["extraction"] == "best_score"
    assert cfg.curriculum.warmups(1, True, cfg.extraction)["extraction"] == "any_positive"
    assert cfg.curriculum.warmups(5, True, "best_score")["extraction"] == "best_score"


def test_an_answer_in_segment_five_trains_in_a_two_segment_stage(tokenizer, tmp_path):
    spec = _spec(tokenizer)
    examples = [qa_example("far", 200, answer_at=None), qa_example("none", 30)]
    # Place the answer so that its first segment is the fifth.
    for at in range(200):
        _, seg = featurize(qa_example("far", 200, answer_at=at), tokenizer, spec)
        if seg == 4:
            examples[0] = qa_example("far", 200, answer_at=at)
            break
    store = build_features(examples, tokenizer, spec, tmp_path / "f")
    assert store.docs["answer_segment"][0] == 4
    docs = np.arange(len(store))
    starts = answer_centred_starts(store, docs, 2)
    batch = document_batch(store, docs, 2, starts)
    assert len(batch["steps"]) == 2
    rows_with_answer = [int(s["segment_rows"][list(s["doc_index"].tolist()).index(0)])
                        for s in batch["steps"] if bool(s["has_answer"][list(s["doc_index"].tolist()).index(0)])]
    assert rows_with_answer == [int(store.docs["first_segment"][0]) + 4]
    assert starts[1] == 0  # no answer: the window starts at the document's start


def test_no_training_question_is_dropped(tmp_path):
    cfg = resolve(QAConfig, {**SMALL, "curriculum.segments": [1], "curriculum.epochs": 1})
    out = tmp_path / "qa"
    out.mkdir()
    ctx = StageContext(stage="qa", signature="x", root=tmp_path, out_dir=out, upstream={})
    result = train.run(cfg, ctx)
    assert result["train_steps"] == SMALL["data.train_size"] // SMALL["batch_size"]
    assert not ctx.record.get("skipped")


def test_evaluation_does_not_depend_on_where_the_answer_is(tokenizer, tmp_path):
    spec = _spec(tokenizer, max_n_segs=3)
    torch.manual_seed(0)
    read, write = add_memory_tokens(tokenizer, 2)
    model = MemXLNetForQA.tiny(len(tokenizer), MemoryConfig(2, read_token_ids=read, write_token_ids=write))
    runs = []
    for i, at in enumerate((None, 3, 60, 150)):
        store = build_features([qa_example("q", 200, answer_at=None), qa_example("q2", 80)], tokenizer, spec, tmp_path / f"s{i}")
        if at is not None:  # same text, gold answer at a different place
            ex = qa_example("q", 200, answer_at=at)
            ex.context = qa_example("q", 200).context
            ex.answers = [{"text": ex.context[ex.answers[0]["answer_start"]:][:5], "answer_start": ex.answers[0]["answer_start"]}]
            store = build_features([ex, qa_example("q2", 80)], tokenizer, spec, tmp_path / f"t{i}")
        runs.append(predict(model, store, 2, 3, 10, 0.0))
    assert all(r == runs[0] for r in runs[1:])


@pytest.mark.parametrize("neighbour_guilds", NEIGHBOUR_GUILDS)
def test_cross_segment_questions_are_unanswerable_from_their_answer_segment(tmp_path, neighbour_guilds):
    cfg = resolve(QAConfig, {})
    train_squad = generate_sample(60, 0, "train", neighbour_guilds=neighbour_guilds)
    tok = resolve_tokenizer("auto", lambda: qa_data.contexts(train_squad), tmp_path, cfg.tokenizer_vocab_size)
    read, write = add_memory_tokens(tok, cfg.memory.num_tokens)
    spec = SegmentLayout(cfg.max_seq_length, cfg.doc_stride, cfg.max_query_length, cfg.max_n_segs, tuple(read), tuple(write))
    kinds = qa_data_kinds(train_squad)
    checked = 0
    for example in qa_data.iter_examples(train_squad):
        if kinds[example.qid] != qa_data.KIND_CROSS:
            continue
        subject = re.search(r"patron guild of (\w+) founded", example.question).group(1)
        arrays, answer_segment = featurize(example, tok, spec)
        assert answer_segment > 0  # the answer is never in the first segment
        segments = []
        for row in range(len(arrays["length"])):
            offsets = arrays["offsets"][row]
            segments.append(example.context[offsets[offsets[:, 0] >= 0, 0].min() : offsets[:, 1].max()])
        for row in np.nonzero(arrays["has_answer"])[0]:
            assert subject not in segments[row]  # no segment that holds the answer names the subject
        # Guessing fails: the segments that do not name the subject offer every registered year
        # (four), and no segment that names the subject holds a year, as a reader sees them.
        assert len({y for text in segments if subject not in text for y in re.findall(r"\b\d{4}\b", text)}) == 4
        assert not any(re.search(r"\b\d{4}\b", text) for text in segments if subject in text)
        checked += 1
    assert checked == 60  # one cross-segment question per document


def test_unregistered_neighbour_guilds_leave_one_guild_named_before_the_register_in_it():
    """With neighbour_guilds='unregistered', which registered guild the document named before the
    register is what memory must carry: exactly one, the subject's, and the register holds three
    others a reader without it can only guess among."""
    squad = generate_sample(40, 1, "train", neighbour_guilds="unregistered")
    for article in squad["data"]:
        paragraph = article["paragraphs"][0]
        people, register = paragraph["context"].rsplit("\n\n", 1)
        named = re.findall(r"patron guild of \w+ is the (\w+) Guild", people)
        registered = re.findall(r"The (\w+) Guild was founded", register)
        cross = next(q for q in paragraph["qas"] if q["kind"] == qa_data.KIND_CROSS)
        subject_guild = re.search(rf"patron guild of {cross['question'].split()[-2]} is the (\w+) Guild", people).group(1)
        assert [g for g in named if g in registered] == [subject_guild] and len(set(registered)) == 4
    with pytest.raises(ValueError, match="neighbour_guilds"):
        generate_sample(1, 0, "dev", neighbour_guilds="some")


def qa_data_kinds(squad):
    return {q["id"]: q["kind"] for a in squad["data"] for p in a["paragraphs"] for q in p["qas"]}


def test_generated_questions_cover_every_kind_and_answers_match_their_offsets():
    squad = generate_sample(10, 3, "dev")
    kinds = qa_data_kinds(squad)
    assert set(kinds.values()) == {qa_data.KIND_LOCAL, qa_data.KIND_CROSS, qa_data.KIND_NONE}
    for example in qa_data.iter_examples(squad):
        for answer in example.answers:
            assert example.context[answer["answer_start"]:][: len(answer["text"])] == answer["text"]
    assert generate_sample(10, 3, "dev") == squad and generate_sample(10, 3, "train") != squad


def test_the_generator_command_writes_a_split_filtered_by_kind_that_training_can_read(tmp_path):
    out = tmp_path / "cross.json"
    assert sample.main([str(out), "--documents", "12", "--neighbour-guilds", "unregistered",
                        "--kinds", "cross_segment", "--all-kinds-documents", "3"]) == 0
    written = qa_data_kinds(json.loads(out.read_text()))
    full = qa_data_kinds(generate_sample(12, 0, "train", neighbour_guilds="unregistered"))
    # The first three documents keep every question; the other nine only their cross-segment one.
    first = {i: k for i, k in full.items() if int(i.split("|")[0].split("-")[1]) < 3}
    rest = {i: k for i, k in full.items() if i not in first and k == qa_data.KIND_CROSS}
    assert written == {**first, **rest} and len(rest) == 9
    assert len(list(qa_data.iter_examples(json.loads(out.read_text())))) == len(written)
    with pytest.raises(SystemExit):
        sample.main([str(out), "--kinds", "local,bogus"])
    sample.main([str(out), "--documents", "2", "--neighbours", "0"])
    assert json.loads(out.read_text()) == generate_sample(2, 0, "train", n_neighbours=0)


def test_the_ceiling_study_puts_each_whole_document_in_one_segment(tmp_path):
    """A reader's ceiling is only a reference if nothing is cut: with 192-token segments every
    question's default document fits in its one segment, and every answer is in it."""
    keys = {"memory.num_tokens": "0", "max_seq_length": "192", "max_n_segs": "1", "curriculum.segments": "[1]"}
    cfg = resolve(QAConfig, {k: v for k, v in keys.items() if k not in ("seed", "memory.num_tokens")})
    squad = generate_sample(60, 0, "train")
    tok = resolve_tokenizer("auto", lambda: qa_data.contexts(squad), tmp_path, cfg.tokenizer_vocab_size)
    spec = components.segment_layout(cfg, [], [])
    for example in qa_data.iter_examples(squad):
        arrays, answer_segment = featurize(example, tok, spec)
        assert len(arrays["length"]) == 1
        offsets = arrays["offsets"][0]
        assert offsets[offsets[:, 0] >= 0, 1].max() == len(example.context.rstrip())
        assert answer_segment == (0 if example.answers else -1)


def test_the_memory_study_reads_each_document_whole_then_in_two_segments_only_memory_joins(tmp_path):
    """`study=qa_memory` (studies/qa_memory.yaml): the first curriculum stage sees each whole document in one segment (the
    reader can learn the question in view); the second cuts it in two, and the segment holding a
    cross-segment answer holds the whole register but never the subject."""
    keys = studies.load("qa_memory").keys("qa")
    cfg = resolve(QAConfig, {**{k: v for k, v in keys.items() if k not in ("seed", "memory.num_tokens")},
                             "memory.num_tokens": 4})
    squad = generate_sample(60, 0, "train", n_neighbours=cfg.sample.neighbours,
                            neighbour_guilds=cfg.sample.neighbour_guilds)
    tok = resolve_tokenizer("auto", lambda: qa_data.contexts(squad), tmp_path, cfg.tokenizer_vocab_size)
    read, write = add_memory_tokens(tok, cfg.memory.num_tokens)
    whole, split = (components.segment_layout(cfg, read, write, stage) for stage in (0, 1))
    kinds = qa_data_kinds(squad)
    for example in qa_data.iter_examples(squad):
        arrays, _ = featurize(example, tok, whole)
        offsets = arrays["offsets"][0]
        assert len(arrays["length"]) == 1 and offsets[:, 1].max() == len(example.context.rstrip())
        if kinds[example.qid] != qa_data.KIND_CROSS:
            continue
        arrays, answer_segment = featurize(example, tok, split)
        assert len(arrays["length"]) == 2 and answer_segment == 1
        offsets = arrays["offsets"][1]
        text = example.context[offsets[offsets[:, 0] >= 0, 0].min():]
        subject = re.search(r"patron guild of (\w+) founded", example.question).group(1)
        assert subject not in text and len(re.findall(r"founded in \d{4}", text)) == 4


def test_local_questions_need_the_name_not_the_position():
    """Every person and every registered guild of a document is asked about, so one answer
    position per form (what a reader that ignores the name in the question gives) gets at most
    one question of each (form, document) right."""
    squad = generate_sample(20, 2, "train")
    for article in squad["data"]:
        paragraph = article["paragraphs"][0]
        names = set(re.findall(r"The home town of (\w+) is", paragraph["context"]))
        guilds = set(re.findall(r"The (\w+) Guild was founded", paragraph["context"]))
        local = [q for q in paragraph["qas"] if q["kind"] == qa_data.KIND_LOCAL]
        asked = {re.search(r"of (\w+)\?$|the (\w+) Guild founded", q["question"]).group(1, 2) for q in local}
        assert {n for n, _ in asked if n} == names and {g for _, g in asked if g} == guilds
        for form in ("home_town", "trade", "patron_guild", "guild_year"):
            starts = [q["answers"][0]["answer_start"] for q in local if q["form"] == form]
            assert len(starts) >= 3 and len(set(starts)) == len(starts)


def test_scores_are_kept_apart_by_question_form():
    """A kind's score must not hide a form at zero: a model that answers every person question and
    no register question scores local F1 9/13 (9 person and 4 register questions a document), and
    form_guild_year_f1 0."""
    squad = generate_sample(20, 1, "dev")
    questions = [q for a in squad["data"] for p in a["paragraphs"] for q in p["qas"]]
    forms = {q["form"] for q in questions}
    assert {"home_town", "trade", "patron_guild", "guild_year", "patron_guild_year"} <= forms
    preds = {q["id"]: (q["answers"][0]["text"] if q["answers"] and q["form"] != "guild_year" else "") for q in questions}
    scores = squad_eval.evaluate(squad["data"], preds)
    assert scores["local_f1"] == pytest.approx(100 * 9 / 13)
    assert scores["form_guild_year_f1"] == 0.0
    assert scores["form_home_town_f1"] == scores["form_trade_f1"] == scores["form_patron_guild_f1"] == 100.0
