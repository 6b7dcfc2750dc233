"""LM evaluation of a `pretrain` artifact (called by the `evaluate` stage with task=lm).

Perplexity of held-out documents (the pretrain split, recomputed from the doc ids) in three
contexts, on the same documents and the same scored tokens:

* isolated: the document alone;
* graph:    its linked neighbours (either direction) packed before it;
* random:   random unlinked documents packed before it, cut to the same number of tokens.

Context documents are linked to the target in the pack's edge list, and the pack is read with
the graph mask (causal for causal-trained models), so the only difference between `graph` and
`random` is what the context says. A generation sample with and without graph context goes into
the results record.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch

from models.graphlm import GraphLMConfig, GraphLMForTraining, GraphLMInference
from stages.formats.graph import GraphIndex
from stages.formats.tokens import TokenStore
from stages.pretrain.data import split_documents
from stages.pretrain.train import MODEL_CONFIG, MODEL_WEIGHTS

CONTEXTS = ("isolated", "graph", "random")
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


def _upstream_path(ctx, stage: str) -> Path:
    if stage in ctx.upstream:
        return Path(ctx.upstream[stage].path)
    paths = ctx.upstream["pretrain"].manifest.get("upstream_paths", {})
    if stage not in paths:
        raise FileNotFoundError(f"the pretrain artifact does not name its `{stage}` input; rerun pretrain")
    return Path(paths[stage])


class _Corpus:
    """Documents as the model saw them in training (BOS/EOS decoration when layout=bos_eos)."""

    def __init__(self, store: TokenStore, graph: GraphIndex, decorate: bool) -> None:
        self.store, self.graph, self.decorate = store, graph, decorate
        self.usable = np.flatnonzero(store.lengths[: graph.num_nodes] > 0)

    def doc(self, doc_id: int, max_content: int) -> list[int]:
        content = self.store.tokens(doc_id)[:max_content].tolist()
        eot = self.store.eot_token
        return [eot, *content, eot] if self.decorate else content

    def neighbours(self, doc_id: int) -> np.ndarray:
        linked = self.graph.neighbors(doc_id, "both")
        linked = linked[linked != doc_id]
        return linked[self.store.lengths[linked] > 0] if len(linked) else linked

    def fill(self, candidates: np.ndarray, budget: int, rng: np.random.Generator) -> list[list[int]]:
        """Context documents from `candidates` (random order) until `budget` tokens are used."""
        docs, room = [], budget
        for doc_id in rng.permutation(candidates):
            overhead = 2 if self.decorate else 0
            if room <= overhead:
                break
            doc = self.doc(int(doc_id), room - overhead)
            docs.append(doc)
            room -= len(doc)
        return docs


def run_lm_eval(cfg, ctx) -> dict:
    """Score up to cfg.max_docs held-out documents per context; see the module docstring.

    Reads: cfg.max_docs, cfg.generate_tokens, cfg.seed.
    """
    pretrain = ctx.upstream["pretrain"]
    train_cfg = pretrain.config
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = load_trained_model(pretrain.path, device)
    infer = model.to_inference_model()
    mode = "causal" if model.config.mask == "causal" else "graph"
    graph = GraphIndex.open(_upstream_path(ctx, "graph"))
    store = TokenStore.open(_upstream_path(ctx, "pretokenize"))
    try:
        corpus = _Corpus(store, graph, train_cfg.get("layout", "bos_eos") == "bos_eos")
        heldout = split_documents(graph, store, float(train_cfg.get("val_fraction", 0.05))).heldout
        budget = int(train_cfg.get("token_budget", 256))
        details = _score(infer, corpus, heldout, budget, mode, cfg, ctx)
        metrics = _summarise(details, mode)
        if details:
            ctx.record["generation"] = _generation_sample(infer, corpus, details[0]["doc_id"], budget, mode,
                                                          cfg, ctx, store.name)
        ctx.record["lm_eval"] = {c: metrics[f"ppl_{c}"] for c in CONTEXTS}
        (ctx.out_dir / DETAILS).write_text(json.dumps({"metrics": metrics, "documents": details}, indent=1))
        return metrics
    finally:
        store.close()


def _score(infer: GraphLMInference, corpus: _Corpus, heldout: np.ndarray, budget: int, mode: str, cfg, ctx) -> list[dict]:
    details = []
    for doc_id in heldout:
        if len(details) >= cfg.max_docs:
            break
        doc_id = int(doc_id)
        linked = corpus.neighbours(doc_id)
        if len(linked) == 0:
            ctx.skip("held-out document without linked neighbours with tokens", str(doc_id))
            continue
        rng = np.random.default_rng([cfg.seed, doc_id])
        target = corpus.doc(doc_id, budget // 2)
        graph_context = corpus.fill(linked, budget - len(target), rng)
        context_tokens = sum(len(d) for d in graph_context)
        unlinked = np.setdiff1d(corpus.usable, np.append(linked, doc_id), assume_unique=False)
        random_context = corpus.fill(unlinked, context_tokens, rng)
        row = {"doc_id": doc_id, "context_tokens": context_tokens, "n_linked": len(graph_context)}
        for name, context in (("isolated", []), ("graph", graph_context), ("random", random_context)):
            nll, count = infer.context_nll(target, context, mode=mode)
            row[f"nll_{name}"], row["n_scored"] = nll, count
        details.append(row)
    return details


def _summarise(details: list[dict], mode: str) -> dict:
    scored = sum(row["n_scored"] for row in details)
    metrics: dict = {"docs_scored": len(details), "tokens_scored": scored, "eval_mask": mode,
                     "context_tokens_mean": round(float(np.mean([r["context_tokens"] for r in details])), 1)
                     if details else 0.0}
    for name in CONTEXTS:
        nll = sum(row[f"nll_{name}"] for row in details)
        mean = nll / scored if scored else float("nan")
        metrics[f"nll_{name}"] = round(mean, 6)
        metrics[f"ppl_{name}"] = round(math.exp(min(mean, 50.0)), 4) if scored else None
    return metrics


def _generation_sample(infer: GraphLMInference, corpus: _Corpus, doc_id: int, budget: int, mode: str,
                       cfg, ctx, encoding_name: str) -> dict:
    """Continue the opening of a held-out document with and without its linked neighbours."""
    prompt = corpus.doc(doc_id, 16)[:-1] if corpus.decorate else corpus.doc(doc_id, 16)
    rng = np.random.default_rng([cfg.seed, doc_id])
    context = corpus.fill(corpus.neighbours(doc_id), budget - len(prompt) - cfg.generate_tokens, rng)
    options = {"max_new_tokens": cfg.generate_tokens, "temperature": 0.8, "top_k": 50, "seed": cfg.seed,
               "stop_token": corpus.store.eot_token, "mode": mode}
    with_graph = infer.generate(prompt, context, **options)
    without = infer.generate(prompt, [], **options)
    decode = _decoder(encoding_name, ctx)
    return {"doc_id": doc_id, "title": corpus.graph.title(doc_id), "context_docs": len(context),
            "prompt": decode(prompt), "with_graph_context": decode(with_graph), "without_context": decode(without)}


def _decoder(encoding_name: str, ctx):
    """Token ids -> text with the artifact's tiktoken encoding; ids as a string if it is unknown."""
    try:
        from stages.core.tiktoken_offline import resolve_encoding

        encoding = resolve_encoding(encoding_name, cache_dir=ctx.cache_dir)
    except (ValueError, FileNotFoundError, OSError) as err:
        ctx.log.info("generation sample left as token ids: %s", err)
        return lambda ids: " ".join(map(str, ids))
    return lambda ids: encoding.decode([t for t in ids if t < encoding.n_vocab])
