"""QA features (CLS position, answers, caching) and time-step-major batches."""

from pathlib import Path

import numpy as np
import pytest
import torch

from models.memxlnet import MemoryConfig, MemXLNetForQA, TimeStepMajorRunner, add_memory_tokens
from stages.qa import data as qa_data
from stages.qa.batching import EpochSampler, document_batch
from stages.qa.features import SegmentLayout, build_features, cached_features
from stages.qa.tokenizer import resolve_tokenizer
from tests.fixtures import qa_example

REAL_SPIECE = Path(__file__).resolve().parents[3] / "shared" / "data" / "xlnet" / "spiece.model"


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    squad = qa_data.load_squad("sample", "train", Path("."), 12)
    tok = resolve_tokenizer("auto", lambda: qa_data.contexts(squad), tmp_path_factory.mktemp("tok"), 400)
    add_memory_tokens(tok, 2)
    return tok


def _spec(tok, max_seq_length=40, max_n_segs=6):
    read, write = add_memory_tokens(tok, 2)
    return SegmentLayout(max_seq_length, 12, 8, max_n_segs, tuple(read), tuple(write))


def test_cls_index_comes_last_and_varies_with_segment_length(tokenizer, tmp_path):
    examples = [qa_example("short", 3), qa_example("long", 60, answer_at=50)]
    store = build_features(examples, tokenizer, _spec(tokenizer), tmp_path / "f")
    seg = store.segments
    for row in range(store.meta["n_segments"]):
        cls = seg["cls_index"][row]
        assert seg["input_ids"][row][cls] == tokenizer.cls_token_id
        assert cls == seg["length"][row] - 1  # XLNet: CLS is the last real token, not position 0
        assert seg["input_ids"][row][0] == tokenizer.convert_tokens_to_ids("[MEM_READ_0]")
    assert len(set(seg["cls_index"].tolist())) > 1  # so no constant index could pass
    # No-answer segments point start/end at their own CLS.
    rows = ~seg["has_answer"]
    assert (seg["start_positions"][rows] == seg["cls_index"][rows]).all()


def test_answer_positions_map_back_to_the_answer_text(tokenizer, tmp_path):
    example = qa_example("long", 40, answer_at=20)
    store = build_features([example], tokenizer, _spec(tokenizer, max_n_segs=20), tmp_path / "f")
    answer_segment = store.docs["answer_segment"][0]
    assert answer_segment > 0  # the answer lies in a later segment
    row = store.docs["first_segment"][0] + answer_segment
    s, e = store.segments["start_positions"][row], store.segments["end_positions"][row]
    offsets = store.segments["offsets"][row]
    assert example.context[offsets[s][0] : offsets[e][1]].strip() == "Zorbin"
    # The question is repeated in every segment.
    question = tokenizer("Where is it?", add_special_tokens=False)["input_ids"]
    for r in range(store.docs["n_segments"][0]):
        assert store.segments["input_ids"][r][2 : 2 + len(question)].tolist() == question


def test_time_step_major_order_with_unequal_segment_counts(tokenizer, tmp_path):
    examples = [qa_example("one", 3), qa_example("three", 20), qa_example("two", 8)]
    store = build_features(examples, tokenizer, _spec(tokenizer, max_n_segs=20), tmp_path / "f")
    counts = store.docs["n_segments"].tolist()
    assert counts[0] == 1 and counts[2] < counts[1] and counts[2] >= 2
    batch = document_batch(store, [0, 1, 2], max_segments=20)
    assert len(batch["steps"]) == counts[1]
    for t, step in enumerate(batch["steps"]):
        expected = [d for d in range(3) if counts[d] > t]
        assert step["doc_index"].tolist() == expected  # finished documents are absent, not padded
        assert step["segment_rows"].tolist() == [store.docs["first_segment"][d] + t for d in expected]
        assert step["input_ids"].shape[0] == len(expected)
    capped = document_batch(store, [0, 1, 2], max_segments=2)
    assert len(capped["steps"]) == 2


def test_memory_flows_within_a_document_across_steps(tokenizer, tmp_path):
    examples = [qa_example("one", 3), qa_example("three", 20), qa_example("two", 8)]
    store = build_features(examples, tokenizer, _spec(tokenizer), tmp_path / "f")
    read, write = add_memory_tokens(tokenizer, 2)
    torch.manual_seed(0)
    model = MemXLNetForQA.tiny(len(tokenizer), MemoryConfig(2, read_token_ids=read, write_token_ids=write)).eval()
    runner = TimeStepMajorRunner(model)
    with torch.no_grad():
        together = runner(document_batch(store, [0, 1, 2], 6)["steps"], 3)
        alone = runner(document_batch(store, [1], 6)["steps"], 1)
    # Document 1 gets the same logits in a batch with others as alone: rows never mix memories.
    for t in range(len(alone)):
        row = together[t]["doc_index"].tolist().index(1)
        width = alone[t]["start_logits"].shape[1]
        assert torch.allclose(together[t]["start_logits"][row, :width], alone[t]["start_logits"][0], atol=1e-5)


def test_features_are_cached_and_reused(tokenizer, tmp_path):
    squad = qa_data.load_squad("sample", "train", Path("."), 12)
    spec = _spec(tokenizer, max_seq_length=64)
    first, reused_first = cached_features(squad, lambda: qa_data.iter_examples(squad), tokenizer, spec, tmp_path)
    second, reused_second = cached_features(squad, lambda: iter(()), tokenizer, spec, tmp_path)
    assert not reused_first and reused_second and first.path == second.path
    assert np.array_equal(first.segments["input_ids"], second.segments["input_ids"])


def test_sampler_splits_ranks_evenly_and_deterministically():
    docs = np.arange(23)
    parts = [EpochSampler(docs, 3, seed=1, rank=r, world_size=2).epoch_batches(0) for r in range(2)]
    assert len(parts[0]) == len(parts[1]) == 3
    seen = np.concatenate([b for p in parts for b in p])
    assert len(set(seen.tolist())) == len(seen) == 18
    assert all(np.array_equal(a, b) for a, b in zip(parts[0], EpochSampler(docs, 3, 1, 0, 2).epoch_batches(0)))


def test_too_short_segments_fail_clearly(tokenizer, tmp_path):
    with pytest.raises(ValueError, match="max_seq_length"):
        build_features([qa_example("x", 5)], tokenizer, _spec(tokenizer, max_seq_length=10), tmp_path / "f")


def test_long_context_joins_paragraphs_and_reoffsets_answers():
    squad = {"data": [{"title": "t", "paragraphs": [
        {"context": "First one.", "qas": []},
        {"context": "Here is Zorbin.", "qas": [{"id": "q", "question": "?", "is_impossible": False,
                                                "answers": [{"text": "Zorbin", "answer_start": 8}]}]}]}]}
    joined = qa_data.join_paragraphs(squad, 0)
    (example,) = qa_data.iter_examples(joined)
    start = example.answers[0]["answer_start"]
    assert example.context[start : start + 6] == "Zorbin" and example.context.startswith("First one.")
    assert len(qa_data.join_paragraphs(squad, 1)["data"][0]["paragraphs"]) == 2


@pytest.mark.skipif(not REAL_SPIECE.is_file(), reason="shared XLNet spiece.model not present")
def test_real_xlnet_sentencepiece_is_wrapped_with_xlnet_special_tokens():
    tok = resolve_tokenizer(str(REAL_SPIECE), list, Path("/nonexistent"), 0)
    assert len(tok) == 32000 and tok.cls_token_id == 3 and tok.sep_token_id == 4 and tok.pad_token_id == 5
    encoded = tok("What is it?", "Paris is big.")["input_ids"]
    assert encoded[-1] == tok.cls_token_id  # XLNet: <cls> last
    assert tok.convert_ids_to_tokens(tok("Paris", add_special_tokens=False)["input_ids"]) == ["\u2581Paris"]
