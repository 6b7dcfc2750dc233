"""`status`, `logs`, `cancel` and `collect` subcommands."""

from __future__ import annotations

import os
import signal
import socket
import time
from pathlib import Path

from jobs import results
from jobs.runs import RunDir, find_run, list_runs
from stages.core.config import ConfigError
from stages.core.locks import pid_alive, process_start_ticks

USAGE = {
    "status": "status [root=DIR] [last=N]",
    "logs": "logs run=<id> [lines=N] [job=<stage/signature>]",
    "cancel": "cancel run=<id>",
    "collect": "collect [results=DIR] [study=NAME]",
}


def _kv(tokens: list[str], allowed: set[str], command: str) -> dict[str, str]:
    out = {}
    for token in tokens:
        key, sep, value = token.partition("=")
        if not sep or key not in allowed:
            raise ConfigError(f"`{token}` is not understood by `{command}`; usage: python jobs/submit.py {USAGE[command]}")
        out[key] = value
    return out


def _launcher_gone(info: dict) -> str | None:
    """Why the process that ran a local/inline run is certainly dead, or None."""
    pid, host = info.get("pid"), info.get("host")
    if not pid or host != socket.gethostname():
        return None  # another machine's run: cannot check from here
    if not pid_alive(int(pid)):
        return f"its submit process {pid} is gone"
    start = info.get("pid_start")
    if start is not None and process_start_ticks(int(pid)) not in (None, start):
        return f"its submit process {pid} is gone (PID reused)"
    return None


def _live_states(run: RunDir, info: dict) -> dict[str, dict]:
    """Job states: Slurm is asked for runs it holds; local runs recorded their own outcome,
    except that a run whose submit process died shows its unfinished jobs as DEAD."""
    jobs = info.get("jobs", {})
    if info.get("executor") == "slurm":
        from jobs import slurm

        return slurm.refresh_states(jobs)
    unfinished = [key for key, job in jobs.items() if job.get("state") in ("RUNNING", "PENDING")]
    gone = _launcher_gone(info) if unfinished else None
    if gone:
        jobs = {key: ({**job, "state": "DEAD", "reason": f"{gone}; rerun the same command to resume"}
                      if key in unfinished else job) for key, job in jobs.items()}
    return jobs


def status(root: Path, last: int) -> int:
    runs = list_runs(root)[-last:]
    if not runs:
        print(f"no runs under {Path(root) / 'runs'}")
        return 0
    print(f"{'run':<36} {'job':<32} {'state':<11} {'nodes':<12} {'elapsed':>8}  artifact / reason")
    for run in runs:
        info = run.read()
        for key, job in _live_states(run, info).items():
            elapsed = job.get("elapsed_s")
            elapsed_text = f"{elapsed:.0f}s" if isinstance(elapsed, (int, float)) else str(elapsed or "")
            detail = job.get("reason") or job.get("artifact") or ""
            print(f"{run.run_id:<36} {key:<32} {job.get('state', '?'):<11} {job.get('nodes', 'local')!s:<12} "
                  f"{elapsed_text:>8}  {detail}")
    return 0


def logs(root: Path, run_id: str, lines: int, job_key: str | None) -> int:
    run = find_run(root, run_id)
    files = sorted(p for p in run.logs.rglob("*") if p.is_file() and p.suffix in (".out", ".err"))
    if job_key:
        job_id = run.read().get("jobs", {}).get(job_key, {}).get("job_id")
        if job_id is None:
            raise ConfigError(f"`job={job_key}` is not a job of run {run.run_id}")
        files = [p for p in files if p.name.startswith(str(job_id).split("_")[0])]
    if not files:
        print(f"no log files yet under {run.logs}")
    for path in files:
        print(f"==> {path} <==")
        print("\n".join(path.read_text(errors="replace").splitlines()[-lines:]))
    return 0


def cancel(root: Path, run_id: str) -> int:
    run = find_run(root, run_id)
    info = run.read()
    if info.get("executor") == "slurm":
        from jobs import slurm

        slurm.cancel(info.get("jobs", {}))
    elif info.get("pid"):
        try:
            os.kill(int(info["pid"]), signal.SIGTERM)  # the submitting process runs local jobs
        except ProcessLookupError:
            pass
    for key, job in info.get("jobs", {}).items():
        if job.get("state") in ("RUNNING", "PENDING"):
            run.update_job(key, state="CANCELLED", reason=f"cancelled at {time.ctime()}")
    print(f"cancelled run {run.run_id}")
    return 0


def dispatch(command: str, tokens: list[str], root: Path) -> int:
    if command == "status":
        kv = _kv(tokens, {"root", "last"}, command)
        return status(Path(kv.get("root", root)), int(kv.get("last", 20)))
    if command == "logs":
        kv = _kv(tokens, {"root", "run", "lines", "job"}, command)
        if "run" not in kv:
            raise ConfigError(f"`logs` needs run=<id>; usage: python jobs/submit.py {USAGE['logs']}")
        return logs(Path(kv.get("root", root)), kv["run"], int(kv.get("lines", 40)), kv.get("job"))
    if command == "cancel":
        kv = _kv(tokens, {"root", "run"}, command)
        if "run" not in kv:
            raise ConfigError(f"`cancel` needs run=<id>; usage: python jobs/submit.py {USAGE['cancel']}")
        return cancel(Path(kv.get("root", root)), kv["run"])
    kv = _kv(tokens, {"results", "study"}, command)
    print(results.collect(Path(kv.get("results", "results")).absolute(), kv.get("study", "")))
    return 0
