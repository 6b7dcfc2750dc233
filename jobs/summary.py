"""The researcher-facing summary: headline tables and PNG plots from results records.

The stages declare the headline tables (`StageSpec.headlines`): e.g. pretrain's joins each run
with the evaluation of its checkpoint (by the pretrain signature the evaluation read), qa's lists
the QA variants with EM/F1 broken down by HasAns/NoAns. Nothing here names a stage.
"""

from __future__ import annotations

from pathlib import Path

from jobs.results import markdown_table
from stages.core import registry
from stages.core.registry import Headline


def _label(record: dict, keys: tuple[str, ...] = ()) -> str:
    sweep = record.get("sweep", {})
    cfg_keys = keys or tuple(sorted(sweep))
    parts = [f"{k.rsplit('.', 1)[-1]}={sweep[k]}" for k in cfg_keys if k in sweep]
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


def _headlines(records: list[dict]):
    """(headline, rows) for every headline a registered stage declares and the records fill."""
    for stage, spec in registry.all_stages().items():
        for headline in spec.headlines:
            rows = headline_rows(records, stage, headline)
            if rows:
                yield headline, rows


def _table(rows: list[dict]) -> str:
    header = list(rows[0])
    return markdown_table(header, [[row[h] for h in header] for row in rows])


def headline_sections(records: list[dict]) -> list[str]:
    return [f"## {headline.title}\n\n" + _table(rows) + "\n" for headline, rows in _headlines(records)]


def plot_all(records: list[dict], out_dir: Path) -> list[Path]:
    """Loss curves per stage, and the bar chart each headline declares. Returns PNG paths."""
    import matplotlib

    matplotlib.use("Agg")
    paths = []
    for stage in dict.fromkeys(r["stage"] for r in records):
        curves = [r for r in records if r["stage"] == stage and r.get("extra", {}).get("loss_curve")]
        if curves:
            paths.append(_plot_curves(curves, out_dir / f"loss_{stage}.png", f"{stage}: training loss"))
    for headline, rows in _headlines(records):
        if headline.plot is None:
            continue
        stem, columns, title = headline.plot
        rows = [r for r in rows if r[columns[0]] is not None]
        if rows:
            paths.append(_plot_bars(rows, list(columns), out_dir / f"{stem}.png", title))
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


def _plot_bars(rows: list[dict], columns: list[str], path: Path, title: str) -> Path:
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(max(6, len(rows) * 1.2), 4))
    width = 0.8 / len(columns)
    x = np.arange(len(rows))
    for i, col in enumerate(columns):
        ax.bar(x + i * width, [row[col] or 0.0 for row in rows], width, label=col)
    ax.set_xticks(x + width * (len(columns) - 1) / 2, [row["run"] for row in rows], rotation=30, ha="right", fontsize=7)
    ax.set_title(title)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
