"""Graph-traversal packing: which documents share a context window, and how.

Modules: `config` (PackingConfig), `strategies` (the traversal registry), `sampler`
(PackSampler), `collate` (collate_packs), `loader` (PackLoader), `inspect`, `stats`. The graph
and token artifacts they read are opened through `stages.formats`.
"""
