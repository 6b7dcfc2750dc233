"""Stage specs of `extract`, `graph` and `pretokenize` (light: no heavy imports)."""

from stages.core.registry import StageSpec
from stages.wiki.config import ExtractConfig, GraphConfig, PretokenizeConfig

EXTRACT = StageSpec(
    name="extract",
    config_cls=ExtractConfig,
    run="stages.wiki.extract:run",
    upstream=(),
    # 2: a generated sample's artifact records its planted facts (facts.jsonl)
    version=2,
    description="Wikipedia dump (XML/CirrusSearch, or the generated sample) -> Markdown article shards",
)
GRAPH = StageSpec(
    name="graph",
    config_cls=GraphConfig,
    run="stages.wiki.graph:run",
    upstream=("extract",),
    description="article link graph: CSR out/in adjacency, graph.jsonl, degree and component stats",
)
PRETOKENIZE = StageSpec(
    name="pretokenize",
    config_cls=PretokenizeConfig,
    run="stages.wiki.pretokenize:run",
    upstream=("extract",),
    description="tiktoken-encoded, memory-mapped token shards with a document index",
    prefetch="stages.wiki.spec:prefetch_encoding",
)
STAGES = (EXTRACT, GRAPH, PRETOKENIZE)


def prefetch_encoding(cfg: PretokenizeConfig, cache_dir) -> list[str]:
    """The tiktoken encoding, verified and cached under the artifact root for offline jobs."""
    from stages.core.offline import fetch_tiktoken

    return [fetch_tiktoken(cfg.encoding, cache_dir)]
