"""Aggregation over seeds: mean ± 95% confidence interval, and paired differences by seed.

Generic over stages: records of one stage whose sweep values differ only in seed keys (`seed` or
`<stage>.seed`) are one variant; each numeric metric gets its mean over seeds and the half-width
of the 95% t-interval, mean ± t(0.975, n-1) * sd / sqrt(n). A paired difference of two variants
is taken seed by seed (only seeds both have) and gets the same interval; a difference whose
interval excludes 0 is marked.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from stages.core.registry import all_stages

#: Two-sided 95% quantiles t(0.975, df) of Student's t for df = 1..30; beyond, a Cornish-Fisher
#: expansion around the normal quantile (error < 1e-3 there).
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145,
         2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048,
         2.045, 2.042)
_Z975 = 1.959964


def t_quantile_975(df: int) -> float:
    """t(0.975, df): the multiplier of the standard error for a two-sided 95% interval."""
    if df < 1:
        raise ValueError(f"degrees of freedom must be >= 1, got {df}")
    if df <= len(_T975):
        return _T975[df - 1]
    z = _Z975
    return z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)


@dataclasses.dataclass(frozen=True)
class Estimate:
    """Mean over seeds with the half-width of its 95% CI (nan with fewer than 2 seeds)."""

    mean: float
    half_width: float
    n: int

    @property
    def excludes_zero(self) -> bool:
        return self.n >= 2 and abs(self.mean) > self.half_width

    def __str__(self) -> str:
        if self.n < 2:
            return f"{self.mean:.4g} (n={self.n})"
        star = " *" if self.excludes_zero else ""
        return f"{self.mean:.4g} ± {self.half_width:.2g}{star}"


def mean_ci(values: list[float]) -> Estimate:
    """Mean and 95% t-interval half-width of `values` (independent seeds)."""
    n = len(values)
    if n == 0:
        return Estimate(float("nan"), float("nan"), 0)
    mean = sum(values) / n
    if n < 2:
        return Estimate(mean, float("nan"), n)
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    return Estimate(mean, t_quantile_975(n - 1) * sd / math.sqrt(n), n)


def is_seed_key(key: str) -> bool:
    return key == "seed" or key.endswith(".seed")


def variant_of(record: dict) -> tuple:
    """The record's sweep values without its seed keys (hashable, sorted)."""
    return tuple(sorted((k, str(v)) for k, v in record.get("sweep", {}).items() if not is_seed_key(k)))


def seed_of(record: dict) -> str:
    """The record's seed value(s) as a key: records of two variants with equal keys are paired."""
    seeds = sorted((k, str(v)) for k, v in record.get("sweep", {}).items() if is_seed_key(k))
    return ",".join(v for _, v in seeds) or record.get("signature", "")


def short_key(key: str) -> str:
    """A sweep key without its stage: `qa.memory.num_tokens` -> `memory.num_tokens`."""
    stage, dot, rest = key.partition(".")
    return rest if dot and stage in all_stages() else key


def variant_label(variant: tuple) -> str:
    return ",".join(f"{short_key(k)}={v}" for k, v in variant) or "(default)"


def numeric(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def group_by_variant(records: list[dict]) -> dict[tuple, dict[str, dict]]:
    """variant -> {seed key -> metrics} for one stage's records (the newest per seed wins, as
    records come oldest first)."""
    groups: dict[tuple, dict[str, dict]] = {}
    for record in records:
        groups.setdefault(variant_of(record), {})[seed_of(record)] = record.get("metrics", {})
    return groups


def aggregate(records: list[dict], metrics: list[str] | None = None) -> dict[tuple, dict[str, Estimate]]:
    """variant -> metric -> Estimate over its seeds; `metrics` None means every numeric metric."""
    out: dict[tuple, dict[str, Estimate]] = {}
    for variant, by_seed in group_by_variant(records).items():
        names = metrics or sorted({k for m in by_seed.values() for k, v in m.items() if numeric(v)})
        out[variant] = {name: mean_ci([m[name] for m in by_seed.values() if numeric(m.get(name))])
                        for name in names}
    return out


def paired_difference(records: list[dict], metric: str, a: tuple, b: tuple) -> Estimate:
    """metric(a) - metric(b), seed by seed, over the seeds both variants have."""
    groups = group_by_variant(records)
    left, right = groups.get(a, {}), groups.get(b, {})
    diffs = [left[s][metric] - right[s][metric] for s in left
             if s in right and numeric(left[s].get(metric)) and numeric(right[s].get(metric))]
    return mean_ci(diffs)


def paired_table(records: list[dict], metrics: list[str]) -> tuple[list[str], list[list[str]]]:
    """Every pair of variants (each order once) x `metrics`: the paired difference with its CI."""
    variants = [v for v, seeds in group_by_variant(records).items() if len(seeds) >= 2]
    header = ["a", "b", *[f"{m} (a - b)" for m in metrics]]
    rows = []
    for i, a in enumerate(variants):
        for b in variants[i + 1:]:
            rows.append([variant_label(a), variant_label(b),
                         *[str(paired_difference(records, m, a, b)) for m in metrics]])
    return header, rows
