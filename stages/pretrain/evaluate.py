"""LM evaluation of a `pretrain` artifact (called by the `evaluate` stage with task=lm).

Each scored document is read in three contexts, on the same tokens:

* isolated: the document alone;
* graph:    its linked neighbours (either direction) packed before it;
* random:   random unlinked documents packed before it, cut to the same number of tokens.

Context documents are linked to the target in the pack's edge list, and the pack is read with
the mask the model was trained with (a doc-mask model cannot see any context: its three scores
agree), so the only difference between `graph` and `random` is what the context says. Three token
sets are scored: every prediction (`nll_*`, `ppl_*`), the copyable tokens (`nll_copy_*`: the
n-gram ending at the token occurs in the graph context), and on a generated corpus the values of
the linked facts the document repeats (`nll_fact_*`, from the generator's own records). A copy
check (`nll_repeat_*`, `d_repeat`) reads each document twice in a row: if the second reading is no
easier, the model cannot copy from context at all and no context can help it yet. The
corpus (`corpus=`) is the training corpus's held-out split, a fresh generated corpus, or another
pretokenize artifact; `eval_corpus` in the metrics says which.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch

from models.graphlm import GraphLMConfig, GraphLMForTraining, GraphLMInference
from stages.core.devices import local_device
from stages.formats.facts import read_facts
from stages.formats.graph import GraphIndex
from stages.formats.tokens import TokenStore
from stages.pretrain import eval_corpus
from stages.pretrain.artifact import MODEL_CONFIG, MODEL_WEIGHTS
from stages.pretrain.lm_metrics import copyable_mask, value_mask
from stages.pretrain.vocab import CompactVocab

CONTEXTS = ("isolated", "graph", "random")
TOKEN_SETS = ("", "copy_", "fact_")  # every prediction, copyable tokens, linked-fact values
DETAILS = "lm_eval.json"


def load_trained_model(artifact_dir: Path, device: torch.device | str = "cpu") -> GraphLMForTraining:
    """The final weights of a pretrain artifact, in eval mode on `device`."""
    from safetensors.torch import load_file

    artifact_dir = Path(artifact_dir)
    for name in (MODEL_CONFIG, MODEL_WEIGHTS):
        if not (artifact_dir / name).is_file():
            raise FileNotFoundError(f"{artifact_dir} lacks {name}; point evaluate at a finished pretrain artifact")
    config = GraphLMConfig.from_dict(json.loads((artifact_dir / MODEL_CONFIG).read_text()))
    model = GraphLMForTraining.from_config(config.with_(compile=False))
    model.load_state_dict(load_file(str(artifact_dir / MODEL_WEIGHTS)))
    return model.to(device).eval()


class _Corpus:
    """Documents as the model saw them in training (BOS/EOS decoration when layout=bos_eos), in
    encoding ids; `model_ids` maps them to the model's (compact) vocabulary."""

    def __init__(self, store: TokenStore, graph: GraphIndex, decorate: bool, vocab: CompactVocab | None) -> None:
        self.store, self.graph, self.decorate, self.vocab = store, graph, decorate, vocab
        self.usable = np.flatnonzero(store.lengths[: graph.num_nodes] > 0)

    def doc(self, doc_id: int, max_content: int) -> list[int]:
        content = self.store.tokens(doc_id)[:max_content].tolist()
        eot = self.store.eot_token
        return [eot, *content, eot] if self.decorate else content

    def model_ids(self, tokens: list[int]) -> list[int]:
        return tokens if self.vocab is None else self.vocab.encode(tokens).tolist()

    def neighbours(self, doc_id: int) -> np.ndarray:
        linked = self.graph.neighbors(doc_id, "both")
        linked = linked[(linked != doc_id) & (linked < len(self.store.lengths))]
        return linked[self.store.lengths[linked] > 0] if len(linked) else linked

    def fill(self, candidates: np.ndarray, budget: int, rng: np.random.Generator) -> list[tuple[int, list[int]]]:
        """(doc id, tokens) of context documents from `candidates` (random order) within `budget`."""
        docs, room = [], budget
        overhead = 2 if self.decorate else 0
        for doc_id in rng.permutation(candidates):
            if room <= overhead:
                break
            doc = self.doc(int(doc_id), room - overhead)
            docs.append((int(doc_id), doc))
            room -= len(doc)
        return docs


class _Facts:
    """Token ids of the linked-fact values each generated article repeats, by subject title."""

    def __init__(self, extract_path: Path | None, encoding) -> None:
        self.by_title = read_facts(extract_path) if encoding is not None else {}
        self.encoding = encoding

    @property
    def available(self) -> bool:
        return bool(self.by_title)

    def values(self, title: str, context_titles: set[str]) -> list[list[int]]:
        """Values of the facts that `title` repeats from documents now in its context."""
        return [self.encoding.encode_ordinary(" " + value) for subject, value in self.by_title.get(title, [])
                if subject in context_titles]


def run_lm_eval(cfg, ctx) -> dict:
    """Score up to cfg.max_docs documents per context; see the module docstring.

    Reads: cfg.max_docs, cfg.corpus, cfg.copy_ngram, cfg.score_mask, cfg.generate_tokens, cfg.seed.
    """
    pretrain = ctx.upstream["pretrain"]
    train_cfg = pretrain.typed_config()  # PretrainConfig: the trainer's own defaults, no second copy
    device = local_device()
    model = load_trained_model(pretrain.path, device)
    infer = model.to_inference_model()
    mode = model.config.mask if cfg.score_mask == "trained" else cfg.score_mask
    source = eval_corpus.resolve(cfg.corpus, train_cfg, ctx)
    graph = GraphIndex.open(source.graph_path)
    store = TokenStore.open(source.tokens_path)
    try:
        vocab = CompactVocab.load(pretrain.path, store.n_vocab)
        corpus = _Corpus(store, graph, train_cfg.packing.layout == "bos_eos", vocab)
        encoding = _encoding(store.name, ctx)
        facts = _Facts(source.extract_path, encoding)
        budget = train_cfg.packing.token_budget
        candidates = corpus.usable if source.candidates is None else source.candidates
        order = np.random.default_rng(cfg.seed).permutation(candidates)
        details = _score(infer, corpus, facts, order, budget, mode, cfg, ctx)
        metrics = _summarise(details, mode, facts.available)
        metrics.update(eval_corpus=source.name, trained_mask=model.config.mask,
                       cross_mask=mode != model.config.mask, copy_ngram=cfg.copy_ngram,
                       **{f"split_{k}": v for k, v in source.split_sizes.items()})
        if vocab is not None:
            metrics["unknown_token_rate"] = round(_unknown_rate(corpus, order[: cfg.max_docs]), 5)
        if details:
            decode = (lambda ids: encoding.decode(vocab.decode(ids) if vocab else ids)) if encoding else str
            ctx.record["generation"] = _generation_sample(infer, corpus, details[0]["doc_id"], budget, mode,
                                                          cfg, decode)
        ctx.record["lm_eval"] = {c: metrics[f"ppl_{c}"] for c in CONTEXTS}
        (ctx.out_dir / DETAILS).write_text(json.dumps({"metrics": metrics, "documents": details}, indent=1))
        return metrics
    finally:
        store.close()


def _score(infer: GraphLMInference, corpus: _Corpus, facts: _Facts, order: np.ndarray, budget: int, mode: str,
           cfg, ctx) -> list[dict]:
    details = []
    for doc_id in order:
        if len(details) >= cfg.max_docs:
            break
        doc_id = int(doc_id)
        linked = corpus.neighbours(doc_id)
        if len(linked) == 0:
            ctx.skip("document without linked neighbours with tokens", str(doc_id))
            continue
        rng = np.random.default_rng([cfg.seed, doc_id])
        target = corpus.doc(doc_id, budget // 2)
        graph_context = corpus.fill(linked, budget - len(target), rng)
        context_tokens = sum(len(d) for _, d in graph_context)
        unlinked = np.setdiff1d(corpus.usable, np.append(linked, doc_id))
        random_context = corpus.fill(unlinked, context_tokens, rng)
        sets = {
            "": np.ones(max(len(target) - 1, 0), dtype=bool),
            "copy_": copyable_mask(target, [d for _, d in graph_context], cfg.copy_ngram),
        }
        if facts.available:
            titles = {corpus.graph.title(i) for i, _ in graph_context}
            sets["fact_"] = value_mask(target, facts.values(corpus.graph.title(doc_id), titles))
        row = {"doc_id": doc_id, "context_tokens": context_tokens, "n_linked": len(graph_context)}
        row.update({f"n_{s}scored": int(m.sum()) for s, m in sets.items()})
        for name, context in (("isolated", []), ("graph", graph_context), ("random", random_context)):
            losses = infer.context_token_nll(corpus.model_ids(target), [corpus.model_ids(d) for _, d in context],
                                             mode=mode).numpy()
            for prefix, mask in sets.items():
                row[f"nll_{prefix}{name}"] = float(losses[mask].sum())
        row.update(_repeat_nll(infer, corpus.model_ids(target), mode))
        details.append(row)
    return details


def _repeat_nll(infer: GraphLMInference, target: list[int], mode: str) -> dict:
    """Can the model copy at all? NLL of the target read twice in a row inside one document: the
    second reading is fully copyable from the first under any mask. `nll_repeat_first` near
    `nll_repeat_second` means the model has not learned in-context copying (no induction), so no
    context, linked or not, can help it yet."""
    losses = infer.context_token_nll(target + target, [], mode=mode).numpy()
    half = len(target)
    return {"nll_repeat_first": float(losses[: half - 1].sum()), "nll_repeat_second": float(losses[half:].sum()),
            "n_repeat_scored": half - 1}


def _summarise(details: list[dict], mode: str, with_facts: bool) -> dict:
    metrics: dict = {"docs_scored": len(details), "eval_mask": mode,
                     "context_tokens_mean": round(float(np.mean([r["context_tokens"] for r in details])), 1)
                     if details else 0.0}
    for prefix in TOKEN_SETS:
        if prefix == "fact_" and not with_facts:
            continue
        scored = sum(row[f"n_{prefix}scored"] for row in details)
        metrics[f"tokens_{prefix}scored"] = scored
        means = {}
        for name in CONTEXTS:
            mean = sum(row[f"nll_{prefix}{name}"] for row in details) / scored if scored else float("nan")
            means[name] = mean
            metrics[f"nll_{prefix}{name}"] = round(mean, 6)
            if prefix == "":
                metrics[f"ppl_{name}"] = round(math.exp(min(mean, 50.0)), 4) if scored else None
        # Paired on the same tokens: negative = the graph context helps.
        metrics[f"d_{prefix}graph_isolated"] = round(means["graph"] - means["isolated"], 6)
        metrics[f"d_{prefix}graph_random"] = round(means["graph"] - means["random"], 6)
    repeated = sum(row["n_repeat_scored"] for row in details)
    if repeated:
        for half in ("first", "second"):
            metrics[f"nll_repeat_{half}"] = round(sum(row[f"nll_repeat_{half}"] for row in details) / repeated, 6)
        metrics["d_repeat"] = round(metrics["nll_repeat_second"] - metrics["nll_repeat_first"], 6)
    return metrics


def _unknown_rate(corpus: _Corpus, doc_ids: np.ndarray) -> float:
    """Share of the scored documents' tokens outside the model's compact vocabulary."""
    tokens = np.concatenate([corpus.store.tokens(int(d)) for d in doc_ids]) if len(doc_ids) else np.zeros(0)
    return float((corpus.vocab.encode(tokens) == corpus.vocab.unk).mean()) if len(tokens) else 0.0


def _generation_sample(infer: GraphLMInference, corpus: _Corpus, doc_id: int, budget: int, mode: str,
                       cfg, decode) -> dict:
    """Continue the opening of a scored document with and without its linked neighbours."""
    prompt = corpus.doc(doc_id, 16)[:-1] if corpus.decorate else corpus.doc(doc_id, 16)
    rng = np.random.default_rng([cfg.seed, doc_id])
    context = [corpus.model_ids(d) for _, d in
               corpus.fill(corpus.neighbours(doc_id), budget - len(prompt) - cfg.generate_tokens, rng)]
    stop = corpus.model_ids([corpus.store.eot_token])[0]
    options = {"max_new_tokens": cfg.generate_tokens, "temperature": 0.8, "top_k": 50, "seed": cfg.seed,
               "stop_token": stop, "mode": mode}
    with_graph = infer.generate(corpus.model_ids(prompt), context, **options)
    without = infer.generate(corpus.model_ids(prompt), [], **options)
    return {"doc_id": doc_id, "title": corpus.graph.title(doc_id), "context_docs": len(context),
            "prompt": decode(corpus.model_ids(prompt)), "with_graph_context": decode(with_graph),
            "without_context": decode(without)}


def _encoding(encoding_name: str, ctx):
    """The artifact's tiktoken encoding, or None if it cannot be resolved offline."""
    try:
        from stages.core.tiktoken_offline import resolve_encoding

        return resolve_encoding(encoding_name, cache_dir=ctx.cache_dir)
    except (ValueError, FileNotFoundError, OSError) as err:
        ctx.log.info("no fact values and generation sample left as ids: %s", err)
        return None
