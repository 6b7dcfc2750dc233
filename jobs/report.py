"""What a launch prints: the plan before it runs, and the collected results after."""

from __future__ import annotations

from pathlib import Path

from jobs import results
from jobs.launcher import LauncherConfig
from jobs.plan import Plan


def describe_plan(plan: Plan, launcher: LauncherConfig, executor: str) -> str:
    """Jobs with their signatures and states (run, cache hit, upstream), resources and arrays."""
    resources = (f"{launcher.nodes} node(s) x {launcher.tasks_per_node} task(s) = world size {launcher.world_size}, "
                 f"{launcher.gpus_per_node} GPU(s)/node, "
                 f"{launcher.cpus_per_task} CPU(s)/task, time={launcher.time}min")
    lines = [f"plan: {len(plan.to_run)} job(s) to run on executor={executor}, {resources}"]
    for node in plan.nodes:
        if node in plan.to_run:
            state = "run (forced)" if node.cached else "run"
        elif node.missing:
            state = "upstream MISSING"
        else:
            state = "cache hit" if node.requested else "upstream (exists)"
        sweep = ",".join(f"{k}={v}" for k, v in node.sweep.items())
        lines.append(f"  {node.stage:<12} {node.signature}  {state:<18} {sweep}")
    if plan.default_sweep:
        lines.append(f"  default comparison grid for {plan.grid_source}: {', '.join(plan.default_sweep)} "
                     "(set these keys to run fewer)")
    groups = plan.groups()
    arrays = [g for g in groups if len(g) > 1]
    if arrays:
        lines.append(f"  job arrays: {', '.join(f'{g[0].stage}[{len(g)}]' for g in arrays)}")
    return "\n".join(lines)


def report_results(plan: Plan, results_dir: Path) -> None:
    """Rebuild the summary, tables and plots; print this run's stages and the headline tables."""
    summary = results.collect(results_dir, plan.study) if results.load_records(results_dir) else ""
    for section in summary.split("\n## ")[1:]:
        title = section.split("\n", 1)[0]
        stage = title.split(" (of ")[0]  # a stage's table may be split by its input
        if stage in {n.stage for n in plan.to_run} or ":" in title:  # this run's stages and headlines
            print(f"\n## {section.rstrip()}")
    print(f"\nresults collected into {results_dir / 'summary.md'}")
