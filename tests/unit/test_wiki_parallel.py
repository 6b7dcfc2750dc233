"""bounded_imap / bounded_thread_map: ordered results, and input read only a bounded distance ahead."""

import random
import time

from stages.wiki.parallel import bounded_imap, bounded_thread_map, worker_pool


def square(x):
    return x * x


def test_bounded_imap_keeps_order_and_reads_a_bounded_window():
    consumed = []

    def items():
        for i in range(200):
            consumed.append(i)
            yield i

    pool = worker_pool(2)
    try:
        results = bounded_imap(pool, square, items(), batch=4, ahead=3)
        first = next(results)
        assert first == 0 and len(consumed) <= 3 * 4 + 4  # not the whole input
        assert [first, *results] == [i * i for i in range(200)]
    finally:
        pool.terminate()
    assert list(bounded_imap(None, square, range(5))) == [0, 1, 4, 9, 16]


def test_bounded_thread_map_keeps_order_and_reads_a_bounded_window():
    consumed = []
    rng = random.Random(0)
    delays = [rng.random() / 500 for _ in range(100)]  # finish out of order

    def items():
        for i in range(100):
            consumed.append(i)
            yield i

    def slow_square(i):
        time.sleep(delays[i])
        return i * i

    results = bounded_thread_map(slow_square, items(), workers=2, ahead=3)
    first = next(results)
    assert first == 0 and len(consumed) <= 3
    assert [first, *results] == [i * i for i in range(100)]
    assert list(bounded_thread_map(square, range(5), workers=1)) == [0, 1, 4, 9, 16]
