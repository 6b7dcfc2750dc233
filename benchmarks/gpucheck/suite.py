"""The CUDA test suite (`pytest -m gpu`) as a check: counts from its JUnit XML report."""

from __future__ import annotations

import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

from benchmarks.gpucheck.runtime import CheckContext

REPO = Path(__file__).resolve().parents[2]
MARKER = "pytest.mark.gpu"


def gpu_test_files() -> list[str]:
    """Test files that mark tests `gpu`: only these are collected, so a module elsewhere in tests/
    that cannot be imported on this node (a missing optional package) does not fail the check."""
    return sorted(str(p.relative_to(REPO)) for p in (REPO / "tests").rglob("test_*.py") if MARKER in p.read_text())


def pytest_gpu(ctx: CheckContext) -> dict:
    """Run every test marked `gpu`; on CUDA all must pass (a skip there means a wrong guard)."""
    files = gpu_test_files()
    if not files:
        return {"status": "fail", "summary": f"no test file under tests/ uses {MARKER}"}
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "junit.xml"
        command = [sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider",
                   f"--junitxml={report}", *files]
        try:
            proc = subprocess.run(command, check=False, cwd=REPO, capture_output=True, text=True,
                                  timeout=max(ctx.remaining() - 5, 10))
        except subprocess.TimeoutExpired as exc:
            output = "".join(part.decode() if isinstance(part, bytes) else part or ""
                             for part in (exc.stdout, exc.stderr))
            ctx.save(command=" ".join(["python -m pytest -m gpu", *files]), output=output[-3000:])
            return {"status": "timeout", "summary": "pytest did not finish within the check's budget (see output)"}
        tail = (proc.stdout + proc.stderr)[-3000:]
        if not report.is_file():
            return {"status": "error", "summary": f"pytest exited {proc.returncode} without a report", "output": tail}
        suites = ET.parse(report).getroot()
        suite = suites if suites.tag == "testsuite" else suites.find("testsuite")
        counts = {key: int(suite.get(key, 0)) for key in ("tests", "failures", "errors", "skipped")}
        bad = [f"{case.get('classname')}::{case.get('name')}" for case in suite.iter("testcase")
               if case.find("failure") is not None or case.find("error") is not None]
    ran = counts["tests"] - counts["skipped"]
    ctx.save(command=" ".join(["python -m pytest -m gpu", *files]), exit_code=proc.returncode, counts=counts, failed=bad, output=tail)
    passed = ran - counts["failures"] - counts["errors"]
    summary = f"{counts['tests']} selected: {passed} passed, {counts['failures']} failed, " \
              f"{counts['errors']} errors, {counts['skipped']} skipped"
    if counts["failures"] or counts["errors"] or proc.returncode not in (0, 5):
        return {"status": "fail", "summary": summary + (f": {', '.join(bad[:5])}" if bad else "")}
    if not ctx.cuda:
        return {"status": "n/a", "summary": summary + " (no CUDA here: skipping is the expected result)"}
    if counts["tests"] == 0 or counts["skipped"]:
        return {"status": "fail", "summary": summary + " (on CUDA every gpu test must run)"}
    return {"status": "pass", "summary": summary}
