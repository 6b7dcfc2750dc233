"""MemXLNet: memory-augmented XLNet for long-document question answering."""

from models.memxlnet.config import TINY_XLNET, MemoryConfig
from models.memxlnet.losses import global_softmax_loss, segment_local_loss
from models.memxlnet.memory_tokens import add_memory_tokens, memory_token_names
from models.memxlnet.modeling import MemXLNetForQA, SegmentOutput
from models.memxlnet.runner import TimeStepMajorRunner, place_steps

__all__ = [
    "TINY_XLNET",
    "MemXLNetForQA",
    "MemoryConfig",
    "SegmentOutput",
    "TimeStepMajorRunner",
    "add_memory_tokens",
    "global_softmax_loss",
    "memory_token_names",
    "place_steps",
    "segment_local_loss",
]
