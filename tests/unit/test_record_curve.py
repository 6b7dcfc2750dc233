"""A run record keeps a bounded copy of a per-step curve; short curves stay exact."""

from stages.core.context import record_curve


def test_short_curves_are_kept_point_for_point():
    curve = [[step, float(step) / 3] for step in range(1000)]
    assert record_curve(curve) == curve


def test_long_curves_become_means_of_consecutive_steps_at_their_first_step():
    curve = [[step, float(step % 7)] for step in range(30_001)]
    kept = record_curve(curve)
    assert len(kept) <= 1000
    width = kept[1][0] - kept[0][0]
    assert [s for s, _ in kept] == list(range(0, 30_001, width))
    assert kept[0][1] == sum(v for _, v in curve[:width]) / width
    last = curve[kept[-1][0]:]
    assert kept[-1][1] == sum(v for _, v in last) / len(last)
    # the curve's mean survives binning up to the shorter last bin
    full = sum(v for _, v in curve[: width * (len(kept) - 1)]) / (width * (len(kept) - 1))
    assert abs(sum(v for _, v in kept[:-1]) / (len(kept) - 1) - full) < 1e-9
