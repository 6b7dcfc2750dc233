"""benchmarks/gpu_check.py: the dry run CI runs, check isolation, and the CPU smoke of every check.

The real checks need CUDA; here `--cpu-smoke` runs each one's logic at tiny shapes on CPU
(FlexAttention forward only: it has no CPU backward), so on a GPU only CUDA itself is new.
"""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from benchmarks import gpu_check
from benchmarks.gpu_check import CHECKS, Check
from benchmarks.gpucheck.report import SECTIONS
from stages.pretrain.metrics import peak_bf16_tflops

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "gpu_check.py"
ENV = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}


def test_dry_run_lists_every_check_and_exits_zero():
    proc = subprocess.run([sys.executable, str(SCRIPT), "--dry-run"], check=False, env=ENV, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    for check in CHECKS:
        assert check.name in proc.stdout
    assert f"<= {gpu_check.TOTAL_BUDGET_S}s" in proc.stdout


def test_check_budgets_fit_the_ten_minute_run():
    assert sum(check.budget_s for check in CHECKS) <= gpu_check.TOTAL_BUDGET_S < 10 * 60


def test_unknown_check_name_is_a_usage_error(capsys):
    assert gpu_check.main(["--dry-run", "--checks", "device,warp_drive"]) == 2
    assert "warp_drive" in capsys.readouterr().err


def test_without_cuda_a_real_run_refuses_and_names_the_alternatives(capsys, tmp_path):
    pytest.importorskip("torch")
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    assert gpu_check.main(["--out", str(tmp_path)]) == 2
    assert "--cpu-smoke" in capsys.readouterr().err


def test_missing_requirements_reads_the_project_dependencies():
    requirements = gpu_check.project_requirements()
    assert any(r.startswith("submitit") for r in requirements) and any(r.startswith("pytest") for r in requirements)
    assert gpu_check.missing_requirements() == []  # this environment has the project installed


@pytest.mark.parametrize(("name", "entry"), [
    ("NVIDIA H100 80GB HBM3", ("H100", 989.0)), ("NVIDIA H100 PCIe", ("H100 PCIe", 756.0)),
    ("NVIDIA H200", ("H200", 989.0)), ("NVIDIA A100-SXM4-80GB", ("A100", 312.0)),
    ("NVIDIA A10G", None), ("Tesla V100-SXM2-32GB", None),
])
def test_peak_table_matches_whole_words(name, entry):
    assert peak_bf16_tflops(name) == entry


# Fake checks, run by the real parent in real subprocesses (targets are importable by name).
def _passes(ctx):
    return {"status": "pass", "summary": "fine"}


def _raises(ctx):
    ctx.save(rows=[{"measured": 1}])
    raise RuntimeError("CUDA error: an illegal memory access was encountered")


def _hangs(ctx):
    ctx.save(rows=[{"measured": 2}])
    time.sleep(600)


def _dies(ctx):
    os._exit(7)


def test_each_check_is_isolated_failures_are_reported_and_the_rest_run(monkeypatch, tmp_path):
    here = "tests.unit.test_gpu_check"
    fakes = (Check("raises", f"{here}:_raises", 60, 60, "raises"), Check("hangs", f"{here}:_hangs", 15, 15, "hangs"),
             Check("dies", f"{here}:_dies", 60, 60, "dies"), Check("passes", f"{here}:_passes", 60, 60, "passes"))
    monkeypatch.setattr(gpu_check, "CHECKS", fakes)
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    assert gpu_check.main(["--cpu-smoke", "--out", str(tmp_path)]) == 1
    run = json.loads((tmp_path / "gpu_check.json").read_text())
    status = {c["name"]: c for c in run["checks"]}
    assert [c["name"] for c in run["checks"]] == ["raises", "hangs", "dies", "passes"]
    assert status["raises"]["status"] == "error" and "illegal memory access" in status["raises"]["summary"]
    assert status["raises"]["rows"] == [{"measured": 1}]  # partial results survive
    # Killed at its budget (it sleeps 600 s), its saved rows kept.
    assert status["hangs"]["status"] == "timeout" and status["hangs"]["rows"] == [{"measured": 2}]
    assert status["dies"]["status"] == "error" and "exited 7" in status["dies"]["summary"]
    assert status["passes"]["status"] == "pass"
    report = (tmp_path / "gpu_check.md").read_text()
    assert "**timeout**" in report and "**error**" in report


def _skips(ctx):
    return {"status": "skipped", "summary": "not run: time budget"}


def _not_applicable(ctx):
    return {"status": "n/a", "summary": "needs CUDA"}


def test_a_skipped_check_fails_the_run_and_one_that_does_not_apply_does_not(monkeypatch, tmp_path):
    here = "tests.unit.test_gpu_check"
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    monkeypatch.setattr(gpu_check, "CHECKS", (Check("na", f"{here}:_not_applicable", 60, 60, "n/a"),))
    assert gpu_check.main(["--cpu-smoke", "--out", str(tmp_path / "a")]) == 0
    monkeypatch.setattr(gpu_check, "CHECKS", (Check("na", f"{here}:_not_applicable", 60, 60, "n/a"),
                                              Check("skips", f"{here}:_skips", 60, 60, "skips")))
    assert gpu_check.main(["--cpu-smoke", "--out", str(tmp_path / "b")]) == 1


def test_cpu_smoke_runs_every_check_end_to_end(tmp_path):
    """Every check's logic on CPU: nothing crashes or times out, the report is complete."""
    proc = subprocess.run([sys.executable, str(SCRIPT), "--cpu-smoke", "--out", str(tmp_path)], check=False,
                          env=ENV, capture_output=True, text=True, timeout=gpu_check.SMOKE_TOTAL_BUDGET_S + 120)
    assert proc.returncode in (0, 1), proc.stderr[-3000:]
    run = json.loads((tmp_path / "gpu_check.json").read_text())
    checks = {c["name"]: c for c in run["checks"]}
    assert list(checks) == [c.name for c in CHECKS]
    log = (tmp_path / "gpu_check.log").read_text()[-3000:]
    for name, check in checks.items():
        assert check["status"] in ("pass", "n/a"), (name, check.get("summary"), check.get("traceback"), log)
    assert proc.returncode == 0
    # Only what cannot apply to a CPU is n/a: every path users run has run.
    assert {name for name, check in checks.items() if check["status"] == "n/a"} == {"device", "pytest_gpu"}
    assert checks["pytest_gpu"]["counts"]["tests"] > 0  # the gpu tests exist and skip cleanly here
    assert len(checks["flex_correctness"]["rows"]) == 4
    stability = checks["compile_stability"]["rows"][0]
    assert stability["graphs_after_warmup"] > 0 and len(set(stability["max_docs_per_pack"])) > 1
    assert all("tokens_per_s" in row for row in checks["pretrain_throughput"]["rows"])
    assert checks["pretrain_stage"]["metrics"]["steps"] == 6
    assert checks["pretrain_stage"]["config"]["model.smear_keys"] == "true"  # study=lm's settings
    assert checks["qa_stage"]["evaluate"]["f1"] >= 0 and checks["qa_stage"]["config"]["precision"] == "bf16"
    assert checks["two_ranks"]["metrics"]["world_size"] == 2
    assert all("examples_per_s" in row for row in checks["qa_memxlnet"]["rows"])
    report = (tmp_path / "gpu_check.md").read_text()
    assert all(f"## {name}" in report for name in SECTIONS)


def _fake_bin(tmp_path) -> Path:
    """A PATH entry with a working `nvidia-smi` and a `python` whose torch is a CPU build: CUDA
    cannot exist here, so the wrapper's decisions are observed through the calls it makes."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "nvidia-smi").write_text("#!/bin/sh\necho 'GPU 0: NVIDIA H100 80GB HBM3'\n")
    calls = tmp_path / "calls.txt"
    (bin_dir / "fakepython").write_text(f"""#!/bin/sh
echo "$*" >> {calls}
case "$*" in
  *"torch.version.cuda"*) exit 1 ;;
  *"torch.__version__"*) echo 2.13.0 ;;
  *"--missing-requirements"*) echo "submitit>=1.5 zstandard>=0.22" ;;
  *"pip install"*"zstandard"*) exit 1 ;;
esac
""")
    for path in bin_dir.iterdir():
        path.chmod(0o755)
    return bin_dir


def test_wrapper_installs_a_cuda_torch_and_missing_requirements_then_runs_the_check(tmp_path):
    bin_dir = _fake_bin(tmp_path)
    env = {**ENV, "PATH": f"{bin_dir}:{os.environ['PATH']}", "PYTHON": str(bin_dir / "fakepython")}
    proc = subprocess.run(["bash", str(REPO / "benchmarks" / "gpu_check.sh"), "--wheelhouse", "/wheels", "--out", "x"],
                          check=False, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    calls = (tmp_path / "calls.txt").read_text().splitlines()
    assert "-m pip uninstall -q -y torch" in calls
    assert "-m pip install -q --no-index --find-links /wheels torch==2.13.0" in calls
    assert "-m pip install -q --no-index --find-links /wheels submitit>=1.5" in calls
    assert "could not install zstandard>=0.22; continuing" in proc.stderr
    assert calls[-1] == "benchmarks/gpu_check.py --out x"


def test_wrapper_refuses_without_a_gpu(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "nvidia-smi").write_text("#!/bin/sh\necho 'No devices were found'; exit 6\n")
    (bin_dir / "nvidia-smi").chmod(0o755)
    env = {**ENV, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    proc = subprocess.run(["bash", str(REPO / "benchmarks" / "gpu_check.sh")], check=False, env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "no NVIDIA GPU visible" in proc.stderr


def test_full_size_settings_resolve_and_the_qa_base_model_runs_a_segment():
    """What only the GPU run uses, checked here: the gpt2-small rows resolve to the stage's preset,
    and MemXLNet at the qa preset=base shape takes a full 384-token segment with 16 memory tokens."""
    import torch

    from benchmarks.gpucheck.pretrain import resolve_row, throughput_rows
    from benchmarks.gpucheck.qa import build_model, time_step_major_steps
    from models.memxlnet import TimeStepMajorRunner

    rows = throughput_rows(smoke=False)
    assert {(r["packing.token_budget"], r["model.mask"]) for r in rows} >= {
        (1024, "graph"), (1024, "causal"), (4096, "graph"), (4096, "causal")}
    for row in rows:
        cfg = resolve_row(row)
        shape = cfg.model_config(50257)
        assert (cfg.packing.batch_size, shape.n_layers, shape.d_model, shape.compile) == (
            16, 12, 768, bool(row.get("model.compile")))
    model, cfg, settings = build_model(smoke=False)
    assert (cfg.memory.num_tokens, settings["seq_len"], settings["segments"]) == (16, 384, [2, 4, 6])
    assert model.config.n_layer == 12 and model.config.d_model == 768
    steps = time_step_major_steps(1, 1, settings["seq_len"], settings["read_ids"], settings["write_ids"],
                                  settings["vocab"], torch.device("cpu"))
    with torch.no_grad():
        out = TimeStepMajorRunner(model.eval())(steps, 1)
    assert out[0]["start_logits"].shape == (1, 384) and torch.isfinite(out[0]["start_logits"]).all()
