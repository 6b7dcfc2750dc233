"""`container=path.sif` command lines and the Apptainer definition's structure.

The apptainer binary is ABSENT on this machine (and it cannot run in this sandbox), so these
tests check the generated command lines and the definition file. One test stands in a small
fake `apptainer` script that parses the same flags and runs the host Python, to show that
submitit really executes a job through the generated prefix.
"""

import inspect
import os
import re
import shlex
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from jobs.container import apptainer_command, apptainer_python

REPO = Path(__file__).resolve().parents[2]
DEF_FILE = REPO / "containers" / "wikigraph.def"


@pytest.fixture
def image(tmp_path):
    sif = tmp_path / "images" / "wikigraph.sif"
    sif.parent.mkdir()
    sif.write_bytes(b"not a real image: apptainer is absent here")
    return sif


def _flag(argv, name):
    return argv[argv.index(name) + 1]


def test_the_apptainer_binary_is_absent_here():
    # If this fails, apptainer is installed: add a test that builds and runs the real image.
    assert shutil.which("apptainer") is None


def test_command_binds_root_and_code_and_passes_the_offline_env(tmp_path, image):
    root, code = tmp_path / "art", tmp_path / "repo"
    argv = apptainer_command(image, root=root, repo=code, gpus=False)
    assert argv[:2] == ["apptainer", "exec"] and "--nv" not in argv
    assert argv[-2:] == [str(image), "python"]
    assert _flag(argv, "--bind").split(",") == [str(root), str(code)]
    env = dict(item.split("=", 1) for item in _flag(argv, "--env").split(","))
    assert env == {"TIKTOKEN_CACHE_DIR": str(root / "cache" / "tiktoken"), "HF_HOME": str(root / "cache" / "hf"),
                   "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}


def test_nv_only_when_gpus_are_requested(tmp_path, image):
    argv = apptainer_command(image, root=tmp_path, repo=tmp_path, gpus=True)
    assert argv[:3] == ["apptainer", "exec", "--nv"]


def test_code_inside_the_root_is_bound_once(tmp_path, image):
    root = tmp_path / "art"
    argv = apptainer_command(image, root=root, repo=root / "runs" / "r1" / "code", gpus=False)
    assert _flag(argv, "--bind") == str(root)


def test_missing_image_fails_early_with_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"does not exist; build it with `bash containers/build.sh`"):
        apptainer_command(tmp_path / "nope.sif", root=tmp_path, repo=tmp_path, gpus=False)


def test_paths_with_commas_are_rejected(tmp_path, image):
    with pytest.raises(ValueError, match="comma"):
        apptainer_command(image, root=tmp_path / "a,b", repo=tmp_path, gpus=False)


def test_submitit_sbatch_script_runs_every_task_through_apptainer(tmp_path, image, monkeypatch):
    import submitit
    from submitit.slurm.slurm import _make_sbatch_string

    # Only the script is generated, nothing is submitted: the executor's check for `srun` on PATH
    # is mocked so this runs on a machine without Slurm (tests/slurm submits for real).
    monkeypatch.setattr(submitit.SlurmExecutor, "affinity", classmethod(lambda cls: 1))
    python = apptainer_python(image, root=tmp_path, repo=tmp_path, gpus=True)
    executor = submitit.SlurmExecutor(folder=tmp_path / "logs", python=python)
    executor.update_parameters(nodes=2, ntasks_per_node=4, gpus_per_node=4)
    script = _make_sbatch_string(command=executor._submitit_command_str, folder=executor.folder,
                                 **executor.parameters)
    srun = next(line for line in script.splitlines() if line.startswith("srun "))
    argv = shlex.split(srun)
    start = argv.index("apptainer")
    assert argv[start:start + 3] == ["apptainer", "exec", "--nv"]
    assert argv[argv.index(str(image)) + 1:argv.index(str(image)) + 5] == ["python", "-u", "-m",
                                                                          "submitit.core._submit"]
    assert "#SBATCH --gpus-per-node=4" in script


FAKE_APPTAINER = """\
#!/usr/bin/env bash
# Test stand-in for apptainer (absent on this machine): accepts `exec [--nv] --bind B --env K=V,..
# IMAGE python ARGS`, checks the image and binds exist, sets the env, runs the host Python.
set -euo pipefail
[[ $1 == exec ]] || exit 90; shift
[[ $1 == --nv ]] && shift
[[ $1 == --bind ]] || exit 91
IFS=, read -ra binds <<< "$2"; for b in "${{binds[@]}}"; do [[ -d $b ]] || exit 92; done; shift 2
[[ $1 == --env ]] || exit 93
IFS=, read -ra pairs <<< "$2"; for p in "${{pairs[@]}}"; do export "$p"; done; shift 2
[[ -f $1 && $2 == python ]] || exit 94; shift 2
export INSIDE_FAKE_CONTAINER=1
exec {python} "$@"
"""


def _job_environment():
    keys = ("INSIDE_FAKE_CONTAINER", "HF_HUB_OFFLINE", "TIKTOKEN_CACHE_DIR", "HF_HOME")
    return {key: os.environ.get(key) for key in keys}


def test_a_submitit_job_runs_through_the_generated_prefix(tmp_path, image):
    import cloudpickle
    import submitit

    # The job's Python cannot import this test module by name: ship the job function by value.
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    fake = tmp_path / "bin" / "apptainer"
    fake.parent.mkdir()
    fake.write_text(FAKE_APPTAINER.format(python=shlex.quote(sys.executable)))
    fake.chmod(0o755)
    root = tmp_path / "art"
    root.mkdir()
    python = apptainer_python(image, root=root, repo=REPO, gpus=False, binary=str(fake))
    executor = submitit.LocalExecutor(folder=root / "logs", python=python)
    executor.update_parameters(timeout_min=2)
    seen = executor.submit(_job_environment).result()
    assert seen == {"INSIDE_FAKE_CONTAINER": "1", "HF_HUB_OFFLINE": "1",
                    "TIKTOKEN_CACHE_DIR": str(root / "cache" / "tiktoken"), "HF_HOME": str(root / "cache" / "hf")}


def _sections(text):
    """Header lines and `%section` bodies of an Apptainer definition file."""
    header, sections, current = [], {}, None
    for line in text.splitlines():
        match = re.match(r"^%(\w+)\s*$", line)
        if match:
            current = match.group(1)
            sections[current] = []
        elif current is None:
            header.append(line)
        else:
            sections[current].append(line)
    return header, {name: textwrap.dedent("\n".join(body)) for name, body in sections.items()}


def _readme_torch_pin() -> str:
    match = re.search(r"pip install -q torch==([0-9.]+)", (REPO / "README.md").read_text())
    assert match, "the README's set-up command pins torch"
    return match.group(1)


def test_definition_has_a_cuda_devel_base_and_every_section():
    header, sections = _sections(DEF_FILE.read_text())
    keys = dict(line.split(":", 1) for line in header if re.match(r"^(Bootstrap|From):", line))
    assert keys["Bootstrap"].strip() == "docker"
    base = keys["From"].strip()
    match = re.fullmatch(r"nvidia/cuda:(\d+\.\d+)\.\d+-cudnn-devel-ubuntu[\d.]+", base)
    assert match, f"{base}: a CUDA devel base (runtime images have no compiler for Triton)"
    assert {"labels", "files", "post", "environment", "test", "runscript", "help"} <= set(sections)
    labels = dict(line.split(None, 1) for line in sections["labels"].split("\n") if line.strip())
    assert labels["wikigraph.base_image"] == base
    assert (labels["wikigraph.torch"], labels["wikigraph.cuda"]) == (_readme_torch_pin(), match.group(1))


def test_image_lint_compiler_torch_pin_pytest_and_requeue():
    """What the first GPU job needs from the image, checked without building it."""
    _, sections = _sections(DEF_FILE.read_text())
    post = sections["post"]
    installed = " ".join(re.findall(r"apt-get install ([^\n]+)", post)).split()
    assert {"gcc", "python3-dev"} <= set(installed), "Triton compiles FlexAttention with the system C compiler"
    assert re.findall(r"pip install torch==([0-9.]+)", post) == [_readme_torch_pin()]
    assert '[dev]"' in post and "pytest" in (REPO / "pyproject.toml").read_text()  # gpu_check runs pytest
    assert "gcc --version" in sections["test"]
    # A preempted job is requeued by the batch script on the host, or the image must carry scontrol.
    from jobs import entry, slurm

    trap = " ".join(slurm._requeue_trap(Path("/root/runs/r/code")))
    requeues_outside = "scontrol requeue" in trap and "scontrol" not in inspect.getsource(entry)
    assert requeues_outside or "slurm-client" in installed


def test_definition_copies_the_project_and_installs_it():
    _, sections = _sections(DEF_FILE.read_text())
    sources = [line.split()[0] for line in sections["files"].split("\n") if line.strip()]
    assert {"pyproject.toml", "jobs", "stages", "models"} <= set(sources)
    assert all((REPO / source).exists() for source in sources), "every %files source must exist in the repository"
    assert "pip install \"/opt/wikigraph[dev]\"" in sections["post"]
    environment = sections["environment"]
    for key in ("HF_HUB_OFFLINE=1", "TRANSFORMERS_OFFLINE=1", "HF_DATASETS_OFFLINE=1", "TIKTOKEN_CACHE_DIR=", "HF_HOME="):
        assert f"export {key}" in environment


def test_definition_test_section_imports_every_stage():
    # %test is a bash script feeding Python on stdin; run that Python here, outside any container.
    _, sections = _sections(DEF_FILE.read_text())
    match = re.search(r"python - <<'PY'\n(.*?)\nPY", sections["test"], re.DOTALL)
    assert match, "%test should run an inline Python check"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("WIKIGRAPH_EXTRA_STAGES", None)  # only the built-in stages exist in the image
    proc = subprocess.run([sys.executable, "-c", match.group(1)], capture_output=True, text=True, env=env,
                          timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    from stages.core import registry

    names = [name for name, spec in registry.all_stages().items() if spec.run.startswith("stages.")]
    assert proc.stdout.strip().endswith("stages: " + ", ".join(names))
