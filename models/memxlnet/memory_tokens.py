"""Memory tokens in the tokenizer."""

from __future__ import annotations


def memory_token_names(n: int) -> tuple[list[str], list[str]]:
    """The read and write token strings for N memory tokens."""
    return [f"[MEM_READ_{i}]" for i in range(n)], [f"[MEM_WRITE_{i}]" for i in range(n)]


def add_memory_tokens(tokenizer, n: int) -> tuple[list[int], list[int]]:
    """Add ``[MEM_READ_i]``/``[MEM_WRITE_i]`` (i < n) as special tokens; return their ids.

    Idempotent: tokens already present keep their ids, so a tokenizer saved with a checkpoint
    loads back with the same ids.
    """
    reads, writes = memory_token_names(n)
    tokenizer.add_tokens(reads + writes, special_tokens=True)
    read_ids = tokenizer.convert_tokens_to_ids(reads)
    write_ids = tokenizer.convert_tokens_to_ids(writes)
    if tokenizer.unk_token_id in read_ids + write_ids:
        raise ValueError("tokenizer: memory tokens map to <unk>; the tokenizer refused the added tokens")
    return read_ids, write_ids
