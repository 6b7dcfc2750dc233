"""`executor=slurm`: a plan becomes submitit Slurm jobs, arrays and `afterok` chains.

- Each plan group (one stage, several sweep points) is ONE `sbatch --array=0-N%P`, split into
  several arrays when it exceeds the cluster's MaxArraySize.
- Downstream groups depend on their upstream jobs with `afterok`, and are cancelled by Slurm
  if an upstream fails (`--kill-on-invalid-dep=yes`); `status` names the failed upstream.
- Jobs run a snapshot of the code copied into the run directory at submission, so later
  edits to the working tree never change a queued job.
- Validation (partition, node count, container file) happens before any `sbatch`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from jobs.entry import REQUEUE_DIR_ENV, StageJob
from jobs.executor import REPO, Executor
from jobs.launcher import LauncherConfig
from jobs.runs import RunDir, owner_only_writes
from stages.core.artifacts import code_version
from stages.core.config import ConfigError
from stages.core.registry import EXTRA_MODULES_ENV

CODE_DIRS = ("jobs", "stages", "models")
PROFILES_DIR = REPO / "slurm" / "profiles"
FINAL_STATES = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "BOOT_FAIL", "DEADLINE"}


def load_profile(name: str) -> dict:
    """Launcher defaults of a site profile (`slurm/profiles/<name>.yaml`, or a path)."""
    from omegaconf import OmegaConf

    path = Path(name) if name.endswith((".yaml", ".yml")) else PROFILES_DIR / f"{name}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in PROFILES_DIR.glob("*.yaml"))
        raise ConfigError(f"`profile={name}`: no file {path}; known profiles: {', '.join(known) or 'none'}")
    return {k: str(v) for k, v in OmegaConf.to_container(OmegaConf.load(path)).items()}


def _slurm(*cmd: str) -> str:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    except FileNotFoundError:
        raise ConfigError(f"executor=slurm needs `{cmd[0]}` on PATH: run on a login node, "
                          "or start the local test cluster with `bash slurm/up.sh`") from None
    except subprocess.CalledProcessError as err:
        raise ConfigError(f"`{' '.join(cmd)}` failed: {err.stderr.strip()}") from None


def validate_cluster(launcher: LauncherConfig) -> None:
    """Fail before sbatch on resources the cluster cannot provide."""
    partitions = {p.rstrip("*") for p in _slurm("sinfo", "-h", "-o", "%P").split()}
    if launcher.partition and launcher.partition not in partitions:
        raise ConfigError(f"`partition={launcher.partition}` does not exist; available: {', '.join(sorted(partitions))}")
    args = ["sinfo", "-h", "-N", "-o", "%N"] + (["-p", launcher.partition] if launcher.partition else [])
    available = len(set(_slurm(*args).split()))
    if launcher.nodes > available:
        raise ConfigError(f"`nodes={launcher.nodes}` but the {'partition' if launcher.partition else 'cluster'} "
                          f"has only {available} node(s)")
    if launcher.container and not Path(launcher.container).is_file():
        raise ConfigError(f"`container={launcher.container}`: no such image file; build it with containers/build.sh")


def max_array_size() -> int:
    for line in _slurm("scontrol", "show", "config").splitlines():
        if line.startswith("MaxArraySize"):
            return int(line.split("=")[1])
    return 1001


def _code_dirs() -> list[str]:
    """Top-level packages a job imports: the project's, plus those of extra stage modules
    (`$WIKIGRAPH_EXTRA_STAGES`); those in this checkout are copied, so a site's own stages travel
    with the snapshot like the built-in ones (the jobs unpickle their configs)."""
    names = list(CODE_DIRS)
    for module in filter(None, os.environ.get(EXTRA_MODULES_ENV, "").split(",")):
        top = module.strip().split(".")[0]
        if top not in names:
            names.append(top)
    return names


def snapshot_code(run: RunDir) -> Path:
    """Copy the code into the run directory; jobs import it from there."""
    dest = run.path / "code"
    for name in _code_dirs():
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, dest / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    (dest / ".code_version.json").write_text(json.dumps(code_version()))
    return dest


def _python(launcher: LauncherConfig, root: Path, code: Path) -> str:
    if not launcher.container:
        return sys.executable
    from jobs.container import apptainer_python

    return apptainer_python(launcher.container, root=root, repo=code, gpus=launcher.gpus_per_node > 0)


def _requeue_trap(code: Path) -> list[str]:
    """Batch-script lines that requeue the job when a rank asked for it (see `jobs.entry`).

    The request is a file, and `scontrol` runs here, in the batch shell on the host, so a job
    inside an Apptainer image needs no Slurm client (whose version must match the site's) inside it.
    """
    requests = code.parent / "requeue"
    return [f"export {REQUEUE_DIR_ENV}={requests}",
            (f"trap 'r=\"${REQUEUE_DIR_ENV}/$SLURM_JOB_ID\"; if [ -e \"$r\" ]; then rm -f \"$r\"; "
            f"scontrol requeue \"$SLURM_JOB_ID\"; fi' EXIT")]


def _parameters(launcher: LauncherConfig, extra: dict, code: Path, stage: str) -> dict:
    params = {
        "job_name": f"wikigraph-{stage}", "nodes": launcher.nodes, "ntasks_per_node": launcher.tasks_per_node,
        "cpus_per_task": launcher.cpus_per_task, "time": launcher.time, "signal_delay_s": launcher.signal_delay_s,
        # PYTHONSAFEPATH: `python -m submitit...` would otherwise put the submit directory (often
        # the working tree) first on sys.path, ahead of the snapshot. OMP_NUM_THREADS: torch would
        # otherwise start one thread per core of the node, not per CPU the task was given, and jobs
        # sharing a node (or an oversubscribed one) then thrash.
        "setup": [f"export PYTHONPATH={code}${{PYTHONPATH:+:$PYTHONPATH}}", "export PYTHONSAFEPATH=1",
                  f"export OMP_NUM_THREADS=${{OMP_NUM_THREADS:-{launcher.cpus_per_task}}}", *_requeue_trap(code)],
        "additional_parameters": {"requeue": True, **extra},
    }
    if launcher.array_parallelism:
        params["array_parallelism"] = launcher.array_parallelism
    if launcher.gpus_per_node:
        params["gpus_per_node"] = launcher.gpus_per_node
    for key in ("mem", "partition", "account", "qos", "constraint"):
        if getattr(launcher, key):
            params[key] = getattr(launcher, key)
    if launcher.exclusive:
        params["exclusive"] = True
    return params


class SlurmExecutor(Executor):
    """Each plan group is one job array (split at MaxArraySize), chained with `afterok`.

    Returns after submission unless `wait=true`; jobs run a code snapshot in the run directory."""

    name = "slurm"
    blocking = False

    def validate(self) -> None:
        validate_cluster(self.launcher)

    def prepare(self, run: RunDir) -> None:
        self.code = snapshot_code(run)

    def _arrays(self, run: RunDir, jobs: dict[str, StageJob], job_ids: dict[str, str]):
        """(submitit executor set up for one array, its nodes, their jobs), in plan order.

        `job_ids` maps the keys of nodes already submitted to their job ids (for `afterok`);
        the caller fills it in as it submits."""
        import submitit

        executor = submitit.SlurmExecutor(folder=run.logs / "%j", python=_python(self.launcher, self.root, self.code))
        chunk = max_array_size()
        for group in self.plan.groups():
            deps = sorted({job_ids[k].split("_")[0] for n in group for k in n.upstream_keys if k in job_ids})
            params = _parameters(self.launcher, self.slurm_extra, self.code, group[0].stage)
            if deps:
                params["additional_parameters"].update({"dependency": "afterok:" + ":".join(deps),
                                                         "kill-on-invalid-dep": "yes"})
            executor.update_parameters(**params)
            for start in range(0, len(group), chunk):
                nodes = group[start:start + chunk]
                yield executor, nodes, [jobs[n.key] for n in nodes]

    def preview(self, run: RunDir, jobs: dict[str, StageJob]) -> None:
        # No job ids exist yet: dependants' scripts name their upstream by a placeholder.
        job_ids = {key: f"<job id of {key}>" for key in jobs}
        for executor, nodes, _ in self._arrays(run, jobs, job_ids):
            print(_sbatch_text(executor, len(nodes)))

    def execute(self, run: RunDir, record: dict, jobs: dict[str, StageJob]) -> int:
        job_ids: dict[str, str] = {}
        for executor, nodes, group_jobs in self._arrays(run, jobs, job_ids):
            for node, job in zip(nodes, _submit_group(executor, group_jobs)):
                job_ids[node.key] = job.job_id
                record["jobs"][node.key].update(job_id=job.job_id, submitted=time.time())
        run.write(record)
        print(f"submitted run {run.run_id}: {len(job_ids)} job(s); follow with `python jobs/submit.py status` "
              f"and `python jobs/submit.py logs run={run.run_id}`", flush=True)
        return wait_for(run) if self.wait else 0


def _submit_group(executor, jobs: list[StageJob]):
    if len(jobs) == 1:
        with owner_only_writes():
            return [executor.submit(jobs[0])]
    with owner_only_writes(), executor.batch():  # the batch is submitted on leaving it
        futures = [executor.submit(job) for job in jobs]
    return futures


#: Executor parameters that are not sbatch options of their own.
_NOT_OPTIONS = ("setup", "additional_parameters", "signal_delay_s", "array_parallelism", "stderr_to_stdout",
                "srun_args", "use_srun", "wckey", "num_gpus")


def _sbatch_text(executor, count: int) -> str:
    """What this group's sbatch script sets, from the executor's public parameters: its options,
    the setup lines it runs before the tasks, and the command every task runs."""
    params = dict(executor.parameters)
    options = {k: v for k, v in params.items() if k not in _NOT_OPTIONS and v not in (None, False, "")}
    options.update(params.get("additional_parameters", {}))
    options["signal"] = f"USR2@{params.get('signal_delay_s', 90)}"
    if count > 1:
        throttle = params.get("array_parallelism")
        options["array"] = f"0-{count - 1}" + (f"%{throttle}" if throttle else "")
    lines = [f"--- sbatch script ({count} task(s)) ---"]
    lines += [f"#SBATCH --{k.replace('_', '-')}" + ("" if v is True else f"={v}") for k, v in sorted(options.items())]
    lines += ["# setup", *params.get("setup", []), "# every task runs", f"srun ... {executor.python} -u -m submitit.core._submit"]
    return "\n".join(lines)


def _array_task_ids(job_id: str) -> list[str]:
    """`108_[0-3,5%2]` (array tasks that never started share one sacct row) -> 108_0 .. 108_5."""
    base, sep, rest = job_id.partition("_[")
    if not sep:
        return [job_id]
    ids = []
    for part in rest.rstrip("]").split("%")[0].split(","):
        first, _, last = part.partition("-")
        ids += [f"{base}_{i}" for i in range(int(first), int(last or first) + 1)]
    return ids


def _query_states(job_ids: list[str]) -> dict[str, dict]:
    """State, nodes and elapsed time per job id, from sacct (with squeue's pending reason)."""
    if not job_ids:
        return {}
    # Ask for whole arrays: sacct does not answer `108_3` while that task has never started.
    bases = ",".join(sorted({j.split("_")[0] for j in job_ids}))
    out = _slurm("sacct", "-X", "-P", "-n", "-o", "JobID,State,NodeList,Elapsed", "-j", bases)
    states = {}
    for line in out.splitlines():
        job_id, state, nodes, elapsed = line.split("|")
        for task_id in _array_task_ids(job_id):
            states[task_id] = {"state": state.split()[0], "nodes": nodes, "elapsed_s": elapsed}
    pending = _slurm("squeue", "-h", "-r", "-o", "%i|%T|%r", "-j", bases) if states else ""
    for line in pending.splitlines():
        job_id, state, reason = line.split("|")
        states.setdefault(job_id, {})["reason"] = reason
    return states


def refresh_states(jobs: dict[str, dict]) -> dict[str, dict]:
    """Current job states; a job cancelled because an upstream failed says which."""
    live = _query_states([j["job_id"] for j in jobs.values() if j.get("job_id")])
    merged = {}
    for key, job in jobs.items():
        merged[key] = {**job, **live.get(job.get("job_id"), {})}
    for key, job in merged.items():  # plan order: a job's upstreams come before it
        failed = [u for u in job.get("upstream", []) if merged.get(u, {}).get("state") in FINAL_STATES - {"COMPLETED"}
                  or merged.get(u, {}).get("reason", "").startswith("upstream")]
        if failed and job.get("state") in ("CANCELLED", "PENDING"):
            blocker = merged[failed[0]]
            if blocker.get("reason", "").startswith("upstream"):  # name the job that actually failed
                job["reason"] = f"{blocker['reason']} (via {failed[0]})"
            else:
                job["reason"] = f"upstream {failed[0]} failed ({blocker.get('state')})"
    return merged


def wait_for(run: RunDir, poll_s: float = 3.0) -> int:
    """Block until every job of the run is final; exit code 1 if any did not complete."""
    while True:
        info = run.read()
        jobs = refresh_states(info["jobs"])
        if all(j.get("state") in FINAL_STATES for j in jobs.values()):
            info["jobs"] = jobs
            run.write(info)
            for key, job in jobs.items():
                print(f"{job['state']:<10} {key} {job.get('reason', '')}", flush=True)
            return 0 if all(j["state"] == "COMPLETED" for j in jobs.values()) else 1
        time.sleep(poll_s)


def cancel(jobs: dict[str, dict]) -> None:
    ids = sorted({j["job_id"].split("_")[0] for j in jobs.values() if j.get("job_id")})
    if ids:
        _slurm("scancel", *ids)
