"""The researcher-facing summary: headline tables and PNG plots from results records.

Headline tables join a pretrain run with the evaluation of its checkpoint (by the pretrain
signature the evaluation read), and list QA variants with EM/F1 broken down by HasAns/NoAns.
"""

from __future__ import annotations

from pathlib import Path

LM_CONTEXTS = ("isolated", "graph", "random")
QA_COLUMNS = ("exact", "f1", "HasAns_exact", "HasAns_f1", "NoAns_exact", "NoAns_f1")


def _label(record: dict, keys: tuple[str, ...] = ()) -> str:
    sweep = record.get("sweep", {})
    cfg_keys = keys or tuple(sorted(sweep))
    parts = [f"{k.rsplit('.', 1)[-1]}={sweep[k]}" for k in cfg_keys if k in sweep]
    return ",".join(parts) or record["signature"]


def _fmt(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else ("" if value is None else str(value))


def _evaluations(records: list[dict], upstream_stage: str) -> dict[str, dict]:
    """evaluate records keyed by the signature of the upstream artifact they scored."""
    return {r["upstream"][upstream_stage]: r for r in records
            if r["stage"] == "evaluate" and upstream_stage in r.get("upstream", {})}


def lm_rows(records: list[dict]) -> list[dict]:
    evals = _evaluations(records, "pretrain")
    rows = []
    for rec in (r for r in records if r["stage"] == "pretrain"):
        ev = evals.get(rec["signature"], {}).get("metrics", {})
        m = rec["metrics"]
        rows.append({
            "run": _label(rec), "signature": rec["signature"],
            "final_train_loss": m.get("final_train_loss"), "val_loss": m.get("val_loss"),
            **{f"ppl_{c}": ev.get(f"ppl_{c}") for c in LM_CONTEXTS},
            "tokens_per_s": m.get("tokens_per_s"),
        })
    return rows


def qa_rows(records: list[dict]) -> list[dict]:
    evals = _evaluations(records, "qa")
    rows = []
    for rec in (r for r in records if r["stage"] == "qa"):
        ev = evals.get(rec["signature"], {}).get("metrics", {})
        rows.append({"run": _label(rec), "signature": rec["signature"], **{c: ev.get(c) for c in QA_COLUMNS}})
    return rows


def _table(rows: list[dict]) -> str:
    header = list(rows[0])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_fmt(row[h]) for h in header) + " |" for row in rows]
    return "\n".join(lines)


def headline_sections(records: list[dict]) -> list[str]:
    sections = []
    lm = lm_rows(records)
    if lm:
        sections.append("## Graph-LM: loss, perplexity by context, throughput\n\n" + _table(lm) + "\n")
    qa = qa_rows(records)
    if qa:
        sections.append("## MemXLNet QA: SQuAD v2 scores\n\n" + _table(qa) + "\n")
    return sections


def plot_all(records: list[dict], out_dir: Path) -> list[Path]:
    """Loss curves per stage, perplexity by context, QA F1 by variant. Returns PNG paths."""
    import matplotlib

    matplotlib.use("Agg")
    paths = []
    for stage in dict.fromkeys(r["stage"] for r in records):
        curves = [r for r in records if r["stage"] == stage and r.get("extra", {}).get("loss_curve")]
        if curves:
            paths.append(_plot_curves(curves, out_dir / f"loss_{stage}.png", f"{stage}: training loss"))
    lm = [r for r in lm_rows(records) if r["ppl_isolated"] is not None]
    if lm:
        paths.append(_plot_bars(lm, [f"ppl_{c}" for c in LM_CONTEXTS], out_dir / "perplexity_by_context.png",
                                "validation perplexity by context (lower is better)"))
    qa = [r for r in qa_rows(records) if r["f1"] is not None]
    if qa:
        paths.append(_plot_bars(qa, ["f1", "HasAns_f1", "NoAns_f1"], out_dir / "qa_f1.png", "SQuAD v2 F1 by variant"))
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
