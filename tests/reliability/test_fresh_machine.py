"""The README's test command works on a machine without Slurm (issue 11, fresh machine).

The unit tests are run in a subprocess whose PATH has every Slurm command removed, as on a
laptop or a CI runner without a cluster. tests/slurm is not run here: it skips without a
cluster, and fails under CI=true (tests/slurm/conftest.py).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SLURM_COMMANDS = {"srun", "sbatch", "sinfo", "squeue", "sacct", "scontrol", "scancel", "salloc", "sattach", "sstat"}


def path_without_slurm(tmp_path: Path) -> str:
    """A PATH of symlinks to every executable on the current PATH except Slurm's commands."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for entry in os.environ.get("PATH", "").split(os.pathsep):
        if not os.path.isdir(entry):
            continue
        for name in os.listdir(entry):
            link = bin_dir / name
            if name not in SLURM_COMMANDS and not link.exists():
                link.symlink_to(Path(entry) / name)
    return str(bin_dir)


def test_container_unit_tests_pass_without_slurm_commands(tmp_path):
    env = {**os.environ, "PATH": path_without_slurm(tmp_path), "CI": ""}
    check = subprocess.run(["bash", "-c", "command -v srun sbatch sinfo"], env=env, capture_output=True, text=True,
                           check=False)
    assert check.stdout.strip() == "", "Slurm commands are still on PATH"
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "tests/unit/test_container.py", "-k", "sbatch or prefix"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
