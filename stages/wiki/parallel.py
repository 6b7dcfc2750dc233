"""Worker process pools for the Wikipedia stages."""

from __future__ import annotations

import collections
import gc
import itertools
import multiprocessing
import time
from collections.abc import Callable, Iterable, Iterator
from multiprocessing.pool import Pool


def worker_pool(workers: int) -> Pool | None:
    """A process pool of `workers` (None for 1: run inline). Forks where the OS can, with the
    parent's objects frozen out of the garbage collector while forking, so children do not
    touch (and copy) the parent's pages when they collect."""
    if workers <= 1:
        return None
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
    gc.freeze()
    try:
        return context.Pool(workers)
    finally:
        gc.unfreeze()


def _apply_all(func: Callable, items: list) -> list:
    return [func(item) for item in items]


def bounded_imap(pool: Pool | None, func: Callable, items: Iterable, batch: int = 4,
                 ahead: int = 8) -> Iterator:
    """Ordered `map(func, items)` on the pool that reads `items` at most `ahead` batches in
    front of the results. (`Pool.imap` drains its input as fast as it can, so a whole dump
    would pile up in the parent's memory.) Without a pool it is plain `map`."""
    if pool is None:
        yield from map(func, items)
        return
    iterator = iter(items)
    pending: collections.deque = collections.deque()
    while True:
        chunk = list(itertools.islice(iterator, batch))
        if chunk:
            pending.append(pool.apply_async(_apply_all, (func, chunk)))
        if pending and (len(pending) >= ahead or not chunk):
            yield from pending.popleft().get()
        elif not chunk:
            return


def bounded_thread_map(func: Callable, items: Iterable, workers: int, ahead: int = 8) -> Iterator:
    """Ordered `map(func, items)` on `workers` threads, reading at most `ahead` items in front
    of the results. For work that releases the GIL (tiktoken's encoder): no process start-up
    and nothing pickled, which matters when the whole input takes a fraction of a second."""
    if workers <= 1:
        yield from map(func, items)
        return
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(workers) as executor:
        pending: collections.deque = collections.deque()
        for item in items:
            pending.append(executor.submit(func, item))
            if len(pending) >= ahead:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def wait_for_markers(ctx, keys: list[str], poll_s: float = 0.25) -> None:
    """Wait until every shard marker in `keys` exists (a file barrier between ranks on shared
    storage: the ranks of a multi-node stage share its partial directory)."""
    pending = [key for key in keys if not ctx.shard_done(key)]
    while pending:
        time.sleep(poll_s)
        pending = [key for key in pending if not ctx.shard_done(key)]
