"""Worker process pools for the Wikipedia stages."""

from __future__ import annotations

import gc
import multiprocessing
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
