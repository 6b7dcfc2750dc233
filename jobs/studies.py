"""Studies as files: `studies/<name>.yaml` holds what `study=<name>` runs and how it is judged.

A study file has:

- `question` and `description`: what it answers, in words;
- `stages`: per-stage overrides, `{stage: {key: value}}`; a comma list sweeps the key (every
  stage's sweep is one job array, their product the grid), as on the command line;
- `seeds`: `{stage: [seeds]}`, swept like any key (`<stage>.seed`);
- `criterion`: declared before the study runs; the study passes when every entry holds. An entry
  names a `stage`, a `metric`, a `variant` (`{key: value}` of the sweep, the key matching the end of a record's
  sweep key), optionally `minus` (a second variant: the difference is
  paired by seed), and `expect`: `negative` or `positive`, i.e. the 95% CI over seeds lies entirely
  below or above 0;
- `report` (optional): `{stage: {seed_metrics: [...], paired_metrics: [...]}}`, what `collect
  study=<name>` shows besides the stages' own reports (`stages.core.reports`);
- `cost`: what it cost when it ran, in words; `results`: where its committed output is.

`collect study=<name>` judges a results directory against the criterion (`verdict`).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import yaml

from jobs.seeds import Estimate, aggregate, group_by_variant, paired_difference
from stages.core.config import ConfigError, did_you_mean
from stages.core.reports import Report

STUDIES_DIR = Path(__file__).resolve().parents[1] / "studies"
EXPECTATIONS = ("negative", "positive")
_KEYS = {"question", "description", "stages", "seeds", "criterion", "report", "cost", "results", "notes"}
_REPORT_KEYS = {"seed_metrics", "paired_metrics"}
_CRITERION_KEYS = {"name", "stage", "metric", "variant", "minus", "expect"}


@dataclasses.dataclass(frozen=True)
class Criterion:
    """One pre-registered test: `metric` of `variant` (minus `minus`, paired by seed) has a 95% CI
    entirely below 0 (`negative`) or above 0 (`positive`)."""

    name: str
    stage: str
    metric: str
    variant: dict
    expect: str
    minus: dict | None = None

    def describe(self) -> str:
        what = _label(self.variant) + (f" - {_label(self.minus)}" if self.minus else "")
        return f"{self.stage} {self.metric}, {what}: 95% CI {'below' if self.expect == 'negative' else 'above'} 0"


@dataclasses.dataclass(frozen=True)
class Study:
    name: str
    question: str
    stages: dict
    criterion: tuple[Criterion, ...]
    reports: tuple[Report, ...] = ()
    cost: str = ""
    results: str = ""

    def keys(self, stage: str) -> dict[str, str]:
        """One stage's overrides as command-line text: {key: value or comma list}."""
        return {key: _text(value) for key, value in self.stages.get(stage, {}).items()}

    def grid(self) -> dict[str, str]:
        """The overrides `study=<name>` applies: {"stage.key": value or comma list}."""
        return {f"{stage}.{key}": _text(value) for stage, keys in self.stages.items() for key, value in keys.items()}


def _text(value) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list):
        return "[" + ",".join(_text(v) for v in value) + "]"
    return str(value)


def _label(variant: dict) -> str:
    return ",".join(f"{k}={v}" for k, v in variant.items())


def names() -> list[str]:
    return sorted(p.stem for p in STUDIES_DIR.glob("*.yaml"))


def load(name: str) -> Study:
    """The study `studies/<name>.yaml`, checked; a bad file is a one-line ConfigError."""
    path = STUDIES_DIR / f"{name}.yaml"
    if not path.is_file():
        raise ConfigError(f"`study={name}` is unknown{did_you_mean(name, names())}; "
                          f"choose one of: {', '.join(names()) or 'none (no file under studies/)'}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML ({str(err).splitlines()[0]})") from None
    if not isinstance(data, dict) or not isinstance(data.get("stages"), dict):
        raise ConfigError(f"{path}: needs a `stages:` mapping of stage -> overrides")
    unknown = set(data) - _KEYS
    if unknown:
        raise ConfigError(f"{path}: unknown keys {sorted(unknown)}; allowed: {sorted(_KEYS)}")
    stages = {stage: dict(keys or {}) for stage, keys in data["stages"].items()}
    for stage, seeds in (data.get("seeds") or {}).items():
        stages.setdefault(stage, {})["seed"] = ",".join(str(s) for s in seeds)
    criterion = tuple(_criterion(path, i, entry) for i, entry in enumerate(data.get("criterion") or []))
    if not criterion:
        raise ConfigError(f"{path}: declare a `criterion:` before the study runs (what passes, what fails)")
    return Study(name=name, question=str(data.get("question", "")), stages=stages, criterion=criterion,
                 reports=_reports(path, data.get("report") or {}), cost=str(data.get("cost", "")),
                 results=str(data.get("results", "")))


def _reports(path: Path, entries: dict) -> tuple[Report, ...]:
    """The study's `report:` entries as reports of the reporting registry."""
    out = []
    for stage, keys in entries.items():
        if not isinstance(keys, dict) or set(keys) - _REPORT_KEYS:
            raise ConfigError(f"{path}: report of `{stage}` takes only {sorted(_REPORT_KEYS)}")
        out.append(Report(stage, seed_metrics=tuple(keys.get("seed_metrics", ())),
                          paired_metrics=tuple(keys.get("paired_metrics", ()))))
    return tuple(out)


def _criterion(path: Path, index: int, entry) -> Criterion:
    where = f"{path} criterion #{index + 1}"
    if not isinstance(entry, dict) or not {"stage", "metric", "variant", "expect"} <= set(entry):
        raise ConfigError(f"{where}: needs stage, metric, variant and expect")
    if set(entry) - _CRITERION_KEYS:
        raise ConfigError(f"{where}: unknown keys {sorted(set(entry) - _CRITERION_KEYS)}")
    if entry["expect"] not in EXPECTATIONS:
        raise ConfigError(f"{where}: expect must be one of {EXPECTATIONS}, got {entry['expect']!r}")
    return Criterion(name=str(entry.get("name", f"criterion {index + 1}")), stage=entry["stage"],
                     metric=entry["metric"], variant={k: _text(v) for k, v in entry["variant"].items()},
                     expect=entry["expect"],
                     minus={k: _text(v) for k, v in entry["minus"].items()} if entry.get("minus") else None)


def _matches(variant: tuple, wanted: dict) -> bool:
    """Whether a variant (`(("qa.memory.num_tokens", "4"), ...)`) has the wanted `{key: value}`; a
    key names the end of a sweep key (`memory.num_tokens` or `qa.memory.num_tokens`)."""
    def value(wanted_key: str):
        found = [v for key, v in variant if key == wanted_key or key.endswith(f".{wanted_key}")]
        return found[0] if len(found) == 1 else None

    return all(value(k) == v for k, v in wanted.items())


def _variant(groups: dict, wanted: dict) -> tuple | None:
    found = [variant for variant in groups if _matches(variant, wanted)]
    return found[0] if len(found) == 1 else None


def judge(criterion: Criterion, records: list[dict]) -> tuple[Estimate | None, bool, str]:
    """(estimate, holds, note) of one criterion over the records of a results directory."""
    stage_records = [r for r in records if r.get("stage") == criterion.stage]
    groups = group_by_variant(stage_records)
    wanted = [criterion.variant] + ([criterion.minus] if criterion.minus else [])
    variants = [_variant(groups, w) for w in wanted]
    for want, variant in zip(wanted, variants):
        if variant is None:
            return None, False, f"no single {criterion.stage} variant {_label(want)} in the records"
    if criterion.minus is None:
        estimate = aggregate(stage_records, [criterion.metric])[variants[0]][criterion.metric]
    else:
        estimate = paired_difference(stage_records, criterion.metric, *variants)
    if estimate.n < 2:
        return estimate, False, f"{estimate.n} seed(s): a CI needs at least 2"
    bound = estimate.mean + estimate.half_width if criterion.expect == "negative" else estimate.mean - estimate.half_width
    holds = bound < 0 if criterion.expect == "negative" else bound > 0
    return estimate, holds, ""


def verdict(study: Study, records: list[dict]) -> str:
    """A Markdown section: each criterion with its estimate, then "passes" or "fails"."""
    lines, passed = [f"## Study `{study.name}`: pre-registered criterion", "", study.question, ""], True
    for criterion in study.criterion:
        estimate, holds, note = judge(criterion, records)
        passed &= holds
        shown = "not measured" if estimate is None else str(estimate)
        lines.append(f"- {criterion.name} ({criterion.describe()}): {shown}: "
                     f"**{'holds' if holds else 'does not hold'}**" + (f" ({note})" if note else ""))
    lines += ["", f"**Study `{study.name}` {'passes' if passed else 'fails'}.**", ""]
    return "\n".join(lines)
