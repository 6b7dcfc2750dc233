"""The `evaluate` stage: perplexity by context for graph-LMs, SQuAD v2 scores for MemXLNet."""
