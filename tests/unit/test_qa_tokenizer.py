"""tokenizer=auto trains on long contexts (whole articles) and fails early on no text."""

import pytest

from stages.qa import data as qa_data
from stages.qa.sample import SampleConfig
from stages.qa.tokenizer import MAX_SENTENCE_BYTES, _chunks, resolve_tokenizer, trainer_sentences


def words(texts):
    return [w for t in texts for w in t.split()]


def test_long_context_reaches_the_trainer_in_chunks_with_every_word():
    paragraph = "The Normans gave their name to Normandy, a région in France. "
    article = "\n\n".join(paragraph * 20 for _ in range(8))  # about 10 KB, one context
    assert len(article.encode()) > MAX_SENTENCE_BYTES
    sentences = list(trainer_sentences(["short one", article]))
    assert sentences[0] == "short one" and len(sentences) > 3
    assert all(len(s.encode()) <= MAX_SENTENCE_BYTES for s in sentences)
    assert words(sentences) == words(["short one", article])


def test_a_run_without_whitespace_is_cut_between_characters():
    text = "ab " + "漢" * 10 + " cd"
    chunks = list(_chunks(text, 7))  # 漢 is 3 bytes
    assert all(len(c.encode()) <= 7 for c in chunks)
    assert "".join(chunks).replace(" ", "") == text.replace(" ", "")


def test_whole_articles_train_a_tokenizer(tmp_path):
    # Every context over SentencePiece's sentence limit: before the chunking the trainer kept
    # nothing and failed with "[!sentences_.empty()]".
    article = " ".join(f"word{i % 300} the of and in" for i in range(2000))
    tok = resolve_tokenizer("auto", lambda: [article, article[::-1]], tmp_path, 200)
    assert len(tok.tokenize("word12 the of")) < len("word12 the of")


def test_no_training_text_is_a_one_line_error_naming_the_data(tmp_path):
    with pytest.raises(ValueError) as err:
        resolve_tokenizer("auto", lambda: ["", "  "], tmp_path, 200, source="dataset=empty.json")
    message = str(err.value)
    assert "\n" not in message and "dataset=empty.json" in message and "tokenizer=" in message
    assert not (tmp_path / "qa_tokenizer").exists()


@pytest.mark.parametrize("kwargs", [{}, {"neighbours": 1, "neighbour_guilds": "unregistered"}])
def test_the_generated_sample_reaches_the_trainer_unchanged(tmp_path, kwargs):
    # Its contexts are within the limit, so the trainer input, the cache key and the model bytes
    # are what they were before the chunking (the demo's QA artifacts do not move).
    squad = qa_data.load_squad("sample", "train", tmp_path, 200, SampleConfig(**kwargs))
    texts = list(qa_data.contexts(qa_data.join_paragraphs(squad, 0)))
    assert list(trainer_sentences(texts)) == texts
