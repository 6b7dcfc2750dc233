"""Stage spec of `qa` (light: stdlib and the config only)."""

from stages.core.registry import StageSpec
from stages.qa.config import QAConfig

STAGE = StageSpec(
    name="qa",
    config_cls=QAConfig,
    run="stages.qa.train:run",
    upstream=(),
    description="MemXLNet long-document SQuAD v2: progressive-segment phase-2 training, resumable",
    resumable=True,
)
