"""Artifact formats: one module per format, owning its file names, writer and reader.

- `articles`: the `extract` artifact (zstd JSONL article shards, titles, redirects);
- `graph`: the `graph` artifact (title list, CSR out/in adjacency, `graph.jsonl`);
- `tokens`: the `pretokenize` artifact (memory-mapped token shards, document index, tokenizer metadata);
- `facts`: the planted facts a generated sample's `extract` artifact records (`facts.jsonl`).

Stages, generators and tests read and write these artifacts only through these modules, so a
format change is made (and versioned) in one place.
"""
