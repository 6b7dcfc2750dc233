"""Results records (one JSON file per run) and the collected table and plots.

Every run writes its own uniquely named file, so concurrent writers (array tasks on many
nodes) never clobber each other; `collect` reads them all and keeps the newest record per
(stage, signature).
"""

from __future__ import annotations

import csv
import datetime
import json
import socket
import uuid
from pathlib import Path
from typing import Any

from stages.core import config as config_lib
from stages.core import registry
from stages.core.artifacts import write_json_atomic

RECORDS = "records"


def write_record(results_dir: Path, *, stage: str, signature: str, sweep: dict, metrics: dict,
                 artifact: Path | None, logs: str, run_id: str, upstream: dict, extra: dict) -> Path:
    """Write one run's record atomically under `results_dir/records/`."""
    now = datetime.datetime.now(datetime.timezone.utc)
    record = {
        "stage": stage, "signature": signature, "sweep": sweep, "metrics": metrics,
        "artifact": str(artifact) if artifact else None, "logs": logs, "run_id": run_id,
        "upstream": upstream, "time": now.isoformat(timespec="seconds"), "host": socket.gethostname(),
        "extra": extra,
    }
    directory = Path(results_dir) / RECORDS
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{stage}-{signature}-{now:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}.json"
    write_json_atomic(path, record)
    return path


def has_record(results_dir: Path, stage: str, signature: str) -> bool:
    """Whether `results_dir` holds a record of the artifact `stage/signature`."""
    return any((Path(results_dir) / RECORDS).glob(f"{stage}-{signature}-*.json"))


def current_key(key: str) -> str:
    """A recorded sweep key (`stage.key`) under its current name: keys that moved into a
    component since the record was written (`qa.memory_num_tokens`) read as `qa.memory.num_tokens`."""
    stage, dot, rest = key.partition(".")
    stages = registry.all_stages()
    if not dot or stage not in stages:
        return key
    return f"{stage}.{config_lib.renamed(stages[stage].config_cls).get(rest, rest)}"


def load_records(results_dir: Path) -> list[dict]:
    """Newest record per (stage, signature), oldest first; sweep keys under their current names."""
    latest: dict[tuple[str, str], dict] = {}
    for path in sorted((Path(results_dir) / RECORDS).glob("*.json")):
        record = json.loads(path.read_text())
        record["sweep"] = {current_key(k): v for k, v in (record.get("sweep") or {}).items()}
        key = (record["stage"], record["signature"])
        if key not in latest or record["time"] >= latest[key]["time"]:
            latest[key] = record
    return sorted(latest.values(), key=lambda r: r["time"])


def _scalar(value: Any) -> bool:
    return isinstance(value, (int, float, str, bool)) or value is None


def stage_table(records: list[dict], stage: str) -> tuple[list[str], list[list[Any]]]:
    """Columns and rows for one stage: signature, sweep values, scalar metrics."""
    rows = [r for r in records if r["stage"] == stage]
    sweep_cols = sorted({k for r in rows for k in r["sweep"]})
    metric_cols = sorted({k for r in rows for k, v in r["metrics"].items() if _scalar(v)})
    header = ["signature", *sweep_cols, *metric_cols]
    body = [[r["signature"], *(r["sweep"].get(k, "") for k in sweep_cols),
             *(r["metrics"].get(k, "") for k in metric_cols)] for r in rows]
    return header, body


def _by_input(records: list[dict], stage: str) -> dict[str, list[dict]]:
    """A stage's records grouped by their nearest upstream stage (pipeline order), so that e.g.
    `evaluate` of LM checkpoints and of QA checkpoints get a table each, not one with the
    columns of both. The CSV keeps them together."""
    from stages.core import registry

    order = {name: i for i, name in enumerate(registry.all_stages())}
    groups: dict[str, list[dict]] = {}
    for record in records:
        if record["stage"] != stage:
            continue
        upstream = sorted(record.get("upstream") or {}, key=lambda name: order.get(name, -1))
        groups.setdefault(upstream[-1] if upstream else "", []).append(record)
    return groups


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)


def markdown_table(header: list[str], rows: list[list[Any]]) -> str:
    """The one Markdown table writer: floats to 4 significant digits, None as an empty cell."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def collect(results_dir: Path, study: str = "") -> str:
    """Aggregate all records into `summary.md`, one CSV per stage, and PNG plots; with `study`,
    the summary opens with the study's pre-registered criterion and its verdict (`jobs.studies`).

    Returns the Markdown summary (what the CLI prints).
    """
    from jobs import studies, summary  # plots and the researcher-facing summary tables

    results_dir = Path(results_dir)
    records = load_records(results_dir)
    if not records:
        raise FileNotFoundError(f"no results records under {results_dir / RECORDS}; run a stage first")
    declared = studies.load(study) if study else None
    extra = declared.reports if declared else ()
    sections = summary.headline_sections(records, extra)
    for stage in dict.fromkeys(r["stage"] for r in records):
        header, rows = stage_table(records, stage)
        with open(results_dir / f"{stage}.csv", "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(header)
            writer.writerows(rows)
        groups = _by_input(records, stage)
        if len(groups) == 1:
            sections.append(f"## {stage}\n\n{markdown_table(header, rows)}\n")
            continue
        for title, group in groups.items():
            sections.append(f"## {stage} (of {title})\n\n{markdown_table(*stage_table(group, stage))}\n")
    plots = summary.plot_all(records, results_dir, extra)
    if plots:
        sections.append("## Plots\n\n" + "\n".join(f"![{p.stem}]({p.name})" for p in plots) + "\n")
    if declared:
        sections.insert(0, studies.verdict(declared, records))
    text = "# WikiGraph results\n\n" + "\n".join(sections)
    (results_dir / "summary.md").write_text(text)
    return text
