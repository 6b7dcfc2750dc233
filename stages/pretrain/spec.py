"""Stage spec of `pretrain` (light: stdlib and the config only)."""

from stages.core.registry import Headline, StageSpec
from stages.pretrain.config import PretrainConfig

STAGE = StageSpec(
    name="pretrain",
    config_cls=PretrainConfig,
    run="stages.pretrain.train:run",
    upstream=("pretokenize", "graph"),
    description="graph-LM pretraining on graph-packed token shards (causal/doc/graph masks), resumable",
    resumable=True,
    # The demo's comparison: every traversal strategy x the document-aware masks (`causal` is
    # left out to fit the 10-minute budget; `pretrain.mask=causal,doc,graph` adds it).
    grid={"strategy": "random,random_walk,bfs,dfs", "mask": "doc,graph"},
    headlines=(Headline(
        "Graph-LM: loss, perplexity by context, throughput",
        ("final_train_loss", "val_loss", "evaluate:ppl_isolated", "evaluate:ppl_graph", "evaluate:ppl_random",
         "tokens_per_s"),
        plot=("perplexity_by_context", ("ppl_isolated", "ppl_graph", "ppl_random"),
              "validation perplexity by context (lower is better)"),
    ),),
)
