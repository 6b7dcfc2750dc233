"""Run directories: `{root}/runs/{run_id}/` with the plan, resolved configs, logs and job states.

`status`, `logs` and `cancel` read these. Each job entry records its executor job id, so
`status` can ask Slurm (or read the recorded local outcome) without any database.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import json
import os
import secrets
from pathlib import Path

from omegaconf import OmegaConf

from stages.core.artifacts import write_json_atomic


def new_run_id(stage: str) -> str:
    now = datetime.datetime.now(datetime.timezone.utc)
    return f"{now:%Y%m%d-%H%M%S}-{stage}-{secrets.token_hex(2)}"


@dataclasses.dataclass
class RunDir:
    """One submission's bookkeeping directory."""

    path: Path

    @classmethod
    def create(cls, root: Path, stage: str) -> RunDir:
        path = Path(root) / "runs" / new_run_id(stage)
        (path / "logs").mkdir(parents=True, exist_ok=True)
        (path / "configs").mkdir(exist_ok=True)
        # Jobs unpickle their callable from logs/: nobody else may write there (whatever the umask).
        for folder in (path, path / "logs", path / "configs"):
            folder.chmod(0o755)
        return cls(path)

    @property
    def run_id(self) -> str:
        return self.path.name

    @property
    def logs(self) -> Path:
        return self.path / "logs"

    @property
    def info_path(self) -> Path:
        return self.path / "run.json"

    def write_config(self, stage: str, signature: str, cfg) -> Path:
        """The resolved config of one node, as YAML (what the job actually ran with)."""
        path = self.path / "configs" / f"{stage}-{signature}.yaml"
        path.write_text(OmegaConf.to_yaml(OmegaConf.structured(cfg)))
        return path

    def read(self) -> dict:
        return json.loads(self.info_path.read_text()) if self.info_path.is_file() else {}

    def write(self, info: dict) -> None:
        write_json_atomic(self.info_path, info)

    def update_job(self, key: str, **fields) -> None:
        info = self.read()
        info.setdefault("jobs", {}).setdefault(key, {}).update(fields)
        self.write(info)


@contextlib.contextmanager
def owner_only_writes():
    """Files and folders created meanwhile (submitit's job folder and pickles) are writable by
    their owner only, so no other user can swap the callable a job unpickles."""
    old = os.umask(0)
    os.umask(old | 0o022)
    try:
        yield
    finally:
        os.umask(old)


def list_runs(root: Path) -> list[RunDir]:
    runs_dir = Path(root) / "runs"
    if not runs_dir.is_dir():
        return []
    return [RunDir(p) for p in sorted(runs_dir.iterdir()) if (p / "run.json").is_file()]


def find_run(root: Path, run_id: str) -> RunDir:
    matches = [r for r in list_runs(root) if r.run_id == run_id or r.run_id.startswith(run_id)]
    if len(matches) != 1:
        known = ", ".join(r.run_id for r in list_runs(root)[-5:]) or "none"
        raise FileNotFoundError(f"no unique run `{run_id}` under {Path(root) / 'runs'}; recent runs: {known}")
    return matches[0]
