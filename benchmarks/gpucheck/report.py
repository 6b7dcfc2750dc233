"""gpu_check.json (everything) and gpu_check.md (a short report) from one run's results."""

from __future__ import annotations

from pathlib import Path

from benchmarks.gpucheck.runtime import PASSING, write_json


def _fmt(value, spec: str = "") -> str:
    if value is None:
        return "-"
    return format(value, spec) if spec else str(value)


def _table(header: list[str], rows: list[list]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return lines + [""]


def _correctness(check: dict) -> list[str]:
    rows = []
    for r in check.get("rows", []):
        cells = [r["mask"], r["dtype"]]
        if "skipped" in r:
            rows.append([*cells, r["skipped"], "", "", "skipped"])
            continue
        for key in ("output", "grad_input", "grad_qkv_weight"):
            err = r.get(key)
            cells.append(f"{err['flex_err']:.1e} / {err['sdpa_err']:.1e}" if err else "not run")
        cells.append("ok" if all(v["ok"] for v in r.values() if isinstance(v, dict)) else "**out of tolerance**")
        rows.append(cells)
    tol = check.get("tolerance", {})
    lines = [(f"Normalised max error vs float64 dense reference, flex / dense SDPA at the same precision. "
              f"Tolerance: fp32 {tol.get('fp32')}, bf16 {tol.get('bf16')}, or within 2x dense SDPA. "
              f"Shape {check.get('shape')}."), ""]
    return lines + _table(["mask", "dtype", "output", "grad input", "grad qkv weight", "verdict"], rows)


def _stability(check: dict) -> list[str]:
    rows = [[r["variant"], r["graphs_after_warmup"], r["new_graphs_after_warmup"], r["graph_breaks"],
             " ".join(map(str, r["max_docs_per_pack"])), "ok" if r["ok"] else "**recompiles or breaks**"]
            for r in check.get("rows", [])]
    lines = [(f"Method: {check.get('method', '-')}; preset {check.get('preset')}, token_budget "
              f"{check.get('token_budget')}, batch {check.get('batch_size')}."), ""]
    lines += _table(["variant", "graphs in warm-up", "new graphs after", "graph breaks", "docs per batch (per step)",
                     "verdict"], rows)
    for r in check.get("rows", []):
        for message in r.get("recompile_messages", [])[:2]:
            reason = " ".join(line.strip() for line in message.splitlines()[:3])  # function, then the failed guard
            lines.append(f"- recompile ({r['variant']}): `{reason[:300]}`")
    return lines + [""]


def _throughput(check: dict) -> list[str]:
    rows = []
    for r in check.get("rows", []):
        name = [r["packing.token_budget"], r["model.mask"], "yes" if r.get("model.compile") else "no"]
        if "tokens_per_s" not in r:
            rows.append(name + [r.get("skipped") or r.get("error")] + [""] * 6)
            continue
        mfu = f"{r['mfu']:.1%}" if r.get("mfu") is not None else "-"
        rows.append(name + [f"{r['tokens_per_s']:,.0f}", mfu, _fmt(r["peak_memory_mib"]), r["mask_build_ms"],
                            f"{r['mask_build_share']:.1%}", f"{r['batch_size']} x {r['packing.token_budget']}",
                            r.get("graphs_compiled_while_timed", "-")])
    lines = [(f"MFU = {check.get('mfu_formula', '-')}; peak bf16 TFLOP/s: {_fmt(check.get('peak_tflops'))}. "
              "Mask share = median mask build / median step (the step includes the build)."), ""]
    lines += _table(["token_budget", "mask", "compile", "tokens/s", "MFU", "peak MiB", "mask build ms",
                     "mask share", "batch", "compiles while timed"], rows)
    for name, target in check.get("targets", {}).items():
        verdict = {True: "met", False: "**not met**", None: "not applicable here"}[target["met"]]
        value = target.get("best", target.get("worst"))
        lines.append(f"- target {name}: {target['target']} -> measured {_fmt(value)}: {verdict}"
                     + (f" ({target['note']})" if target.get("note") else ""))
    return lines + [""]


def _stage(check: dict) -> list[str]:
    metrics = check.get("metrics", {})
    return [(f"config {check.get('config')}; stage metrics: tokens/s {metrics.get('tokens_per_s')}, "
             f"mfu {metrics.get('mfu', '-')}, steady tokens/s {check.get('steady_tokens_per_s')}, "
             f"steady MFU {check.get('steady_mfu')}, peak MiB {check.get('peak_memory_mib')}"), ""]


def _qa(check: dict) -> list[str]:
    rows = [[r["segments"], "yes" if r["checkpoint_segments"] else "no",
             r.get("examples_per_s", r.get("skipped") or r.get("error")), _fmt(r.get("segments_per_s")),
             _fmt(r.get("step_ms")), _fmt(r.get("peak_memory_mib"))] for r in check.get("rows", [])]
    lines = [f"shape {check.get('shape')}; precision {check.get('precision')}", ""]
    return lines + _table(["segments", "checkpoint_segments", "examples/s", "segments/s", "step ms", "peak MiB"], rows)


def _pytest(check: dict) -> list[str]:
    lines = [f"`{check.get('command', 'pytest -m gpu tests')}`: {check.get('counts')}"]
    lines += [f"- failed: `{name}`" for name in check.get("failed", [])]
    return lines + [""]


BASE_KEYS = {"name", "description", "seconds", "budget_s", "status", "summary"}
SECTIONS = {"flex_correctness": _correctness, "compile_stability": _stability, "pretrain_throughput": _throughput,
            "pretrain_stage": _stage, "qa_memxlnet": _qa, "pytest_gpu": _pytest}


def render_markdown(run: dict) -> str:
    checks = run["checks"]
    device = next((c.get("device") for c in checks if c["name"] == "device" and c.get("device")), {})
    lines = [f"# GPU check: {device.get('name', 'device unknown')}", "",
             (f"{run['mode']} run started {run['started_utc']}, {run.get('total_seconds', 0):.0f}s of a "
              f"{run['total_budget_s']}s budget. torch {device.get('torch', '-')}, CUDA {device.get('cuda', '-')}, "
              f"bf16 peak {device.get('peak_bf16_tflops') or '-'} TFLOP/s ({device.get('peak_source', '-')})."), ""]
    lines += _table(["check", "status", "seconds / budget", "summary"],
                    [[c["name"], c["status"] if c["status"] in PASSING else f"**{c['status']}**",
                      f"{c['seconds']:.0f} / {c.get('budget_s', '-')}", c.get("summary", "").replace("|", "/")]
                     for c in checks])
    for check in checks:
        render = SECTIONS.get(check["name"])
        if render is None or not set(check) - BASE_KEYS:  # nothing measured (e.g. skipped for time)
            continue
        lines += [f"## {check['name']}", "", check["description"], ""]
        try:
            lines += render(check)
        except (KeyError, TypeError) as exc:  # a partial result (timeout, crash) may lack fields
            lines += [f"(partial result, not rendered: {type(exc).__name__} {exc})", ""]
        if check.get("traceback"):
            lines += ["```", check["traceback"][-1500:], "```", ""]
    return "\n".join(lines)


def write_reports(run: dict, out: Path) -> None:
    write_json(out / "gpu_check.json", run)
    (out / "gpu_check.md").write_text(render_markdown(run))
