"""The reporting registry: what the results summary shows about a stage's runs.

Reporting is not part of what a stage is, so it has its own registry: a stage's spec module
contributes `REPORTS` (one `Report` per stage it reports on), and a study file contributes its
own (`report:` in `studies/<name>.yaml`) when it is collected. Reports of one stage merge: their
headline tables add up, their metric lists join in order.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable


@dataclasses.dataclass(frozen=True)
class Headline:
    """A headline table of the results summary, whose rows are one stage's runs.

    `columns` are metric names: `name` is read from the run's own record, `stage:name` from the
    newest record of that downstream stage which read this run (e.g. `evaluate:ppl_graph`, the
    evaluation of a pretrain checkpoint); the table shows the bare name. `plot`, if given, is a
    bar chart `(file stem, columns, title)` over the rows that have its first column.
    """

    title: str
    columns: tuple[str, ...]
    plot: tuple[str, tuple[str, ...], str] | None = None


@dataclasses.dataclass(frozen=True)
class Report:
    """What the summary shows about the runs of `stage`.

    - `headlines`: tables whose rows are the stage's runs (see `Headline`);
    - `seed_metrics`: shown as mean ± 95% CI over seeds per variant (a record's missing ones are
      left out, e.g. QA metrics of an LM evaluation); see `jobs/seeds.py`;
    - `paired_metrics`: their differences between variants, paired by seed.
    """

    stage: str
    headlines: tuple[Headline, ...] = ()
    seed_metrics: tuple[str, ...] = ()
    paired_metrics: tuple[str, ...] = ()

    def merged(self, other: Report) -> Report:
        return Report(self.stage, self.headlines + other.headlines,
                      tuple(dict.fromkeys(self.seed_metrics + other.seed_metrics)),
                      tuple(dict.fromkeys(self.paired_metrics + other.paired_metrics)))


_REPORTS: list[Report] = []


def register(report: Report) -> Report:
    """Add a stage's report (the stage registry calls this for a spec module's `REPORTS`)."""
    if report not in _REPORTS:
        _REPORTS.append(report)
    return report


def by_stage(extra: Iterable[Report] = ()) -> dict[str, Report]:
    """Every registered report, plus `extra` (a study's), merged per stage in pipeline order."""
    from stages.core.registry import all_stages

    order = list(all_stages())  # loads the spec modules, and with them their reports
    merged: dict[str, Report] = {}
    for report in [*_REPORTS, *extra]:
        merged[report.stage] = merged[report.stage].merged(report) if report.stage in merged else report
    return dict(sorted(merged.items(), key=lambda kv: order.index(kv[0]) if kv[0] in order else len(order)))
