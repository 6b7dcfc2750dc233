"""Wikipedia stages: `extract` (dump -> Markdown articles), `graph` (link graph) and
`pretokenize` (tiktoken shards), plus the synthetic sample corpus they run on by default."""
