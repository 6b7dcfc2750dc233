"""A new stage touches only its own package and one registry line.

The toy stage below is written into a fresh package outside the repository. Registering it is
one line (its spec module added to `BUILTIN_SPEC_MODULES`); nothing in `jobs/` changes, yet
`stage=all` runs its declared comparison grid, `study=` finds its preset, the launcher calls its
prefetch hook before running it, and the results summary shows its headline table and plot.
"""

import ast
import json
import sys
import textwrap
from pathlib import Path

import pytest

from jobs import cli
from jobs.args import parse_args
from jobs.plan import Planner
from stages.core import registry

REPO = Path(__file__).resolve().parents[2]
from stages.core.config import ConfigError

SPEC = '''
import dataclasses
from pathlib import Path

from stages.core.config import knob
from stages.core.registry import StageSpec
from stages.core.reports import Headline, Report


@dataclasses.dataclass
class ToyCountConfig:
    base: int = knob(2, "counted up to base ** power")
    power: int = knob(3, "exponent")


def prefetch(cfg, cache_dir):
    (Path(cache_dir) / "toy_count.txt").write_text(str(cfg.base))
    return [f"toy_count: base {cfg.base} cached"]


STAGE = StageSpec(
    name="toy_count", config_cls=ToyCountConfig, run="toystage.run:run",
    description="test-only: counts", grid={"base": "2,3"},
    prefetch="toystage.spec:prefetch",
)
REPORTS = (Report("toy_count", headlines=(Headline("Toy counts", ("total",), plot=("toy_total", ("total",),
                                                                                  "toy totals")),)),)
'''

RUN = '''
def run(cfg, ctx):
    (ctx.out_dir / "count.txt").write_text(str(cfg.base ** cfg.power))
    return {"total": cfg.base ** cfg.power}
'''


@pytest.fixture
def toy_stage(tmp_path, monkeypatch):
    package = tmp_path / "pkg" / "toystage"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "spec.py").write_text(textwrap.dedent(SPEC))
    (package / "run.py").write_text(textwrap.dedent(RUN))
    monkeypatch.syspath_prepend(str(tmp_path / "pkg"))
    # The one registry line a new stage needs:
    monkeypatch.setattr(registry, "BUILTIN_SPEC_MODULES", (*registry.BUILTIN_SPEC_MODULES, "toystage.spec"))
    monkeypatch.setattr(registry, "_REGISTRY", {})
    monkeypatch.setattr(registry, "_LOADED", False)
    yield
    for name in [m for m in sys.modules if m.startswith("toystage")]:
        del sys.modules[name]


def _plan(tmp_path, *args):
    return Planner(parse_args(list(args), cli.LAUNCHER_KEYS), tmp_path / "root", cli.LAUNCHER_KEYS).build()


def test_stage_all_runs_the_grid_the_stage_declares(toy_stage, tmp_path):
    plan = _plan(tmp_path, "stage=all")
    assert "toy_count.base" in plan.default_sweep
    bases = sorted(n.cfg.base for n in plan.to_run if n.stage == "toy_count")
    assert bases == [2, 3]
    narrowed = _plan(tmp_path, "stage=all", "toy_count.base=5")
    assert [n.cfg.base for n in narrowed.to_run if n.stage == "toy_count"] == [5]


def test_a_study_file_sets_the_sweep_and_its_criterion_judges_the_records(toy_stage, tmp_path, monkeypatch):
    from jobs import studies

    monkeypatch.setattr(studies, "STUDIES_DIR", tmp_path / "studies")
    (tmp_path / "studies").mkdir()
    (tmp_path / "studies" / "powers.yaml").write_text(
        "question: do powers count?\nstages:\n  toy_count: {power: '1,2,4'}\n"
        "criterion:\n  - {stage: toy_count, metric: total, variant: {power: 4}, minus: {power: 1}, expect: positive}\n")
    plan = _plan(tmp_path, "stage=toy_count", "study=powers")
    records = [{"stage": "toy_count", "sweep": {"power": str(p), "seed": str(s)}, "metrics": {"total": p * 10 + s}}
               for p in (1, 2, 4) for s in (0, 1)]
    assert "**Study `powers` passes.**" in studies.verdict(studies.load("powers"), records)
    flat = [{**r, "metrics": {"total": 1 + r["metrics"]["total"] % 2}} for r in records]
    assert "**Study `powers` fails.**" in studies.verdict(studies.load("powers"), flat)
    assert sorted(n.cfg.power for n in plan.to_run) == [1, 2, 4]
    assert plan.grid_source == "study=powers"
    with pytest.raises(ConfigError, match="`study=power` is unknown.*did you mean `powers`"):
        _plan(tmp_path, "stage=toy_count", "study=power")


def test_launch_prefetches_and_the_summary_shows_the_headline(toy_stage, tmp_path, capsys):
    root, results = tmp_path / "root", tmp_path / "results"
    code = cli.main(["stage=toy_count", "executor=inline", f"root={root}", f"results={results}", "base=3,4"])
    assert code == 0
    assert (root / "cache" / "toy_count.txt").read_text() == "4"
    assert "offline cache: toy_count: base 3 cached" in capsys.readouterr().out
    summary = (results / "summary.md").read_text()
    table = summary.split("## Toy counts\n\n", 1)[1]
    assert "| run | signature | total |" in table and "| base=3 |" in table and "| 64 |" in table
    assert (results / "toy_total.png").is_file()
    record = json.loads(next((root / "runs").glob("*/run.json")).read_text())
    assert record["executor"] == "inline" and all(j["state"] == "COMPLETED" for j in record["jobs"].values())


def _strings_and_stage_packages(path):
    """String constants outside docstrings, and the `stages.<package>` names imported, of one file."""
    tree = ast.parse(path.read_text())
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
                  and node.body and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}
    strings = {node.value for node in ast.walk(tree)
               if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings}
    modules = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    modules |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    return strings, {m.split(".")[1] for m in modules if m.startswith("stages.")}


def test_jobs_name_no_stage_and_stages_import_only_declared_upstreams():
    root = Path(__file__).resolve().parents[2]
    stages = registry.all_stages()
    shared = {"core", "formats"}
    for path in sorted((root / "jobs").glob("*.py")):
        strings, packages = _strings_and_stage_packages(path)
        assert not strings & set(stages), f"{path.name} names a stage: {sorted(strings & set(stages))}"
        assert packages <= shared, f"{path.name} imports stage internals: {sorted(packages - shared)}"
    # A stage package imports core, formats, the packing library (owned by no stage), itself, and the
    # packages of the stages its stages declare upstream (evaluate dispatches to its upstream's
    # evaluator); nothing else. One package may hold several stages (wiki: extract, graph, pretokenize).
    package_of = {name: spec.run.split(".")[1] for name, spec in stages.items() if spec.run.startswith("stages.")}
    allowed = {package: shared | {"packing", package} for package in package_of.values()}
    for name, package in package_of.items():
        spec = stages[name]
        for overrides in spec.variants or ({},):
            allowed[package] |= {package_of[u] for u in spec.upstream_of(spec.config_cls(**overrides)) if u in package_of}
    for package, permitted in allowed.items():
        for path in sorted((root / "stages" / package).rglob("*.py")):
            used = _strings_and_stage_packages(path)[1]
            assert used <= permitted, f"{path.relative_to(root)} imports {sorted(used - permitted)}"


@pytest.mark.parametrize("study, verdict", [("lm", "passes"), ("qa_memory", "passes"), ("qa_binding", "fails"),
                                            ("qa_binding_2", "fails")])
def test_every_study_file_is_valid_and_the_committed_reference_results_keep_their_verdict(study, verdict):
    from jobs import results, studies

    spec = studies.load(study)
    assert spec.criterion and spec.results and spec.cost
    records = results.load_records(REPO / spec.results)
    assert f"**Study `{study}` {verdict}.**" in studies.verdict(spec, records)


def test_a_study_file_adds_its_seed_metrics_to_the_stage_s_report(toy_stage, tmp_path, monkeypatch):
    """The reporting registry holds the stage's report; a study's `report:` adds to it when the
    study is collected, and a report key the registry does not know is a one-line error."""
    from jobs import studies, summary

    monkeypatch.setattr(studies, "STUDIES_DIR", tmp_path / "studies")
    (tmp_path / "studies").mkdir()
    criterion = "criterion:\n  - {stage: toy_count, metric: total, variant: {power: 4}, expect: positive}\n"
    (tmp_path / "studies" / "powers.yaml").write_text(
        "stages:\n  toy_count: {power: '1,4'}\nreport:\n  toy_count: {seed_metrics: [total]}\n" + criterion)
    records = [{"stage": "toy_count", "signature": f"s{p}{s}", "sweep": {"toy_count.power": str(p), "seed": str(s)},
                "metrics": {"total": p * 10 + s}} for p in (1, 4) for s in (0, 1)]
    assert not any("mean ± 95% CI" in text for text in summary.headline_sections(records))
    extra = studies.load("powers").reports
    assert any(text.startswith("## toy_count: mean ± 95% CI") for text in summary.headline_sections(records, extra))
    (tmp_path / "studies" / "bad.yaml").write_text("stages:\n  toy_count: {}\nreport:\n  toy_count: {plots: [x]}\n"
                                                   + criterion)
    with pytest.raises(ConfigError, match="report of `toy_count` takes only"):
        studies.load("bad")
