"""Which corpus an LM evaluation reads: the training corpus's held-out split, a fresh generated
corpus, or another pretokenize artifact (train on one dump, evaluate on another).

`fresh` regenerates the sample corpus the model was trained on with another seed (new names, new
facts) and runs extract, graph and pretokenize on it with the training corpus's settings, inside
the evaluation's own artifact (a private root: concurrent evaluations never share a writer). No
document of it was trained on, so graph context there measures reading by construction.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

CORPUS_CHOICES = ("auto", "heldout", "fresh")
FRESH_SEED_OFFSET = 1_000


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
        if not sample:
            raise ValueError("corpus=fresh needs a pretrain artifact trained on dump=sample; "
                             "for a real dump use corpus=heldout or corpus=<path of another pretokenize artifact>")
        return _fresh(paths, _manifest(paths["extract"])["config"], ctx)
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


def _fresh(paths: dict[str, Path], extract_cfg: dict, ctx) -> EvalCorpus:
    from stages.core import config as config_lib
    from stages.core import registry
    from stages.core.runner import execute

    seed = extract_cfg.get("sample_seed", 0)
    root = ctx.out_dir / "corpus"
    root.mkdir(parents=True, exist_ok=True)
    if not (root / "cache").exists():
        (root / "cache").symlink_to(ctx.cache_dir.resolve(), target_is_directory=True)
    overrides = {
        "extract": {**_signature_fields(extract_cfg, "extract"), "sample_seed": seed + FRESH_SEED_OFFSET,
                    "workers": 1},
        "graph": _signature_fields(_manifest(paths["graph"])["config"], "graph"),
        "pretokenize": {**_signature_fields(_manifest(paths["pretokenize"])["config"], "pretokenize"), "workers": 1},
    }
    upstream = {}
    for stage in ("extract", "graph", "pretokenize"):
        spec = registry.get(stage)
        cfg = config_lib.resolve(spec.config_cls, overrides[stage], where=f"evaluate corpus=fresh ({stage})")
        outcome = execute(spec, cfg, root, upstream)
        from stages.core.artifacts import load_artifact

        upstream[stage] = load_artifact(root, stage, outcome.signature)
    return EvalCorpus("fresh", upstream["graph"].path, upstream["pretokenize"].path, None, upstream["extract"].path)


def _signature_fields(cfg: dict, stage: str) -> dict:
    """The training corpus's config for `stage`, as overrides (keys this version knows)."""
    from stages.core import config as config_lib
    from stages.core import registry

    defaults = config_lib.to_dict(config_lib.resolve(registry.get(stage).config_cls, {}))
    return {k: v for k, v in cfg.items() if k in defaults and v != defaults[k]}
