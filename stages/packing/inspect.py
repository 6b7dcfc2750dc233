"""Inspector: print packs and summary statistics for a graph + token artifact.

python -m stages.packing.inspect --graph PATH --tokens PATH [--strategy bfs] [--seed 0] [--packs 64]
    [--show 2] [key=value ...]   # any PackingConfig field, e.g. token_budget=2048 layout=none
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from stages.core.config import resolve
from stages.packing.config import PackingConfig
from stages.packing.loader import PackLoader
from stages.packing.stats import PackStats

SNIPPET_TOKENS = 24


def load_encoding(name: str, tokens_path: Path | None = None):
    """The tiktoken encoding named in tokenizer.json, resolved offline (also from the artifact
    root's shared cache `{root}/cache` next to `{root}/pretokenize/<sig>`); None if unavailable."""
    from stages.core.tiktoken_offline import resolve_encoding

    cache_dir = None
    if tokens_path is not None and (Path(tokens_path).resolve().parent.parent / "cache").is_dir():
        cache_dir = Path(tokens_path).resolve().parent.parent / "cache"
    try:
        return resolve_encoding(name, cache_dir)
    except Exception:  # noqa: BLE001 - any failure only means "show token ids instead"
        return None


def _snippet(encoding, tokens, width: int) -> str:
    ids = [int(t) for t in tokens[:SNIPPET_TOKENS]]
    if encoding is None:
        text = " ".join(map(str, ids))
    else:
        text = encoding.decode(ids, errors="replace")
    text = " ".join(text.split())
    return text[: width - 3] + "..." if len(text) > width else text


def render_pack(batch: dict, b: int, graph, encoding, eot: int, width: int = 60) -> str:
    """One pack as text: spans (with truncation), links between its documents, snippets."""
    spans = batch["doc_spans"][b]
    tokens = batch["tokens"][b].numpy()
    budget = len(tokens)
    used = sum(s[1] for s in spans)
    lines = [f"pack {b}: {len(spans)} documents, {used}/{budget} tokens (fill {100 * used / budget:.1f}%)"]
    lines.append(f"  {'#':>3} {'start':>6} {'len':>6} {'doc_id':>8} {'trunc':>5}  {'title':<32} snippet")
    for i, (start, length, doc, truncated) in enumerate(spans):
        content = tokens[start : start + length]
        if len(content) and content[0] == eot:
            content = content[1:]
        title = graph.title(doc)
        title = title if len(title) <= 32 else title[:29] + "..."
        snippet = _snippet(encoding, content, width)
        lines.append(f"  {i:>3} {start:>6} {length:>6} {doc:>8} {'yes' if truncated else '':>5}  {title:<32} {snippet}")
    edges = batch["edges"].numpy()
    mine = edges[edges[:, 0] == b]
    if len(mine):
        links = ", ".join(f"{i}->{j}" for _, i, j in mine.tolist())
        lines.append(f"  links (i->j: doc i links to doc j): {links}")
    else:
        lines.append("  links: none")
    return "\n".join(lines)


def inspect_packs(graph_path, tokens_path, cfg: PackingConfig, n_packs: int = 64, show: int = 2,
                  allowed_doc_ids=None, seed: int = 0):
    """Render `show` packs and summarise `n_packs` packs drawn with `seed`; returns (text, summary dict)."""
    loader = PackLoader.from_paths(graph_path, tokens_path, cfg, seed, allowed_doc_ids=allowed_doc_ids)
    encoding = load_encoding(loader.store.name, tokens_path)
    stats = PackStats(loader.num_allowed)
    parts = []
    first = None
    for batch in loader:
        if first is None:
            first = batch
        stats.update(batch)
        if stats.summary()["packs"] >= n_packs:
            break
    summary = stats.summary()
    summary.update(
        {
            "strategy": cfg.strategy,
            "token_budget": cfg.token_budget,
            "documents_allowed": loader.num_allowed,
            "start_points_used": loader.stats()["start_points_used"],
            "start_point_epochs": loader.stats()["epochs"][0],
        }
    )
    shapes = ", ".join(f"{k} {list(v.shape)}" for k, v in first.items() if hasattr(v, "shape"))
    parts.append(f"graph {graph_path}: {loader.graph.num_nodes} articles, {loader.graph.num_edges} links")
    parts.append(
        f"tokens {tokens_path}: {loader.store.num_docs} documents, {loader.store.num_tokens} tokens, "
        f"tokenizer {loader.store.name or '?'}{'' if encoding else ' (not resolvable: showing ids)'}"
    )
    parts.append(f"config: {cfg}, seed {seed}")
    parts.append(f"batch shapes: {shapes}")
    for b in range(min(show, len(first["doc_spans"]))):
        parts.append(render_pack(first, b, loader.graph, encoding, loader.store.eot_token))
    parts.append(f"summary over {summary['packs']} packs:")
    parts.append(
        "  docs/pack {docs_per_pack_mean:.2f} (min {docs_per_pack_min}, max {docs_per_pack_max}), "
        "fill {fill_rate:.2%}, truncated spans {truncation_rate:.2%}, "
        "adjacent pairs linked {adjacent_linked_fraction:.2%}, coverage {coverage:.2%}".format(**summary)
    )
    return "\n".join(parts), summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m stages.packing.inspect", description=__doc__.strip().splitlines()[0]
    )
    parser.add_argument("--graph", required=True, type=Path, help="graph artifact directory")
    parser.add_argument("--tokens", required=True, type=Path, help="pretokenize artifact directory")
    parser.add_argument("--strategy", help="shortcut for strategy=...")
    parser.add_argument("--seed", type=int, default=0, help="seed of the start points and the traversal "
                        "(a pretrain run's `seed`)")
    parser.add_argument("--packs", type=int, default=64, help="packs to summarise")
    parser.add_argument("--show", type=int, default=2, help="packs to print in full")
    parser.add_argument("--json", action="store_true", help="also print the summary as JSON")
    parser.add_argument("overrides", nargs="*", help="PackingConfig fields as key=value")
    args = parser.parse_args(argv)
    overrides = {}
    for item in args.overrides:
        key, sep, value = item.partition("=")
        if not sep:
            parser.error(f"override {item!r} is not key=value")
        overrides[key] = value
    if args.strategy:
        overrides["strategy"] = args.strategy
    cfg = resolve(PackingConfig, overrides, where="packing")
    text, summary = inspect_packs(args.graph, args.tokens, cfg, n_packs=args.packs, show=args.show, seed=args.seed)
    print(text)
    if args.json:
        print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
