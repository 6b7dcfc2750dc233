"""From parsed arguments to a plan: the stage runs needed, their signatures and cache hits.

Every sweep point resolves its own configs; runs that resolve to the same (stage, signature)
are one node, so a sweep over a pretrain key shares one extract/graph/pretokenize. Upstream
artifacts outside the requested stages must already exist: missing ones fail here, before
anything is submitted.
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Any

from jobs import studies
from jobs.args import GLOBAL_KEYS, ParsedArgs, split_top_level
from stages.core import config as config_lib
from stages.core import locks, registry
from stages.core.artifacts import Artifact, CorruptArtifact, complete_artifacts, find_latest, load_artifact
from stages.core.config import ConfigError, did_you_mean
from stages.core.runner import stage_signature

#: An artifact signature as `<stage>.from=` takes it.
_SIGNATURE = re.compile(r"[0-9a-f]{12}")


def node_key(stage: str, signature: str) -> str:
    return f"{stage}/{signature}"


@dataclasses.dataclass
class Node:
    """One stage run (or an existing artifact it would reuse)."""

    stage: str
    cfg: Any
    signature: str
    direct: tuple[str, ...]
    upstream: dict[str, str]  # every transitive upstream stage -> signature
    sweep: dict[str, str] = dataclasses.field(default_factory=dict)
    existing: Artifact | None = None
    requested: bool = False  # part of the requested stages (vs an upstream it only reads)
    missing: bool = False  # a dry run's upstream that does not exist yet (a real run refuses)

    @property
    def key(self) -> str:
        """`stage/signature`: the one node key (plan, run.json, executors, status)."""
        return node_key(self.stage, self.signature)

    @property
    def upstream_keys(self) -> list[str]:
        """Keys of the direct upstream nodes (a role `stage@label` names a node of `stage`)."""
        return [node_key(registry.stage_of(name), self.upstream[name]) for name in self.direct]

    @property
    def cached(self) -> bool:
        return self.existing is not None


@dataclasses.dataclass
class Plan:
    """Nodes in dependency order; `to_run` are those without a usable artifact."""

    nodes: list[Node]
    sweep_keys: list[str]
    force: bool
    default_sweep: list[str] = dataclasses.field(default_factory=list)
    on_busy: str = "wait"
    grid_source: str = "stage=all"  # where default_sweep came from: stage=all or study=<name>
    study: str = ""  # `study=<name>`: its criterion is judged when the results are collected

    @property
    def to_run(self) -> list[Node]:
        return [n for n in self.nodes if n.requested and (self.force or not n.cached)]

    def groups(self) -> list[list[Node]]:
        """Runs grouped per stage variant, in dependency order: each group is one job array.

        A group comes after every group that runs one of its nodes' upstreams. Order of first
        appearance is not enough: when a sweep's first point finds its upstream cached, its
        downstream node precedes the upstreams the other points still have to run.
        """
        pending: dict[tuple, list[Node]] = {}
        for node in self.to_run:
            pending.setdefault((node.stage, node.direct), []).append(node)
        running = {node.key for node in self.to_run}
        ordered, emitted = [], set()
        while pending:
            ready = next((k for k, nodes in pending.items()
                          if all(u in emitted or u not in running for n in nodes for u in n.upstream_keys)), None)
            if ready is None:
                raise RuntimeError(f"plan: job groups {list(pending)} wait on each other; report this as a bug")
            ordered.append(pending.pop(ready))
            emitted.update(node.key for node in ordered[-1])
        return ordered


def apply_default_sweep(parsed: ParsedArgs, grid: dict[str, str]) -> list[str]:
    """Add `grid` ({"stage.key": comma list}) for keys the user left alone; returns the keys added."""
    added = []
    for key, values in grid.items():
        field = key.split(".", 1)[1]
        if key not in parsed.stage_values and field not in parsed.stage_values:
            parsed.stage_values[key] = split_top_level(values)
            added.append(key)
    return added


class Planner:
    """Resolves configs and upstream artifacts for one command line."""

    def __init__(self, parsed: ParsedArgs, root: Path, launcher_keys: list[str], dry_run: bool = False):
        self.parsed = parsed
        self.dry_run = dry_run
        self.root = Path(root)
        self.launcher_keys = launcher_keys
        self.stages = registry.all_stages()
        self.stage_name = parsed.globals.get("stage", "")
        if not self.stage_name:
            raise ConfigError("missing `stage=<name>`; choose one of: " + ", ".join([*self.stages, "all"]))
        if self.stage_name != "all":
            registry.get(self.stage_name)  # unknown stage -> did-you-mean error
        self.force = config_lib.parse_bool("force", parsed.globals.get("force", "false"))
        self.on_busy = parsed.globals.get("lock", "wait")
        if self.on_busy not in locks.LOCK_MODES:
            raise ConfigError(f"`lock={self.on_busy}` is unknown; choose one of {', '.join(locks.LOCK_MODES)}")
        study = parsed.globals.get("study", "")
        self.study = study
        self.grid_source = f"study={study}" if study else "stage=all"
        self.study_stages = set(studies.load(study).stages) if study else set()
        if study:
            self.default_sweep = apply_default_sweep(parsed, studies.load(study).grid())
        elif self.stage_name == "all":  # the demo's comparison grid, declared by the stages
            self.default_sweep = apply_default_sweep(parsed, registry.default_grid())
        else:
            self.default_sweep = []
        self._nodes: dict[str, Node] = {}
        self._route_keys()

    # --- key routing -------------------------------------------------------------------
    def _requested(self) -> list[tuple[str, dict]]:
        """(stage, variant overrides) the command asks to run."""
        if self.stage_name != "all":
            return [(self.stage_name, {})]
        chain = []
        for name, spec in self.stages.items():
            if not spec.in_chain:
                continue  # runs only as another stage's derived upstream
            if self.study and name not in self.study_stages:
                continue  # stage=all study=<name> runs the stages its file names
            for variant in spec.variants or ({},):
                chain.append((name, dict(variant)))
        return chain

    def _route_keys(self) -> None:
        """Map every stage key on the command line to the stage(s) it configures."""
        self.routes: dict[str, list[tuple[str, str]]] = {}
        requested = {name for name, _ in self._requested()}
        for key in self.parsed.stage_values:
            prefix, dot, rest = key.partition(".")
            if dot and prefix in self.stages:
                moved = config_lib.renamed(self.stages[prefix].config_cls).get(rest)
                if moved:  # name the new key as the user wrote the old one: with its stage prefix
                    raise config_lib.moved_key_error(key, f"{prefix}.{moved}", f"stage `{prefix}`")
                config_lib.check_key(self.stages[prefix].config_cls, rest, f"stage `{prefix}`")
                self.routes[key] = [(prefix, rest)]
                continue
            owners = [n for n in requested if key in config_lib.field_names(self.stages[n].config_cls)]
            if not owners:
                self._raise_unknown(key, requested)
            self.routes[key] = [(n, key) for n in owners]

    def _raise_unknown(self, key: str, requested: set[str]) -> None:
        where = "stage `all`" if self.stage_name == "all" else f"stage `{self.stage_name}`"
        # A key that moved into a component of a requested stage is named in its new form first,
        # even where another stage still has a key of that name (pretrain's `batch_size` is
        # `packing.batch_size`; qa's is still `batch_size`).
        for name in sorted(requested):
            moved = config_lib.renamed(self.stages[name].config_cls)
            if key in moved:
                raise config_lib.moved_key_error(key, moved[key], where)
            if key in config_lib.derived_names(self.stages[name].config_cls):
                raise ConfigError(f"{where} key `{key}` is filled in by the stage, not set: leave it out")
        others = [n for n, s in self.stages.items() if key in config_lib.field_names(s.config_cls)]
        chain = self._default_upstream_closure(requested)
        others.sort(key=lambda n: n not in chain)  # name an upstream of the requested stage first
        if others:
            raise ConfigError(f"key `{key}` belongs to stage `{others[0]}`, not `{self.stage_name}`; "
                              f"write `{others[0]}.{key}=...` to configure that upstream")
        for name in sorted(self.stages, key=lambda n: n not in chain):
            moved = config_lib.renamed(self.stages[name].config_cls)
            if key in moved:  # moved in an upstream stage: its full name, stage prefix included
                raise config_lib.moved_key_error(key, f"{name}.{moved[key]}", f"stage `{name}`")
        prefix, dot, _ = key.partition(".")
        if dot and not any(key.startswith(f"{c}.") for n in requested
                           for c in config_lib.components(self.stages[n].config_cls)):
            raise ConfigError(f"unknown stage `{prefix}` in key `{key}`{did_you_mean(prefix, list(self.stages))}")
        candidates = list(GLOBAL_KEYS) + self.launcher_keys
        for name in requested:
            candidates += config_lib.field_names(self.stages[name].config_cls)
        raise config_lib.unknown_key_error(key, where, candidates)

    def _default_upstream_closure(self, names: set[str]) -> set[str]:
        """Every stage upstream of `names` under default configs (for error hints)."""
        seen: set[str] = set()
        todo = list(names)
        while todo:
            spec = self.stages[todo.pop()]
            for up in spec.upstream_of(config_lib.resolve(spec.config_cls, {})):
                if up not in seen:
                    seen.add(up)
                    todo.append(up)
        return seen

    def _overrides(self, stage: str, point: dict[str, str]) -> dict[str, str]:
        values = {**self.parsed.fixed_values(), **point}
        out = {}
        for key, value in values.items():
            for owner, field in self.routes[key]:
                if owner == stage:
                    out[field] = value
        return out

    # --- node resolution ---------------------------------------------------------------
    def _resolve(self, stage: str, point: dict[str, str], variant: dict, in_chain: bool) -> Node:
        spec = self.stages[stage]
        overrides = {**variant, **self._overrides(stage, point)}
        cfg = config_lib.resolve(spec.config_cls, overrides, where=f"stage `{stage}`")
        direct = spec.upstream_of(cfg)
        upstream: dict[str, str] = {}
        for name in direct:
            up = self._upstream_node(name, point, in_chain)
            upstream.update(up.upstream)
            upstream[name] = up.signature
        derived = self._derived(spec, cfg, upstream)
        upstream.update({role: node.signature for role, node in derived.items()})
        direct = (*direct, *derived)
        signature = stage_signature(spec, cfg, {name: upstream[name] for name in direct})
        node = self._nodes.get(node_key(stage, signature))
        if node is None:
            node = Node(stage, cfg, signature, direct, upstream,
                        existing=load_artifact(self.root, stage, signature))
            self._nodes[node.key] = node
        return node

    def _config_of(self, stage: str, signature: str) -> Any:
        """The config of an upstream role: its node's, or the artifact's (an upstream of an artifact
        named by `<stage>.from=`, such as the reader of a reused qa run, is no node of this plan)."""
        node = self._nodes.get(node_key(stage, signature))
        if node is not None and node.cfg is not None:
            return node.cfg
        artifact = node.existing if node is not None else load_artifact(self.root, stage, signature)
        return artifact.typed_config() if artifact is not None else None

    def _derived(self, spec, cfg: Any, upstream: dict[str, str]) -> dict[str, Node]:
        """The nodes `spec` derives from `cfg` (`StageSpec.derived`): jobs of the plan, requested
        with the node that implies them, each resolved from its own config and upstream roles."""
        if not spec.derived:  # most stages: no upstream configs to look up (from manifests, for reuse)
            return {}
        wanted = spec.derived_for(cfg, {role: self._config_of(registry.stage_of(role), sig)
                                        for role, sig in upstream.items()})
        nodes: dict[str, Node] = {}
        for role, (derived_cfg, roles) in wanted.items():
            stage = registry.stage_of(role)
            up = {name: nodes[r] for name, r in roles.items()}
            signature = stage_signature(registry.get(stage), derived_cfg, {n: u.signature for n, u in up.items()})
            node = self._nodes.get(node_key(stage, signature))
            if node is None:
                node = Node(stage, derived_cfg, signature, tuple(up), {n: u.signature for n, u in up.items()},
                            existing=load_artifact(self.root, stage, signature))
                self._nodes[node.key] = node
            node.requested = True
            nodes[role] = node
        return nodes

    def _upstream_node(self, name: str, point: dict[str, str], in_chain: bool) -> Node:
        explicit = self.parsed.upstream_from.get(name)
        if explicit is None and "" in self.parsed.upstream_from and not in_chain:
            explicit = self.parsed.upstream_from[""]
        if explicit:
            if "/" in explicit or "\\" in explicit or explicit.startswith((".", "~")):
                hint = f" (for that folder: {name}.from={Path(explicit).name})" if _SIGNATURE.fullmatch(Path(explicit).name) else ""
                raise ConfigError(f"`{name}.from={explicit}`: give the 12-hex signature of a `{name}` artifact under "
                                  f"{self.root / name}, not a path{hint}")
            try:
                artifact = load_artifact(self.root, name, explicit)
            except CorruptArtifact as err:
                raise ConfigError(f"`{name}.from={explicit}`: {err}") from None
            if artifact is None:
                raise ConfigError(f"`{name}.from={explicit}`: no complete artifact {self.root / name / explicit}")
            if artifact.manifest.get("stage") != name:
                raise ConfigError(f"`{name}.from={explicit}`: {artifact.path} is a `{artifact.manifest.get('stage')}` "
                                  f"artifact, not a `{name}` one; pick a signature listed under {self.root / name}")
            node = Node(name, None, artifact.signature, tuple(artifact.manifest.get("upstream", {})),
                        dict(artifact.manifest.get("upstream_all", {})), existing=artifact)
            self._nodes.setdefault(node.key, node)
            return node
        node = self._resolve(name, point, {}, in_chain)
        if in_chain or node.cached:
            return node
        latest = find_latest(self.root, name, config_lib.signature_dict(node.cfg))
        if latest is None:
            if self.dry_run:  # show the geometry anyway; the plan says what to run first
                node.missing = True
                self._nodes.setdefault(node.key, node)
                return node
            raise ConfigError(self._missing_upstream(name, node))
        reused = Node(name, node.cfg, latest.signature, node.direct,
                      dict(latest.manifest.get("upstream_all", {})), existing=latest)
        self._nodes.setdefault(reused.key, reused)
        return reused

    def _missing_upstream(self, name: str, node: Node) -> str:
        """What to do about a missing upstream: the artifacts of that stage that exist, each with
        the keys by which it differs from this request, and the command that reuses it."""
        text = (f"missing upstream artifact: stage `{name}` (signature {node.signature}) under {self.root}; "
                f"run `python jobs/submit.py stage={name} root={self.root}` first")
        wanted = json.loads(json.dumps(config_lib.signature_dict(node.cfg), default=str))
        existing = complete_artifacts(self.root, name)
        if not existing:
            return text
        lines = [text + f", or reuse one of the {len(existing)} `{name}` artifact(s) there:"]
        for artifact in existing[:5]:
            have = artifact.manifest.get("signature_config", {})
            keys = sorted(k for k in set(have) | set(wanted) if have.get(k) != wanted.get(k))
            differs = ", ".join(f"{k}={have.get(k)} (asked: {wanted.get(k)})" for k in keys) or "no key"
            lines.append(f"  {artifact.signature}: differs in {differs}; reuse it with: python jobs/submit.py "
                         f"{' '.join(self.parsed.argv)} {name}.from={artifact.signature}")
        return "\n".join(lines)

    def build(self) -> Plan:
        if "" in self.parsed.upstream_from and self.stage_name != "all":
            direct = self.stages[self.stage_name].upstream
            if callable(direct) or len(direct) != 1:
                raise ConfigError(f"`from=` is ambiguous for stage `{self.stage_name}`; write `<upstream>.from=<signature>`")
        in_chain = self.stage_name == "all"
        seen_points: dict[str, list[dict]] = {}
        for point in self.parsed.sweep_points():
            for stage, variant in self._requested():
                node = self._resolve(stage, point, variant, in_chain)
                node.requested = True
                seen_points.setdefault(node.key, []).append(point)
        for key, points in seen_points.items():
            first = points[0]
            self._nodes[key].sweep = {k: v for k, v in first.items() if all(p.get(k) == v for p in points)}
        ordered = _topological(list(self._nodes.values()))
        return Plan(ordered, self.parsed.sweep_keys, self.force, self.default_sweep, self.on_busy,
                    self.grid_source, self.study)


def _topological(nodes: list[Node]) -> list[Node]:
    """Upstream before downstream; stable otherwise."""
    by_key = {n.key: n for n in nodes}
    done: set[str] = set()
    order: list[Node] = []

    def visit(node: Node) -> None:
        if node.key in done:
            return
        for key in node.upstream_keys:
            up = by_key.get(key)
            if up is not None:
                visit(up)
        done.add(node.key)
        order.append(node)

    for node in nodes:
        visit(node)
    return order
