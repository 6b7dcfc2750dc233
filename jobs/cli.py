"""`python jobs/submit.py`: plan, validate and launch stages; status, logs, cancel, collect.

All validation happens before anything runs or is submitted; a bad argument exits with
status 2 and a single line that names the key and the fix.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from jobs.args import GLOBAL_KEYS, ParsedArgs, parse_args
from jobs.executor import EXECUTORS, executor_class
from jobs.launcher import LauncherConfig, check_local
from jobs.plan import Planner
from stages.core import config as config_lib
from stages.core import registry
from stages.core.config import ConfigError
from stages.core.locks import ArtifactBusy
from stages.core.safefs import describe_os_error

COMMANDS = ("run", "status", "logs", "cancel", "collect")
LAUNCHER_KEYS = list(config_lib.field_names(LauncherConfig))

EXAMPLES = """\
examples:
  python jobs/submit.py stage=all                                   # whole pipeline, local executor, sample corpus
  python jobs/submit.py stage=pretrain packing.strategy=random,random_walk,bfs,dfs steps=200
  python jobs/submit.py stage=pretrain executor=slurm nodes=4 gpus_per_node=8 preset=gpt2-small
  python jobs/submit.py stage=extract dump=/data/enwiki-latest-pages-articles.xml.bz2 dry_run=true
  python jobs/submit.py stage=pretrain pretokenize.from=3f9a0c21be77   # read a specific upstream artifact
  python jobs/submit.py status | logs run=<id> | cancel run=<id> | collect
"""


def help_text(stage: str | None = None) -> str:
    """The full help, or with `stage` (a stage name) only that stage's keys after the global ones."""
    lines = ["usage: python jobs/submit.py [command] key=value ...", "",
             f"commands: {', '.join(COMMANDS)} (default: run)", "",
             "arguments are key=value; `stage.key=value` targets one stage; `key=a,b,c` sweeps a key",
             "(swept keys form a cartesian product, submitted as one job array).", "", "global keys:"]
    lines += [f"  {k:<18} {v}" for k, v in GLOBAL_KEYS.items()]
    lines += ["", "launcher keys (never part of a signature; slurm.extra.<flag>=v passes sbatch flags):"]
    lines += [_field_line(f) for f in config_lib.describe(LauncherConfig)]
    for name, spec in registry.all_stages().items():
        if stage not in (None, "all", name):
            continue
        upstream = spec.upstream if not callable(spec.upstream) else "depends on config"
        lines += ["", f"stage `{name}`: {spec.description} (upstream: {upstream or 'none'})"]
        lines += [_field_line(f) for f in config_lib.describe(spec.config_cls)]
    return "\n".join(lines + ["", EXAMPLES])


def _field_line(info: config_lib.FieldInfo) -> str:
    choices = f" [{'|'.join(map(str, info.choices))}]" if info.choices else ""
    choices += f" [{info.bounds}]" if info.bounds else ""
    flag = {True: "", False: " (not in signature)"}.get(info.signature, " (in signature when set)")
    return f"  {info.name:<24} {info.type_name:<10} default={info.default!r}{choices}  {info.help}{flag}"


def default_root() -> Path:
    return Path(os.environ.get("WIKIGRAPH_ROOT", "artifacts")).absolute()


def _bool(parsed: ParsedArgs, key: str) -> bool:
    return config_lib.parse_bool(key, parsed.globals.get(key, "false"))


def run_command(parsed: ParsedArgs) -> int:
    executor = parsed.globals.get("executor", "local")
    if executor not in EXECUTORS:
        raise ConfigError(f"`executor={executor}` is unknown; choose one of {', '.join(EXECUTORS)}")
    root = Path(parsed.globals.get("root") or default_root()).absolute()
    results_dir = Path(parsed.globals.get("results", "results")).absolute()
    launcher_values = dict(parsed.launcher)
    if parsed.globals.get("profile"):
        from jobs.slurm import load_profile

        launcher_values = {**load_profile(parsed.globals["profile"]), **launcher_values}
    launcher = config_lib.resolve(LauncherConfig, launcher_values, where="launcher")
    check_local(launcher, executor)
    dry_run, wait, debug = _bool(parsed, "dry_run"), _bool(parsed, "wait"), _bool(parsed, "debug")
    plan = Planner(parsed, root, LAUNCHER_KEYS, dry_run=dry_run).build()
    backend = executor_class(executor)(plan, launcher, root, results_dir, wait=wait,
                                       slurm_extra=parsed.slurm_extra, debug=debug)
    return backend.launch(dry_run=dry_run)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] == "help" or any(arg in ("-h", "--help") for arg in argv):
        # `stage=pretrain --help` shows that stage's keys; unknown stage names show everything.
        stage = next((arg.split("=", 1)[1] for arg in argv if arg.startswith("stage=")), None)
        print(help_text(stage if stage in registry.all_stages() else None))
        return 0
    command = argv[0] if argv[0] in COMMANDS else "run"
    rest = argv[1:] if argv[0] in COMMANDS else argv
    try:
        if command == "run":
            return run_command(parse_args(rest, LAUNCHER_KEYS))
        from jobs import status

        return status.dispatch(command, rest, default_root())
    except (ConfigError, FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except ArtifactBusy as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except OSError as err:  # a read-only root, a full disk, a file where runs/ or cache/ should be
        print(f"error: {describe_os_error(err)}", file=sys.stderr)
        return 1
