"""Seed aggregation (jobs.seeds): mean ± 95% t-interval over seeds and paired differences,
checked on hand-made records against values computed by hand."""

import math

import pytest

from jobs import seeds


def _record(strategy: str, seed: int, **metrics) -> dict:
    return {"stage": "toy", "signature": f"{strategy}{seed}", "metrics": metrics,
            "sweep": {"pretrain.packing.strategy": strategy, "seed": str(seed)}}


RECORDS = [
    _record("a", 0, loss=1.0, gain=-0.5), _record("a", 1, loss=2.0, gain=-0.7), _record("a", 2, loss=3.0, gain=-0.6),
    _record("b", 0, loss=1.5, gain=0.0), _record("b", 1, loss=2.0, gain=0.1), _record("b", 2, loss=4.0, gain=-0.1),
]


def test_mean_ci_matches_hand_computation():
    est = seeds.mean_ci([1.0, 2.0, 3.0])
    # sd = 1, n = 3, t(0.975, 2) = 4.303
    assert est.mean == pytest.approx(2.0)
    assert est.half_width == pytest.approx(4.303 / math.sqrt(3), rel=1e-4)
    assert est.n == 3 and not est.excludes_zero  # 2 - 2.48 < 0


def test_t_quantile_table_and_expansion():
    assert seeds.t_quantile_975(1) == pytest.approx(12.706)
    assert seeds.t_quantile_975(30) == pytest.approx(2.042)
    assert seeds.t_quantile_975(60) == pytest.approx(2.000, abs=2e-3)  # table value 2.000
    assert seeds.t_quantile_975(120) == pytest.approx(1.980, abs=2e-3)


def test_single_seed_has_no_interval():
    est = seeds.mean_ci([0.7])
    assert est.n == 1 and math.isnan(est.half_width) and not est.excludes_zero


def test_records_that_differ_only_in_seed_are_one_variant():
    agg = seeds.aggregate(RECORDS, ["loss", "gain"])
    assert len(agg) == 2
    a = agg[(("pretrain.packing.strategy", "a"),)]
    assert a["loss"].mean == pytest.approx(2.0) and a["loss"].n == 3
    assert a["gain"].mean == pytest.approx(-0.6)
    assert a["gain"].half_width == pytest.approx(4.303 * 0.1 / math.sqrt(3), rel=1e-3)


def test_paired_difference_is_taken_seed_by_seed():
    a, b = (("pretrain.packing.strategy", "a"),), (("pretrain.packing.strategy", "b"),)
    diff = seeds.paired_difference(RECORDS, "gain", a, b)
    # per seed: -0.5, -0.8, -0.5 -> mean -0.6, sd 0.1732
    assert diff.mean == pytest.approx(-0.6)
    assert diff.half_width == pytest.approx(4.303 * math.sqrt(0.03) / math.sqrt(3), rel=1e-3)
    assert diff.excludes_zero
    # unpaired, the spread of `loss` across seeds hides the same kind of shift; paired it is small
    loss = seeds.paired_difference(RECORDS, "loss", a, b)
    assert loss.mean == pytest.approx((-0.5 + 0.0 - 1.0) / 3)


def test_paired_difference_uses_only_shared_seeds():
    extra = [*RECORDS, _record("a", 7, loss=100.0, gain=5.0)]
    a, b = (("pretrain.packing.strategy", "a"),), (("pretrain.packing.strategy", "b"),)
    assert seeds.paired_difference(extra, "gain", a, b).n == 3


def test_paired_table_lists_each_pair_once():
    header, rows = seeds.paired_table(RECORDS, ["gain"])
    assert header == ["a", "b", "gain (a - b)"]
    assert len(rows) == 1 and rows[0][:2] == ["packing.strategy=a", "packing.strategy=b"] and rows[0][2].endswith("*")
