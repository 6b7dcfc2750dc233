"""One-call GPU check: correctness, compile stability, throughput and QA on one CUDA device.

    python benchmarks/gpu_check.py --out results/gpu_check          # on a GPU node, < 10 minutes
    python benchmarks/gpu_check.py --dry-run                        # list the checks, exit 0
    python benchmarks/gpu_check.py --cpu-smoke --out /tmp/smoke     # the same logic, tiny shapes, CPU

`benchmarks/gpu_check.sh` wraps it (installs a CUDA torch and missing project dependencies first).
Each check runs in its own subprocess with its own time budget: a check that fails, crashes the
CUDA context or hangs is reported (fail / error / timeout) and the next one still runs. Writes
`gpu_check.json`, `gpu_check.md` (a short report) and `gpu_check.log` (every check's output) into
--out, rewritten after each check. A check passes, or does not apply to the device (n/a, with its
reason); skipped for time, timed out, failed or crashed all fail the run. Exit status: 0 every
check passed or did not apply, 1 some check did not pass, 2 bad arguments.
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

# Whole run on one GPU must stay under 10 minutes; the budgets below add up to this. A check may
# also use what the checks before it left unused (time not reserved for the checks after it).
TOTAL_BUDGET_S = 580
SMOKE_TOTAL_BUDGET_S = 900
GRACE_S = 5  # a check's own deadline comes this much before the parent kills it


@dataclass(frozen=True)
class Check:
    name: str
    target: str  # "module:function", called with a CheckContext in a subprocess
    budget_s: int
    smoke_budget_s: int
    description: str


CHECKS = (
    Check("device", "benchmarks.gpucheck.runtime:device_check", 20, 30,
          "CUDA device, torch/CUDA versions, bf16 peak from the table in stages/pretrain/metrics.py"),
    Check("flex_correctness", "benchmarks.gpucheck.attention:flex_correctness", 70, 120,
          "compiled FlexAttention vs dense SDPA (float64 reference), causal/doc/graph x fp32/bf16, forward+backward"),
    Check("compile_stability", "benchmarks.gpucheck.attention:compile_stability", 60, 90,
          "no graph breaks, no recompiles after warm-up over batches whose masks differ (dynamo counters)"),
    Check("pretrain_throughput", "benchmarks.gpucheck.pretrain:pretrain_throughput", 120, 90,
          "gpt2-small at token_budget 1024/4096, graph vs causal (+compile=true): tokens/s, MFU (mask block "
          "density), peak memory, mask-build share; the MFU target is judged on the default graph/1024 row"),
    Check("pretrain_stage", "benchmarks.gpucheck.pretrain:pretrain_stage", 50, 90,
          "the pretrain stage end to end with study=lm's settings (smeared keys, graph mask; Accelerate bf16): "
          "the loss falls, metrics log tokens/s, density and MFU"),
    Check("qa_memxlnet", "benchmarks.gpucheck.qa:qa_memxlnet", 40, 90,
          "MemXLNet at the qa preset=base shape, bf16: examples/s and peak memory at 2/4/6 segments, "
          "+-checkpoint_segments"),
    Check("qa_stage", "benchmarks.gpucheck.qa:qa_stage", 60, 120,
          "the qa stage at bf16 through its end-of-epoch evaluation, then the evaluate stage on its artifact"),
    Check("two_ranks", "benchmarks.gpucheck.launch:two_ranks", 90, 150,
          "pretrain with 2 ranks on one device through jobs/submit.py executor=local tasks_per_node=2 (DDP)"),
    # Last: it also gets whatever time the checks before it left unused.
    Check("pytest_gpu", "benchmarks.gpucheck.suite:pytest_gpu", 70, 90,
          "pytest -m gpu: every CUDA test runs and passes (none may skip on a GPU)"),
)


def resolve_target(target: str):
    module, _, function = target.partition(":")
    return getattr(importlib.import_module(module), function)


def run_child(target: str, result_path: Path, smoke: bool, deadline: float) -> None:
    """Subprocess side: run one check function and write its result (status, summary, details)."""
    import traceback

    from benchmarks.gpucheck.runtime import STATUSES, CheckContext, write_json

    ctx = CheckContext(smoke=smoke, deadline=deadline, result_path=result_path)
    try:
        outcome = resolve_target(target)(ctx)
        if outcome.get("status") not in STATUSES:
            raise ValueError(f"{target} returned status {outcome.get('status')!r}; expected one of {STATUSES}")
    except Exception as exc:  # noqa: BLE001 - reported, never raised: the parent goes on with the next check
        trace = traceback.format_exc()  # compiler errors put the cause first and pages of warnings after
        outcome = {"status": "error", "summary": f"{type(exc).__name__}: {str(exc)[:300]}",
                   "traceback": trace if len(trace) <= 6000 else f"{trace[:3000]}\n[...]\n{trace[-3000:]}"}
    write_json(result_path, {**ctx.partial, **outcome})


def run_check(check: Check, smoke: bool, timeout_s: float, log) -> dict:
    """Parent side: run `check` in a fresh process group, killed after `timeout_s`."""
    with tempfile.TemporaryDirectory() as tmp:
        result_path = Path(tmp) / "result.json"
        command = [sys.executable, str(Path(__file__).resolve()), "--child", check.target,
                   "--result", str(result_path), "--deadline", str(time.time() + timeout_s - GRACE_S)]
        if smoke:
            command.append("--cpu-smoke")
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
               "PYTHONUNBUFFERED": "1"}
        log.write(f"\n===== {check.name} ({check.target}), budget {timeout_s:.0f}s =====\n")
        log.flush()
        started = time.perf_counter()
        proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            code = proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            code = None
        seconds = round(time.perf_counter() - started, 1)
        result = json.loads(result_path.read_text()) if result_path.is_file() else {}
    if code is None:
        result.update(status="timeout", summary=f"killed at its {timeout_s:.0f}s budget; partial results kept")
    elif "status" not in result:
        result.update(status="error", summary=f"the check process exited {code} without a result (see the log)")
    return {"name": check.name, "description": check.description, "seconds": seconds,
            "budget_s": round(timeout_s), **result}


# Not needed by any check and not installable on an offline node from an sdist: left out.
OPTIONAL_REQUIREMENTS = ("torch", "deepspeed")


def project_requirements() -> list[str]:
    """pyproject's `dependencies` plus pytest (the pytest_gpu check runs it)."""
    text = (REPO / "pyproject.toml").read_text()
    block = re.search(r"^dependencies = \[(.*?)^\]", text, re.DOTALL | re.MULTILINE).group(1)
    return re.findall(r'^\s*"([^"]+)"', block, re.MULTILINE) + ["pytest>=8"]


def missing_requirements() -> list[str]:
    """Project requirements whose distribution is not installed (torch and deepspeed aside)."""
    from importlib import metadata

    missing = []
    for requirement in project_requirements():
        name = re.match(r"[A-Za-z0-9_.\-]+", requirement).group(0)
        if name in OPTIONAL_REQUIREMENTS:
            continue
        try:
            metadata.version(name)
        except metadata.PackageNotFoundError:
            missing.append(requirement)
    return missing


def select(names: str | None) -> list[Check]:
    if not names:
        return list(CHECKS)
    known = {check.name: check for check in CHECKS}
    unknown = [name for name in names.split(",") if name not in known]
    if unknown:
        raise SystemExit(f"--checks: unknown {unknown}; choose from {list(known)}")
    return [known[name] for name in names.split(",")]


def dry_run(checks: list[Check], smoke: bool) -> None:
    """List the checks and their budgets; resolving every target catches renamed project APIs."""
    total = SMOKE_TOTAL_BUDGET_S if smoke else TOTAL_BUDGET_S
    print(f"gpu_check: {len(checks)} checks, each in its own process; whole run <= {total}s")
    for check in checks:
        resolve_target(check.target)
        budget = check.smoke_budget_s if smoke else check.budget_s
        print(f"  {check.name:<20} {budget:>4}s  {check.description}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "results" / "gpu_check", help="report folder")
    parser.add_argument("--dry-run", action="store_true", help="list the checks and exit 0 (needs no GPU)")
    parser.add_argument("--cpu-smoke", action="store_true", help="run every check's logic on CPU at tiny shapes")
    parser.add_argument("--checks", help="comma-separated subset of the checks (default: all)")
    parser.add_argument("--missing-requirements", action="store_true",
                        help="print the project requirements not installed here (for gpu_check.sh), exit 0")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--deadline", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.missing_requirements:
        print(" ".join(missing_requirements()))
        return 0
    if args.child:
        run_child(args.child, args.result, args.cpu_smoke, args.deadline)
        return 0
    try:
        checks = select(args.checks)
    except SystemExit as exc:
        print(exc, file=sys.stderr)
        return 2
    if args.dry_run:
        dry_run(checks, args.cpu_smoke)
        return 0
    import torch

    from benchmarks.gpucheck.report import write_reports
    from benchmarks.gpucheck.runtime import PASSING

    if not args.cpu_smoke and not torch.cuda.is_available():
        print("no CUDA device here: use --dry-run (list the checks) or --cpu-smoke (tiny shapes on CPU)",
              file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    budgets = [check.smoke_budget_s if args.cpu_smoke else check.budget_s for check in checks]
    # Unused time moves on to later checks; the run never takes longer than its checks' budgets.
    total = min(SMOKE_TOTAL_BUDGET_S if args.cpu_smoke else TOTAL_BUDGET_S, sum(budgets))
    run = {"tool": "benchmarks/gpu_check.py", "mode": "cpu-smoke" if args.cpu_smoke else "cuda",
           "command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
           "started_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
           "total_budget_s": total, "checks": []}
    started = time.perf_counter()
    with open(args.out / "gpu_check.log", "w") as log:
        for index, check in enumerate(checks):
            left = total - (time.perf_counter() - started)
            budget = min(left - sum(budgets[index + 1:]), left)
            if budget < 10:
                run["checks"].append({"name": check.name, "description": check.description, "status": "skipped",
                                      "summary": "the whole run's time budget is spent", "seconds": 0.0})
            else:
                result = run_check(check, args.cpu_smoke, budget, log)
                run["checks"].append(result)
                print(f"{check.name:<20} {result['status']:<8} {result['seconds']:>6.1f}s  {result['summary']}",
                      flush=True)
            run["total_seconds"] = round(time.perf_counter() - started, 1)
            write_reports(run, args.out)
    failed = [c["name"] for c in run["checks"] if c["status"] not in PASSING]
    print(f"report: {args.out / 'gpu_check.md'}; {len(failed)} of {len(checks)} checks not passed"
          + (f": {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
