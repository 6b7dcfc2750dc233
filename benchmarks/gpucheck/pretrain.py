"""Pretraining throughput on the device, through the pretrain stage's own pieces.

`pretrain_throughput`: for each (packing.token_budget, model.mask[, model.compile]) the config is
resolved exactly as `stage=pretrain preset=gpt2-small` resolves it; the model, AdamW groups,
gradient clipping and bf16 autocast are the stage's (`PretrainConfig.model_config`, `adamw`,
Accelerate's bf16 = torch.autocast), and batches come from the packing loader over a generated corpus (prefetched to the device, so the
loader's CPU time is not in the step). Every step builds its batch's mask, as the model does.
tokens/s = packs x token_budget / median step time; MFU = tokens/s x `flops_per_token` /
`peak_flops`, both from `stages.pretrain.metrics` (what the stage's metrics log reports), with
the attention FLOPs of the blocks the row's masks keep. The MFU target is judged on the default
row (gpt2-small, graph mask, token_budget 1024), not on the best one. The mask-build share is the
median time of `model.build_mask(batch)` over the median step time.

`pretrain_stage`: the stage's `run()` end to end (loader, Accelerate, metrics log, final save) with
`study=lm`'s pretrain settings (smeared keys, targets-first order, graph mask) for a few steps; its
own tokens/s, MFU and attention density are read back from `metrics.jsonl`. It fails unless the
loss falls. The CPU smoke runs it on the virtual accelerator (`benchmarks.gpucheck.standins`).
"""

from __future__ import annotations

import json
import math
import tempfile
import time
from pathlib import Path

import torch
from torch._dynamo.utils import counters

from benchmarks.gpucheck.runtime import (
    H100_CLASS,
    CheckContext,
    free_device_memory,
    median,
    peak_memory_mib,
    reset_peak_memory,
    stand_in,
    step_times,
    sync,
)
from models.graphlm import GraphLMForTraining
from stages.core.artifacts import Artifact
from stages.core.config import resolve
from stages.core.context import StageContext
from stages.formats.generators import write_synthetic
from stages.packing.loader import PackLoader
from stages.pretrain.artifact import METRICS_LOG
from stages.pretrain.config import PretrainConfig
from stages.pretrain.data import to_device
from stages.pretrain.metrics import flops_per_token, peak_flops
from stages.pretrain.schedule import adamw
from stages.pretrain.train import run

# The full GPT-2 vocabulary (gpt2-small = 124M parameters), whatever `vocab=compact` would keep of
# the generated corpus: the throughput rows measure the canonical shape the MFU target is about.
GPT2_VOCAB = 50257
MFU_TARGET = 0.40  # gpt2-small, bf16, H100-class (see README)
MASK_SHARE_TARGET = 0.10
COMPILE_ROW_S = 60  # time left for a model.compile=true row: an estimate, no GPU run has measured it yet
MFU_FORMULA = ("tokens/s x (6 N + 12 L d T x density) / peak, stages.pretrain.metrics.flops_per_token: N counts "
               "every parameter (the tied embedding once), density is the share of attention blocks the mask keeps")
#: The row the MFU target is judged on: what `stage=pretrain preset=gpt2-small` runs by default.
DEFAULT_ROW = {"preset": "gpt2-small", "packing.token_budget": 1024, "model.mask": "graph"}


def throughput_rows(smoke: bool) -> list[dict]:
    """Rows in priority order: later rows are skipped when the check's time runs out."""
    if smoke:
        return [{"preset": "tiny", "packing.token_budget": 256, "model.mask": mask, "packing.batch_size": 2}
                for mask in ("graph", "causal")]
    rows = [{"preset": "gpt2-small", "packing.token_budget": budget, "model.mask": mask}
            for budget in (1024, 4096) for mask in ("graph", "causal")]
    rows += [{"preset": "gpt2-small", "packing.token_budget": budget, "model.mask": "graph", "model.compile": True}
             for budget in (1024, 4096)]
    return rows


def resolve_row(overrides: dict) -> PretrainConfig:
    """A row's stage config, resolved as `python jobs/submit.py stage=pretrain key=value ...` would."""
    return resolve(PretrainConfig, {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in overrides.items()})


def _measure(ctx: CheckContext, overrides: dict, corpus, peak: float | None) -> dict:
    device = ctx.device
    cfg = resolve_row(overrides)
    stream = iter(PackLoader.from_paths(corpus.graph, corpus.tokens, cfg.packing, cfg.seed))
    batches = [to_device(next(stream), device) for _ in range(4)]
    reset_peak_memory(device)
    torch.manual_seed(cfg.seed)
    model = GraphLMForTraining.from_config(cfg.model_config(GPT2_VOCAB)).to(device).train()
    optimizer = adamw(model, cfg.lr, cfg.weight_decay, cfg.beta2)
    bf16 = ctx.cuda and cfg.precision in ("auto", "bf16")
    cursor = iter(range(10**9))

    def step() -> None:
        batch = batches[next(cursor) % len(batches)]
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = model(batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    started = time.perf_counter()
    warmup, steps = (1, 2) if ctx.smoke else (3, 10)
    step_times(step, device, warmup, 0)
    graphs = counters["stats"]["unique_graphs"]
    times = step_times(step, device, 0, steps)
    compiled_while_timed = counters["stats"]["unique_graphs"] - graphs
    step_s = median(times)
    builds = []
    for batch in batches:
        sync(device)
        start = time.perf_counter()
        model.build_mask(batch)
        sync(device)
        builds.append(time.perf_counter() - start)
    tokens = cfg.packing.batch_size * cfg.packing.token_budget
    tokens_per_s = tokens / step_s
    density = float(torch.stack([model.build_mask(batch).block_density() for batch in batches]).mean())
    per_token = flops_per_token(model.num_parameters(), model.config.n_layers, model.config.d_model, cfg.packing.token_budget,
                                density)
    row = {**overrides, "batch_size": cfg.packing.batch_size, "vocab_size": GPT2_VOCAB, "precision": "bf16" if bf16 else "fp32",
           "params": model.num_parameters(), "tokens_per_step": tokens, "step_ms": round(step_s * 1e3, 2),
           "step_ms_all": [round(t * 1e3, 2) for t in times], "tokens_per_s": round(tokens_per_s, 1),
           "graphs_compiled_while_timed": compiled_while_timed,
           "attention_density": round(density, 4), "mfu": round(tokens_per_s * per_token / peak, 4) if peak else None,
           "peak_memory_mib": peak_memory_mib(device), "mask_build_ms": round(median(builds) * 1e3, 3),
           "mask_build_share": round(median(builds) / step_s, 4),
           "docs_per_pack": [len(spans) for spans in batches[0]["doc_spans"]][:4],
           "seconds": round(time.perf_counter() - started, 1)}
    return row


def _targets(rows: list[dict], device_name: str, peak: float | None) -> dict:
    """The README's targets, judged where they apply (met: None = not applicable here)."""
    targets = {}
    measured = [r for r in rows if "tokens_per_s" in r]
    h100_class = any(word in device_name.upper().split() for word in H100_CLASS)  # the name of the row's device
    default = next((r for r in rows if all(r.get(k) == v for k, v in DEFAULT_ROW.items()) and not r.get("model.compile")),
                   None)
    if not h100_class or peak is None:
        targets["mfu"] = {"target": MFU_TARGET, "row": DEFAULT_ROW, "met": None,
                          "note": "applies to gpt2-small bf16 on an H100-class GPU"}
    else:  # the default row must have been measured: a skipped or failed default row fails the target
        mfu = default.get("mfu") if default else None
        targets["mfu"] = {"target": MFU_TARGET, "row": DEFAULT_ROW, "mfu": mfu,
                          "met": mfu is not None and mfu >= MFU_TARGET}
    shares = [r["mask_build_share"] for r in measured if r["model.mask"] != "causal"]
    worst = max(shares, default=None)
    on_cpu = device_name == "cpu"  # the CPU path builds dense masks: not what the target is about
    targets["mask_build_share"] = {"target": MASK_SHARE_TARGET, "worst": worst,
                                   "met": None if worst is None or on_cpu else worst <= MASK_SHARE_TARGET}
    return targets


def pretrain_throughput(ctx: CheckContext) -> dict:
    """tokens/s, MFU, peak memory and mask-build share of gpt2-small at token_budget 1024/4096."""
    device = ctx.device
    device_name = torch.cuda.get_device_name(0) if ctx.cuda else "cpu"
    peak = peak_flops()
    rows: list[dict] = []
    ctx.save(rows=rows, peak_tflops=peak / 1e12 if peak else None, mfu_formula=MFU_FORMULA)
    with tempfile.TemporaryDirectory() as tmp:
        corpus = write_synthetic(Path(tmp), n_docs=600 if ctx.smoke else 4000, mean_length=300)
        last = 0.0
        for overrides in throughput_rows(ctx.smoke):
            # A row costs about what the previous one did (4x the tokens -> allow 3x); compiling the
            # blocks takes tens of seconds on its own.
            needed = max(3 * last, COMPILE_ROW_S if overrides.get("model.compile") and ctx.cuda else 0)
            if rows and ctx.remaining() < needed:
                rows.append({**overrides, "skipped": f"time budget ({ctx.remaining():.0f}s left)"})
                ctx.save(rows=rows)
                continue
            started = time.perf_counter()
            try:
                rows.append(_measure(ctx, overrides, corpus, peak))
            except torch.cuda.OutOfMemoryError as exc:
                rows.append({**overrides, "error": f"out of memory: {str(exc)[:200]}"})
            free_device_memory(device)  # the row's model and optimizer are gone once _measure returns
            last = time.perf_counter() - started
            ctx.save(rows=rows)
    targets = _targets(rows, device_name, peak)
    ctx.save(targets=targets)
    measured = [r for r in rows if "tokens_per_s" in r]
    summary = ", ".join(f"{r['packing.token_budget']}/{r['model.mask']}{'/compiled' if r.get('model.compile') else ''}: "
                        f"{r['tokens_per_s']:.0f} tok/s" + (f" MFU {r['mfu']:.1%}" if r.get("mfu") else "")
                        for r in measured)
    if not measured:
        return {"status": "fail", "summary": "no configuration was measured"}
    if any("error" in r for r in rows):
        return {"status": "fail", "summary": summary + "; errors: " + "; ".join(r["error"] for r in rows if "error" in r)}
    not_run = [f"{r['packing.token_budget']}/{r['model.mask']}" for r in rows
               if "skipped" in r and not r.get("model.compile")]
    if not_run:  # the model.compile=true rows are extras; the others are what users run
        return {"status": "fail", "summary": summary + f"; not measured for time: {not_run}"}
    recompiled = [f"{r['packing.token_budget']}/{r['model.mask']}" for r in measured if r["graphs_compiled_while_timed"]]
    if recompiled:
        return {"status": "fail", "summary": summary + f"; compiled during the timed steps: {recompiled}"}
    unmet = [name for name, t in targets.items() if t["met"] is False]
    return {"status": "fail" if unmet else "pass", "summary": summary + (f"; below target: {unmet}" if unmet else "")}


def lm_study_settings() -> dict[str, str]:
    """`study=lm`'s pretrain keys that shape a training step (one value of each swept key: the
    graph mask and random-walk packing), without its length and seeds."""
    from jobs import studies

    return {key: value.split(",")[-1] for key, value in studies.load("lm").keys("pretrain").items()
            if key not in ("steps", "warmup_steps", "val_every", "seed")}


def pretrain_stage(ctx: CheckContext) -> dict:
    """The pretrain stage end to end with study=lm's settings; reads back its own tokens/s and MFU."""
    device = ctx.device
    if ctx.smoke:
        overrides = {"preset": "tiny", "packing.token_budget": "256", "packing.batch_size": "2", "steps": "6",
                     "lr": "1e-2"}
    else:
        overrides = {"preset": "gpt2-small", "packing.token_budget": "1024", "steps": "16"}
    overrides.update({**lm_study_settings(), "val_every": "0", "checkpoint_every": "0", "log_every": "2",
                      "val_batches": "1", "warmup_steps": "2", "packing.num_workers": "0"})
    cfg = resolve(PretrainConfig, overrides)
    reset_peak_memory(device)
    with tempfile.TemporaryDirectory() as tmp:
        corpus = write_synthetic(Path(tmp) / "corpus", n_docs=600 if ctx.smoke else 4000, mean_length=300)
        upstream = {"graph": Artifact.unmanaged(corpus.graph, "graph"),
                    "pretokenize": Artifact.unmanaged(corpus.tokens, "pretokenize")}
        stage_ctx = StageContext.standalone(Path(tmp) / "pretrain", upstream, stage="pretrain")
        stage_ctx.log.setLevel("WARNING")
        started = time.perf_counter()
        with stand_in(ctx) as accelerator:
            metrics = run(cfg, stage_ctx)
        seconds = time.perf_counter() - started
        records = [json.loads(line) for line in (stage_ctx.out_dir / METRICS_LOG).read_text().splitlines() if line]
    steps = [r for r in records if "tokens_per_s" in r and not r.get("final")]
    steady = steps[1:] or steps  # the first interval compiles the kernel
    result = {"config": overrides, "metrics": metrics, "seconds": round(seconds, 1),
              "steady_tokens_per_s": median([r["tokens_per_s"] for r in steady]) if steady else None,
              "steady_mfu": median([r["mfu"] for r in steady]) if steady and "mfu" in steady[0] else None,
              "attention_density": median([r["attention_density"] for r in steady]) if steady else None,
              "peak_memory_mib": peak_memory_mib(device), "per_step": steps,
              "host_device_syncs": dict(accelerator.syncs) if accelerator else None}
    ctx.save(**result)
    first, loss = metrics.get("first_train_loss"), metrics.get("final_train_loss")
    if loss is None or not math.isfinite(loss) or not loss < first:
        return {"status": "fail", "summary": f"train loss {first} -> {loss}: it must fall in {metrics.get('steps')} steps"}
    summary = f"{metrics['steps']} steps, loss {first:.3f} -> {loss:.3f}, steady " \
              f"{result['steady_tokens_per_s']:.0f} tok/s, attention density {result['attention_density']}"
    if result["steady_mfu"] is not None:
        summary += f", MFU {result['steady_mfu']:.1%} (stage metrics)"
    elif ctx.cuda and ctx.h100_class:
        return {"status": "fail", "summary": summary + ": no MFU on a device the peak table should know"}
    return {"status": "pass", "summary": summary}
