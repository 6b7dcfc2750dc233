"""`container=path.sif`: every task runs its Python inside `apptainer exec`.

submitit starts each task as `<python> -u -m submitit.core._submit <folder>`; its executors take
that `<python>` as a parameter, so wrapping the interpreter is enough to put the whole job
(every rank, every stage) in the image. The artifact root (logs, code snapshot, caches) and the
code directory are bound into the container, the offline caches are passed explicitly, and
`--nv` exposes the host's NVIDIA driver only when GPUs are requested.
"""

from __future__ import annotations

import shlex
from pathlib import Path

from jobs.offline import offline_env

#: Variables the job needs whatever the container's own %environment says.
OFFLINE_KEYS = ("TIKTOKEN_CACHE_DIR", "HF_HOME", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE")


def apptainer_command(image: str | Path, root: str | Path, repo: str | Path, gpus: bool,
                      binary: str = "apptainer") -> list[str]:
    """The argv prefix that runs the image's `python` with the artifact root and code bound.

    Raises FileNotFoundError when the image does not exist, so that nothing is submitted.
    """
    image = Path(image).expanduser().resolve()
    if not image.is_file():
        raise FileNotFoundError(f"container image {image} does not exist; build it with "
                                "`bash containers/build.sh` or fix `container=`")
    binds = _bind_paths([Path(root), Path(repo)])
    env = offline_env(Path(root))
    values = [f"{key}={env[key]}" for key in OFFLINE_KEYS]
    for value in values + [str(b) for b in binds]:
        if "," in value:  # apptainer splits --env and --bind lists at commas
            raise ValueError(f"container: {value!r} contains a comma, which apptainer cannot bind or pass; "
                             "use a root/code path without commas")
    command = [binary, "exec"]
    if gpus:
        command.append("--nv")
    command += ["--bind", ",".join(str(b) for b in binds), "--env", ",".join(values), str(image), "python"]
    return command


def apptainer_python(image: str | Path, root: str | Path, repo: str | Path, gpus: bool,
                     binary: str = "apptainer") -> str:
    """`apptainer_command` as one shell string, for submitit's `python=` executor parameter."""
    return shlex.join(apptainer_command(image, root=root, repo=repo, gpus=gpus, binary=binary))


def _bind_paths(paths: list[Path]) -> list[Path]:
    """Absolute paths to bind, without those already inside another bound path."""
    resolved = sorted({p.expanduser().resolve() for p in paths}, key=lambda p: (len(p.parts), str(p)))
    kept: list[Path] = []
    for path in resolved:
        if not any(path == k or k in path.parents for k in kept):
            kept.append(path)
    return kept
