"""Which corpus an LM evaluation reads: the training corpus's held-out split, a fresh generated
corpus, or another pretokenize artifact (train on one dump, evaluate on another).

`fresh` regenerates the sample corpus the model was trained on with another seed (new names, new
facts) and reads it through extract, graph and pretokenize with the training corpus's settings.
Those are jobs of the plan (`fresh_corpus_nodes`, the evaluate stage's derived upstream: roles
`extract@fresh`, `graph@fresh`, `pretokenize@fresh`), artifacts like any other. No document of
it was trained on, so graph context there measures reading by construction.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

CORPUS_CHOICES = ("auto", "heldout", "fresh")
FRESH_SEED_OFFSET = 1_000
FRESH_ROLES = ("extract@fresh", "graph@fresh", "pretokenize@fresh")


def fresh_corpus_nodes(cfg, upstream_cfgs: dict) -> dict:
    """The evaluate stage's derived upstream (`StageSpec.derived`): for an LM evaluation that reads
    a fresh corpus (`corpus=fresh`, or `auto` on a generated sample), the training corpus's extract
    with another sample seed, and graph and pretokenize of it with the training settings."""
    extract = upstream_cfgs.get("extract")
    sample = extract is not None and extract.dump == "sample"
    if cfg.task != "lm" or not (cfg.corpus == "fresh" or (cfg.corpus == "auto" and sample)):
        return {}
    if not sample:
        from stages.core.config import ConfigError

        raise ConfigError("evaluate `corpus=fresh` needs a pretrain artifact trained on dump=sample; for a real "
                          "dump use corpus=heldout or corpus=<path of another pretokenize artifact>")
    fresh = dataclasses.replace(extract, sample_seed=extract.sample_seed + FRESH_SEED_OFFSET)
    on_fresh = {"extract": "extract@fresh"}
    return {"extract@fresh": (fresh, {}), "graph@fresh": (upstream_cfgs["graph"], on_fresh),
            "pretokenize@fresh": (upstream_cfgs["pretokenize"], on_fresh)}


@dataclasses.dataclass
class EvalCorpus:
    """Paths of the evaluated graph and tokens, the documents to score, and where they came from."""

    name: str  # heldout | fresh | the pretokenize artifact path
    graph_path: Path
    tokens_path: Path
    candidates: np.ndarray | None  # documents to score (None: every document)
    extract_path: Path | None  # the extract artifact of the scored corpus (its planted facts, if any)
    split_sizes: dict = dataclasses.field(default_factory=dict)


def _manifest(path: Path) -> dict:
    return json.loads((Path(path) / "manifest.json").read_text())


def upstream_paths(ctx) -> dict[str, Path]:
    """Artifact paths of the stages upstream of the evaluated pretrain artifact: those in the
    context, else those its manifest names."""
    pretrain = ctx.upstream["pretrain"]
    paths = {stage: Path(p) for stage, p in pretrain.manifest.get("upstream_paths", {}).items()}
    paths.update({stage: Path(a.path) for stage, a in ctx.upstream.items() if stage != "pretrain"})
    missing = [s for s in ("graph", "pretokenize") if s not in paths]
    if missing:
        raise FileNotFoundError(f"the pretrain artifact {pretrain.path} does not name its {missing} inputs; rerun pretrain")
    return paths


def _extract_config(path: Path):
    """The ExtractConfig an extract artifact was made with (typed, the stage's own defaults)."""
    from stages.core.artifacts import Artifact

    return Artifact(Path(path), _manifest(path)).typed_config()


def _is_sample(extract_path: Path) -> bool:
    return _extract_config(extract_path).dump == "sample"


def resolve(choice: str, train_cfg, ctx) -> EvalCorpus:
    """The evaluation corpus for `choice` (see the module docstring); `auto` is `fresh` on a
    generated sample and `heldout` otherwise."""
    paths = upstream_paths(ctx)
    sample = "extract" in paths and _is_sample(paths["extract"])
    if choice == "auto":
        choice = "fresh" if sample else "heldout"
    if choice == "heldout":
        return _heldout(paths, train_cfg)
    if choice == "fresh":
        missing = [role for role in FRESH_ROLES if role not in ctx.upstream]
        if missing:
            raise ValueError(f"corpus=fresh: upstream {missing} not given; run the evaluation through "
                             "`python jobs/submit.py stage=evaluate ...`, whose plan builds the fresh corpus")
        extract, graph, tokens = (Path(ctx.upstream[role].path) for role in FRESH_ROLES)
        return EvalCorpus("fresh", graph, tokens, None, extract)
    tokens_path = Path(choice).expanduser()
    if not (tokens_path / "manifest.json").is_file():
        raise FileNotFoundError(f"corpus={choice}: not a pretokenize artifact (no manifest.json); "
                                f"choose one of {CORPUS_CHOICES} or the path of a pretokenize artifact")
    manifest = _manifest(tokens_path)
    graph_path = _graph_of_extract(tokens_path, manifest)
    extract_path = Path(manifest["upstream_paths"]["extract"])
    return EvalCorpus(str(tokens_path), graph_path, tokens_path, None, extract_path)


def _graph_of_extract(tokens_path: Path, manifest: dict) -> Path:
    """The graph artifact built from the same extract as `tokens_path` (sibling under the root)."""
    extract_sig = manifest["upstream"]["extract"]
    root = Path(tokens_path).parent.parent
    for candidate in sorted((root / "graph").glob("*/manifest.json")):
        if json.loads(candidate.read_text()).get("upstream", {}).get("extract") == extract_sig:
            return candidate.parent
    raise FileNotFoundError(f"no graph artifact of extract {extract_sig} under {root / 'graph'}; "
                            f"run `stage=graph extract.from={extract_sig}` first")


def _heldout(paths: dict[str, Path], train_cfg) -> EvalCorpus:
    from stages.formats.graph import GraphIndex
    from stages.formats.tokens import TokenStore
    from stages.pretrain.data import split_documents

    graph = GraphIndex.open(paths["graph"])
    store = TokenStore.open(paths["pretokenize"])
    try:
        split = split_documents(graph, store, train_cfg.val_fraction, train_cfg.heldout, train_cfg.hub_degree)
    finally:
        store.close()
    return EvalCorpus("heldout", paths["graph"], paths["pretokenize"], split.heldout, paths.get("extract"), split.sizes())
