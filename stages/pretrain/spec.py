"""Stage spec of `pretrain` (light: stdlib and the config only)."""

from stages.core.registry import StageSpec
from stages.core.reports import Headline, Report
from stages.pretrain.config import PretrainConfig

STAGE = StageSpec(
    name="pretrain",
    config_cls=PretrainConfig,
    run="stages.pretrain.train:run",
    upstream=("pretokenize", "graph"),
    description="graph-LM pretraining on graph-packed token shards (causal/doc/graph masks), resumable",
    resumable=True,
    # The demo's comparison: every traversal strategy x the document-aware masks (`causal` is
    # left out to fit the 10-minute budget; `pretrain.model.mask=causal,doc,graph` adds it).
    grid={"packing.strategy": "random,random_walk,bfs,dfs", "model.mask": "doc,graph"},
)
REPORTS = (Report(
    "pretrain",
    headlines=(Headline(
        "Graph-LM: loss, perplexity by context, throughput",
        ("final_train_loss", "val_loss", "evaluate:ppl_isolated", "evaluate:ppl_graph", "evaluate:ppl_random",
         "tokens_per_s"),
        plot=("perplexity_by_context", ("ppl_isolated", "ppl_graph", "ppl_random"),
              "perplexity by context (lower is better)"),
    ), Headline(
        "Graph-LM: tokens the context could supply (NLL by context; d_ = graph - isolated)",
        ("evaluate:eval_corpus", "evaluate:nll_copy_isolated", "evaluate:nll_copy_graph", "evaluate:nll_copy_random",
         "evaluate:d_copy_graph_isolated", "evaluate:nll_fact_isolated", "evaluate:nll_fact_graph",
         "evaluate:d_fact_graph_isolated", "evaluate:d_repeat"),
        plot=("copy_nll_by_context", ("nll_copy_isolated", "nll_copy_graph", "nll_copy_random"),
              "copyable-token NLL by context (lower is better)"),
    ), Headline(
        "Graph-LM: linked-fact values (generated corpus)",
        ("evaluate:nll_fact_isolated", "evaluate:nll_fact_graph", "evaluate:nll_fact_random",
         "evaluate:tokens_fact_scored"),
        plot=("fact_nll_by_context", ("nll_fact_isolated", "nll_fact_graph", "nll_fact_random"),
              "linked-fact value NLL by context (lower is better)"),
    ),),
),)

