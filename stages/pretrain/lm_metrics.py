"""Which target tokens a context could supply: the copyable-token mask and planted fact values.

Both work on the token ids of the encoding (before any compact-vocabulary mapping) and return a
boolean mask over a target document's predictions: entry i is the prediction of token i + 1.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np


def _ngrams(tokens: Sequence[int], n: int) -> set[tuple[int, ...]]:
    return {tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)}


def copyable_mask(target: Sequence[int], context: Iterable[Sequence[int]], n: int) -> np.ndarray:
    """Predictions whose n-gram ending at the predicted token occurs in one context document.

    Token j of the target (j >= n - 1) counts when target[j - n + 1 : j + 1] is a contiguous run
    of some context document; the model has seen the first n - 1 of them and can copy the last.
    """
    if n < 1:
        raise ValueError(f"copy_ngram: {n} must be >= 1")
    target = [int(t) for t in target]
    seen: set[tuple[int, ...]] = set()
    for doc in context:
        seen |= _ngrams([int(t) for t in doc], n)
    mask = np.zeros(max(len(target) - 1, 0), dtype=bool)
    for j in range(max(n - 1, 1), len(target)):
        if tuple(target[j - n + 1:j + 1]) in seen:
            mask[j - 1] = True
    return mask


def find_all(haystack: Sequence[int], needle: Sequence[int]) -> list[int]:
    """Start offsets of every occurrence of `needle` in `haystack`."""
    if not needle:
        return []
    hay = np.asarray(haystack, dtype=np.int64)
    k = len(needle)
    if len(hay) < k:
        return []
    windows = np.lib.stride_tricks.sliding_window_view(hay, k)
    return np.flatnonzero((windows == np.asarray(needle, dtype=np.int64)).all(axis=1)).tolist()


def value_mask(target: Sequence[int], values: Iterable[Sequence[int]]) -> np.ndarray:
    """Predictions of the tokens of every occurrence of each value (token sequence) in the target."""
    mask = np.zeros(max(len(target) - 1, 0), dtype=bool)
    for value in values:
        for start in find_all(target, value):
            first = max(start - 1, 0)  # the prediction of token `start` is entry start - 1
            mask[first:start - 1 + len(value)] = True
    return mask
