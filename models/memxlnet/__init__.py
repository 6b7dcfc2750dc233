"""MemXLNet: memory-augmented XLNet for long-document question answering."""

from models.memxlnet.config import TINY_XLNET, MemoryConfig
from models.memxlnet.losses import global_softmax_loss, segment_local_loss
from models.memxlnet.modeling import MemXLNetForQA, SegmentOutput
from models.memxlnet.runner import TimeStepMajorRunner
from models.memxlnet.tokens import add_memory_tokens, memory_token_names

__all__ = [
    "TINY_XLNET",
    "MemXLNetForQA",
    "MemoryConfig",
    "SegmentOutput",
    "TimeStepMajorRunner",
    "add_memory_tokens",
    "global_softmax_loss",
    "memory_token_names",
    "segment_local_loss",
]
