"""The researcher-facing summary: headline tables and PNG plots from results records.

The reporting registry (`stages.core.reports`: the stages' reports, plus a collected study's)
declares the headline tables: e.g. pretrain's joins each run with the evaluation of its checkpoint
(by the pretrain signature the evaluation read), qa's lists the QA variants with EM/F1 broken down
by HasAns/NoAns. Nothing here names a stage.

Seeds: runs whose sweep values differ only in a seed key are one variant (`jobs/seeds.py`). Each
stage whose report lists `seed_metrics` gets a table of their mean ± 95% CI over seeds per variant, and of
the paired differences between variants by seed (`paired_metrics`). Headline bar charts plot the
mean over seeds with 95% CI whiskers.
"""

from __future__ import annotations

from pathlib import Path

from jobs import seeds
from jobs.results import markdown_table
from stages.core import reports
from stages.core.reports import Headline, Report


def _label(record: dict, keys: tuple[str, ...] = ()) -> str:
    sweep = record.get("sweep", {})
    cfg_keys = keys or tuple(sorted(sweep))
    parts = [f"{seeds.short_key(k)}={sweep[k]}" for k in cfg_keys if k in sweep]
    return ",".join(parts) or record["signature"]


def _readers(records: list[dict], downstream: str, upstream_stage: str) -> dict[str, dict]:
    """Records of stage `downstream` keyed by the signature of the `upstream_stage` artifact they
    read (the newest wins: records come oldest first)."""
    return {r["upstream"][upstream_stage]: r for r in records
            if r["stage"] == downstream and upstream_stage in r.get("upstream", {})}


def headline_rows(records: list[dict], stage: str, headline: Headline) -> list[dict]:
    """One row per run of `stage`: its label, signature and the headline's columns."""
    readers = {source: _readers(records, source, stage)
               for source in {c.split(":", 1)[0] for c in headline.columns if ":" in c}}
    rows = []
    for rec in (r for r in records if r["stage"] == stage):
        row = {"run": _label(rec), "signature": rec["signature"]}
        for column in headline.columns:
            source, _, metric = column.rpartition(":")
            metrics = readers[source].get(rec["signature"], {}).get("metrics", {}) if source else rec["metrics"]
            row[metric] = metrics.get(metric)
        rows.append(row)
    return rows


def _headlines(records: list[dict], extra: tuple[Report, ...]):
    """(headline, rows) for every headline of the reporting registry (and `extra`) the records fill."""
    for stage, report in reports.by_stage(extra).items():
        for headline in report.headlines:
            rows = headline_rows(records, stage, headline)
            if rows:
                yield headline, rows


def _table(rows: list[dict]) -> str:
    header = list(rows[0])
    return markdown_table(header, [[row[h] for h in header] for row in rows])


def headline_sections(records: list[dict], extra: tuple[Report, ...] = ()) -> list[str]:
    """The headline tables, then the seed tables; `extra` adds a study's reports to the registry's."""
    sections = [f"## {headline.title}\n\n" + _table(rows) + "\n" for headline, rows in _headlines(records, extra)]
    return sections + seed_sections(records, extra)


def seed_sections(records: list[dict], extra: tuple[Report, ...] = ()) -> list[str]:
    """Per stage (and input) with `seed_metrics` and several seeds of a variant: mean ± 95% CI
    over seeds per variant, then the paired differences between variants by seed."""
    from jobs.results import _by_input

    sections = []
    for stage, report in reports.by_stage(extra).items():
        if not report.seed_metrics:
            continue
        for source, group in _by_input(records, stage).items():
            by_variant = seeds.group_by_variant(group)
            if not by_variant or max(len(s) for s in by_variant.values()) < 2:
                continue  # one seed per variant: nothing to aggregate
            present = [m for m in report.seed_metrics if any(seeds.numeric(r["metrics"].get(m)) for r in group)]
            aggregated = seeds.aggregate(group, present)
            header = ["variant", "seeds", *present]
            rows = [[seeds.variant_label(v), len(by_variant[v]), *(str(est[m]) for m in present)]
                    for v, est in aggregated.items()]
            title = f"{stage} (of {source})" if source else stage
            text = (f"## {title}: mean ± 95% CI over seeds\n\n"
                    "t-interval over seeds; `*` marks an interval that excludes 0.\n\n"
                    + markdown_table(header, rows) + "\n")
            paired = [m for m in report.paired_metrics if m in present]
            if paired and len(aggregated) > 1:
                text += (f"\n### {title}: paired differences by seed (a - b; same seeds, same scored documents)\n\n"
                         + markdown_table(*seeds.paired_table(group, paired)) + "\n")
            sections.append(text)
    return sections


def plot_all(records: list[dict], out_dir: Path, extra: tuple[Report, ...] = ()) -> list[Path]:
    """Loss curves per stage, and the bar chart each headline declares. Returns PNG paths."""
    import matplotlib

    matplotlib.use("Agg")
    paths = []
    for stage in dict.fromkeys(r["stage"] for r in records):
        curves = [r for r in records if r["stage"] == stage and r.get("extra", {}).get("loss_curve")]
        if curves:
            paths.append(_plot_curves(curves, out_dir / f"loss_{stage}.png", f"{stage}: training loss"))

    for stage, report in reports.by_stage(extra).items():
        for headline in report.headlines:
            if headline.plot is None:
                continue
            stem, columns, title = headline.plot
            runs = [r for r in records if r["stage"] == stage]
            # the headline's row of each run, as a record that seeds.aggregate can group by variant
            rows = [{"sweep": rec.get("sweep", {}), "signature": rec["signature"], "metrics": row}
                    for rec, row in zip(runs, headline_rows(records, stage, headline))]
            aggregated = [(seeds.variant_label(v), est) for v, est in seeds.aggregate(rows, list(columns)).items()
                          if est[columns[0]].n]
            if aggregated:
                paths.append(_plot_bars(aggregated, list(columns), out_dir / f"{stem}.png", title))
    return paths


def _plot_curves(records: list[dict], path: Path, title: str) -> Path:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for rec in records:
        steps, losses = zip(*rec["extra"]["loss_curve"])
        ax.plot(steps, losses, label=_label(rec))
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _plot_bars(rows: list[tuple[str, dict]], columns: list[str], path: Path, title: str) -> Path:
    """Grouped bars: one group per variant, one bar per column (mean over seeds), 95% CI whiskers."""
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(max(6, len(rows) * 1.3), 4))
    width = 0.8 / len(columns)
    x = np.arange(len(rows))
    for i, col in enumerate(columns):
        means = [est[col].mean if est[col].n else 0.0 for _, est in rows]
        errors = [est[col].half_width if est[col].n >= 2 else 0.0 for _, est in rows]
        ax.bar(x + i * width, means, width, yerr=errors, capsize=3, label=col)
    counts = "/".join(str(n) for n in sorted({est[columns[0]].n for _, est in rows}))
    ax.set_xticks(x + width * (len(columns) - 1) / 2, [label for label, _ in rows], rotation=30, ha="right", fontsize=7)
    ax.set_title(f"{title}\nmean over {counts} seed(s); whiskers: 95% CI over seeds", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
