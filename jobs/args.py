"""The `key=value` grammar of `jobs/submit.py`.

- `key=value` sets a stage key; `stage.key=value` targets one stage explicitly.
- `key=a,b,c` (a comma outside brackets/quotes) sweeps the key; several swept keys form
  their cartesian product. `key=[2,4]` is a list value, not a sweep.
- Global keys (stage, executor, root, ...) and launcher keys (nodes, partition, ...)
  are kept apart from stage keys.
"""

from __future__ import annotations

import dataclasses
import itertools

from stages.core.config import ConfigError

#: Keys whose value is a path, taken literally (a comma in it is part of the path).
PATH_KEYS = ("root", "results")
GLOBAL_KEYS = {
    "stage": "stage to run, or `all` for the whole chain",
    "executor": "inline (in-process) | local (subprocesses) | slurm",
    "root": "artifact root on shared storage (env WIKIGRAPH_ROOT, default ./artifacts)",
    "results": "results directory (default ./results)",
    "dry_run": "print the plan (jobs, resources, signatures, cache hits) and exit",
    "force": "true|false: rerun the requested stage(s) even if the artifact exists",
    "lock": "wait (default): a run whose artifact another live run is writing waits for it | refuse: exit, naming it",
    "wait": "executor=slurm: block until every job is final, then collect results; exit non-zero if any failed",
    "debug": "true: print the full traceback of a failing stage (default: stage, signature, reason, log path)",
    "profile": "site profile from slurm/profiles/<name>.yaml (partition, account, ...)",
    "study": "a study file studies/<name>.yaml (with stage=all: runs the stages it names, sweeping its keys "
             "and seeds unless set on the command line; `collect study=<name>` judges its criterion)",
}


def split_top_level(value: str) -> list[str]:
    """Split on commas that are not inside [], {}, () or quotes."""
    parts, depth, quote, current = [], 0, None, []
    for ch in value:
        if quote:
            quote = None if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch in "[{(":
            depth += 1
        elif ch in "]})":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append("".join(current))
            current = []
            continue
        current.append(ch)
    parts.append("".join(current))
    return parts


@dataclasses.dataclass
class ParsedArgs:
    """Command line split into its kinds of keys. Stage values are lists (one item unless swept)."""

    globals: dict[str, str]
    launcher: dict[str, str]
    slurm_extra: dict[str, str]
    stage_values: dict[str, list[str]]
    upstream_from: dict[str, str]
    argv: list[str] = dataclasses.field(default_factory=list)  # as typed: errors quote it back

    @property
    def sweep_keys(self) -> list[str]:
        return [k for k, v in self.stage_values.items() if len(v) > 1]

    def sweep_points(self) -> list[dict[str, str]]:
        """Every combination of the swept keys (a single empty point if nothing is swept)."""
        keys = self.sweep_keys
        combos = itertools.product(*(self.stage_values[k] for k in keys))
        return [dict(zip(keys, combo)) for combo in combos]

    def fixed_values(self) -> dict[str, str]:
        return {k: v[0] for k, v in self.stage_values.items() if len(v) == 1}


def parse_args(argv: list[str], launcher_keys: list[str]) -> ParsedArgs:
    """Parse `key=value` tokens; raises ConfigError naming the bad token."""
    parsed = ParsedArgs({}, {}, {}, {}, {}, list(argv))
    for token in argv:
        key, sep, value = token.partition("=")
        if not sep or not key:
            raise ConfigError(f"cannot parse `{token}`: arguments are key=value (see --help)")
        key = key.strip()
        seen = key in parsed.globals or key in parsed.launcher or key in parsed.stage_values
        if seen:
            raise ConfigError(f"key `{key}` is given twice")
        # A path (root=, results=) is one value even when it holds a comma: it is never swept.
        values = [value] if key in PATH_KEYS else split_top_level(value)
        if key in GLOBAL_KEYS or key in launcher_keys or key.startswith("slurm.extra."):
            if len(values) > 1:
                raise ConfigError(f"`{key}` cannot be swept: only stage keys take comma lists")
            if key in GLOBAL_KEYS:
                parsed.globals[key] = value
            elif key in launcher_keys:
                parsed.launcher[key] = value
            else:
                parsed.slurm_extra[key.removeprefix("slurm.extra.")] = value
        elif key == "from" or key.endswith(".from"):
            parsed.upstream_from[key.removesuffix(".from").removesuffix("from") or ""] = value
        else:
            parsed.stage_values[key] = values
    return parsed
