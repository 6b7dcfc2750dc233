"""SQuAD v2 scorer, a drop-in for the official evaluation script (same arguments, same output keys).

Metric definition: answers are normalised (lowercase, punctuation removed, articles a/an/the removed,
whitespace collapsed); exact match and token F1 are maxed over the gold answers; an unanswerable
question's only gold answer is the empty string. With no-answer probabilities, a question whose
probability exceeds the threshold counts as predicted unanswerable, and the best threshold is found
by sweeping over the questions sorted by no-answer probability.

    python -m stages.qa.squad_eval DATA.json PRED.json [--na-prob-file F] [--na-prob-thresh T] [--out-file F]
"""

from __future__ import annotations

import argparse
import collections
import json
import re
import string
import sys
from pathlib import Path

_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCTUATION = frozenset(string.punctuation)


def normalize_answer(text: str) -> str:
    """Lowercase, drop punctuation, drop articles, collapse whitespace (in that order)."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def answer_tokens(text: str) -> list[str]:
    return normalize_answer(text).split() if text else []


def exact_score(gold: str, pred: str) -> int:
    return int(normalize_answer(gold) == normalize_answer(pred))


def f1_score(gold: str, pred: str) -> float:
    gold_toks, pred_toks = answer_tokens(gold), answer_tokens(pred)
    if not gold_toks or not pred_toks:
        # Both empty (a correct no-answer) scores 1, exactly one empty scores 0.
        return float(gold_toks == pred_toks)
    overlap = sum((collections.Counter(gold_toks) & collections.Counter(pred_toks)).values())
    if overlap == 0:
        return 0.0
    precision, recall = overlap / len(pred_toks), overlap / len(gold_toks)
    return 2 * precision * recall / (precision + recall)


def _questions(dataset: list[dict]):
    for article in dataset:
        for paragraph in article["paragraphs"]:
            yield from paragraph["qas"]


def _gold_answers(qa: dict) -> list[dict]:
    """A question's answers as training reads them: ``is_impossible: true`` means none, whatever
    else the file lists (`stages.qa.data.validate_squad` moves those to ``plausible_answers``)."""
    return [] if qa.get("is_impossible") is True else qa.get("answers") or []


def label_map(dataset: list[dict], key: str) -> dict[str, str]:
    """Question id -> its ``kind`` or ``form`` (extension keys of generated data, e.g. 'cross_segment',
    'guild_year'); ids without the key have none."""
    return {qa["id"]: qa[key] for qa in _questions(dataset) if qa.get(key)}


def has_answer_map(dataset: list[dict]) -> dict[str, bool]:
    return {qa["id"]: bool(_gold_answers(qa)) for qa in _questions(dataset)}


def raw_scores(dataset: list[dict], preds: dict[str, str]) -> tuple[dict[str, int], dict[str, float]]:
    """Exact and F1 per question id, before any no-answer threshold."""
    exact, f1 = {}, {}
    for qa in _questions(dataset):
        qid = qa["id"]
        golds = [a["text"] for a in _gold_answers(qa) if normalize_answer(a["text"])] or [""]
        if qid not in preds:
            print(f"Missing prediction for {qid}")
            continue
        exact[qid] = max(exact_score(g, preds[qid]) for g in golds)
        f1[qid] = max(f1_score(g, preds[qid]) for g in golds)
    return exact, f1


def apply_no_answer_threshold(scores: dict, na_probs: dict, has_ans: dict, thresh: float) -> dict[str, float]:
    """A question predicted unanswerable (na_prob > thresh) scores 1 iff it has no answer."""
    return {qid: float(not has_ans[qid]) if na_probs[qid] > thresh else s for qid, s in scores.items()}


def summary(exact: dict, f1: dict, qids: list[str] | None = None) -> dict:
    if qids is None:
        qids = list(exact)
    missing = [q for q in qids if q not in exact]
    if missing:
        raise ValueError(f"predictions: {len(missing)} question ids have no prediction (e.g. {missing[0]}); predict every id")
    total = len(qids)
    return collections.OrderedDict(
        [("exact", 100.0 * sum(exact[q] for q in qids) / total), ("f1", 100.0 * sum(f1[q] for q in qids) / total), ("total", total)]
    )


def best_threshold(preds: dict, scores: dict, na_probs: dict, has_ans: dict) -> tuple[float, float]:
    """Sweep thresholds in increasing na_prob order; return (best score in %, threshold).

    Start from "everything predicted unanswerable" (scores the unanswerable questions); each step
    un-abstains one more question, gaining its score if answerable and losing 1 if it is unanswerable
    but the model produced a non-empty answer.
    """
    current = best = sum(1 for v in has_ans.values() if not v)
    best_thresh = 0.0
    for qid in sorted(na_probs, key=lambda k: na_probs[k]):
        if qid not in scores:
            continue
        if has_ans[qid]:
            current += scores[qid]
        elif preds[qid]:
            current -= 1
        if current > best:
            best, best_thresh = current, na_probs[qid]
    return 100.0 * best / len(scores), best_thresh


def precision_recall_ap(scores: dict, na_probs: dict, num_true_pos: int, has_ans: dict) -> tuple[float, list, list]:
    """Average precision of answering in increasing na_prob order; ties share one operating point."""
    order = sorted(na_probs, key=lambda k: na_probs[k])
    true_pos, precisions, recalls, avg_prec = 0.0, [1.0], [0.0], 0.0
    for i, qid in enumerate(order):
        if has_ans[qid]:
            true_pos += scores[qid]
        precision, recall = true_pos / (i + 1), true_pos / num_true_pos
        if i == len(order) - 1 or na_probs[qid] != na_probs[order[i + 1]]:
            avg_prec += precision * (recall - recalls[-1])
            precisions.append(precision)
            recalls.append(recall)
    return 100.0 * avg_prec, precisions, recalls


def _plots(out: dict, exact: dict, f1: dict, na_probs: dict, has_ans: dict, image_dir: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    image_dir.mkdir(parents=True, exist_ok=True)
    num_true_pos = sum(1 for v in has_ans.values() if v)
    if num_true_pos:
        oracle = {k: float(v) for k, v in has_ans.items()}
        for name, scores, title in (("exact", exact, "Exact Match"), ("f1", f1, "F1"), ("oracle", oracle, "Oracle")):
            ap, precisions, recalls = precision_recall_ap(scores, na_probs, num_true_pos, has_ans)
            out[f"pr_{name}_ap"] = ap
            plt.step(recalls, precisions, color="b", alpha=0.2, where="post")
            plt.fill_between(recalls, precisions, step="post", alpha=0.2, color="b")
            plt.xlabel("Recall")
            plt.ylabel("Precision")
            plt.xlim([0.0, 1.05])
            plt.ylim([0.0, 1.05])
            plt.title(f"Precision-Recall curve for {title} score")
            plt.savefig(image_dir / f"pr_{name}.png")
            plt.clf()
    for label, wanted in (("hasAns", True), ("noAns", False)):
        qids = [k for k, v in has_ans.items() if v == wanted]
        if not qids:
            continue
        values = [na_probs[k] for k in qids]
        plt.hist(values, weights=[1.0 / len(values)] * len(values), bins=20, range=(0.0, 1.0))
        plt.xlabel("Model probability of no-answer")
        plt.ylabel("Proportion of dataset")
        plt.title(f"Histogram of no-answer probability: {label}")
        plt.savefig(image_dir / f"na_prob_hist_{label}.png")
        plt.clf()


def evaluate(dataset: list[dict], preds: dict[str, str], na_probs: dict[str, float] | None = None,
             na_prob_thresh: float = 1.0, image_dir: Path | None = None) -> dict:
    """The official metrics dict. Without ``na_probs`` every question gets na_prob 0."""
    given_na = na_probs is not None
    if na_probs is None:
        na_probs = {k: 0.0 for k in preds}
    has_ans = has_answer_map(dataset)
    exact_raw, f1_raw = raw_scores(dataset, preds)
    exact = apply_no_answer_threshold(exact_raw, na_probs, has_ans, na_prob_thresh)
    f1 = apply_no_answer_threshold(f1_raw, na_probs, has_ans, na_prob_thresh)
    out = summary(exact, f1)
    for prefix, wanted in (("HasAns", True), ("NoAns", False)):
        qids = [k for k, v in has_ans.items() if v == wanted]
        if qids:
            out.update({f"{prefix}_{k}": v for k, v in summary(exact, f1, qids).items()})
    # Beyond the official keys: one breakdown per question kind, and per form ("form_<name>_*"),
    # when the data labels them.
    for key, prefix in (("kind", ""), ("form", "form_")):
        labels = label_map(dataset, key)
        for label in sorted(set(labels.values())):
            qids = [q for q, k in labels.items() if k == label and q in exact]
            if qids:
                out.update({f"{prefix}{label}_{k}": v for k, v in summary(exact, f1, qids).items()})
    if given_na:
        out["best_exact"], out["best_exact_thresh"] = best_threshold(preds, exact_raw, na_probs, has_ans)
        out["best_f1"], out["best_f1_thresh"] = best_threshold(preds, f1_raw, na_probs, has_ans)
        if image_dir is not None:
            _plots(out, exact_raw, f1_raw, na_probs, has_ans, image_dir)
    return out


#: The scores the memory ablation reports (overall and per question kind).
ABLATED_SCORES = ("exact", "f1", "local_f1", "cross_segment_f1", "unanswerable_f1")


def memory_gain(scores: dict, frozen: dict) -> dict[str, float]:
    """``memory_frozen_<score>`` (scores with memory frozen) and ``memory_gain_<score>`` (``scores``
    minus those) for the ABLATED_SCORES and every question form's exact/F1 that both have.

    Per form because a memory effect can hide in one form: a model that abstains on "When was the
    patron guild of X founded?" unless memory says X was named earlier shows it only in the form
    whose X is absent (README, QA study)."""
    forms = sorted(k for k in scores if k.startswith("form_") and k.endswith(("_exact", "_f1")))
    out = {}
    for key in (*ABLATED_SCORES, *forms):
        if key in scores and key in frozen:
            out[f"memory_frozen_{key}"] = frozen[key]
            out[f"memory_gain_{key}"] = scores[key] - frozen[key]
    return out


def _load_json(path: str, what: str):
    if not Path(path).is_file():
        raise FileNotFoundError(f"{what}: {path} does not exist; pass the path of a JSON file")
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser("Official evaluation script for SQuAD version 2.0 (reimplementation).")
    parser.add_argument("data_file", metavar="data.json", help="Input data JSON file.")
    parser.add_argument("pred_file", metavar="pred.json", help="Model predictions.")
    parser.add_argument("--out-file", "-o", metavar="eval.json", help="Write accuracy metrics to file (default is stdout).")
    parser.add_argument("--na-prob-file", "-n", metavar="na_prob.json", help="Model estimates of probability of no answer.")
    parser.add_argument("--na-prob-thresh", "-t", type=float, default=1.0,
                        help='Predict "" if no-answer probability exceeds this (default = 1.0).')
    parser.add_argument("--out-image-dir", "-p", metavar="out_images", default=None,
                        help="Save precision-recall curves to directory.")
    parser.add_argument("--verbose", "-v", action="store_true")
    argv = sys.argv[1:] if argv is None else argv
    if not argv:
        parser.print_help()
        return 1
    opts = parser.parse_args(argv)
    dataset = _load_json(opts.data_file, "data_file")["data"]
    preds = _load_json(opts.pred_file, "pred_file")
    na_probs = _load_json(opts.na_prob_file, "na_prob_file") if opts.na_prob_file else None
    image_dir = Path(opts.out_image_dir) if opts.out_image_dir else None
    out = evaluate(dataset, preds, na_probs, opts.na_prob_thresh, image_dir)
    if opts.out_file:
        with open(opts.out_file, "w") as f:
            json.dump(out, f)
    else:
        print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
