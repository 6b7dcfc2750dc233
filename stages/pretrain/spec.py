"""Stage spec of `pretrain` (light: stdlib and the config only)."""

from stages.core.registry import StageSpec
from stages.pretrain.config import PretrainConfig

STAGE = StageSpec(
    name="pretrain",
    config_cls=PretrainConfig,
    run="stages.pretrain.train:run",
    upstream=("pretokenize", "graph"),
    description="graph-LM pretraining on graph-packed token shards (causal/doc/graph masks), resumable",
    resumable=True,
)
