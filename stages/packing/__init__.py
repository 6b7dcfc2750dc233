"""Graph-traversal packing: which documents share a context window, and how.

Public API: `GraphIndex`, `TokenStore`, `PackingConfig`, the strategy registry,
`PackSampler`, `collate_packs` and `PackLoader` (see each module).
"""

from stages.packing.config import PackingConfig
from stages.packing.graph_index import GraphIndex
from stages.packing.token_store import TokenStore

__all__ = ["GraphIndex", "PackingConfig", "TokenStore"]
