"""MemXLNet on the device: examples/s and peak memory per segment count, with and without
`checkpoint_segments`, at the `qa preset=base` shape with random init (no weights are downloaded).

The shape is XLNet-base (12 layers, d_model 768, 12 heads, d_inner 3072, 32k SentencePiece vocab)
plus the preset's memory tokens; sequence length, batch size, memory settings and the segment
curriculum come from `QAConfig.PRESETS["base"]` via the stage's own `resolve` and `MemoryConfig.with_tokens`.
Batches are time-step-major, as `stages.qa.batching.document_batch` lays them out: step t holds
segment t of every document; each segment carries its [MEM_READ_i]/[MEM_WRITE_i] tokens and ends
with CLS. One training step is the stage's: `TimeStepMajorRunner` -> `global_softmax_loss` ->
backward -> AdamW, at the stage's default precision (bf16 autocast on CUDA). It fails on a row
not measured, a non-finite loss, or (on CUDA) `checkpoint_segments` not lowering peak memory.

`qa_stage`: the qa stage itself (tiny model, generated documents) through its end-of-epoch
evaluation and final scoring, then the `evaluate` stage on its artifact, at bf16. The CPU smoke
runs it on the virtual accelerator (`benchmarks.gpucheck.standins`).
"""

from __future__ import annotations

import math
import time
from functools import partial

import torch
from transformers import XLNetConfig

from benchmarks.gpucheck.runtime import (
    CheckContext,
    free_device_memory,
    median,
    peak_memory_mib,
    reset_peak_memory,
    stand_in,
    step_times,
)
from models.memxlnet import TINY_XLNET, MemXLNetForQA, TimeStepMajorRunner, global_softmax_loss
from stages.core.config import resolve
from stages.core.devices import mixed_precision
from stages.qa.config import QAConfig

# xlnet-base-cased's published shape; the weights themselves are never needed here.
XLNET_BASE_SHAPE = {"d_model": 768, "n_layer": 12, "n_head": 12, "d_inner": 3072, "dropout": 0.1, "mem_len": None}
XLNET_VOCAB = 32000


def time_step_major_steps(n_segments: int, batch: int, seq_len: int, read_ids: list[int], write_ids: list[int],
                          vocab: int, device: torch.device, seed: int = 0) -> list[dict]:
    """`n_segments` steps of `batch` documents: memory tokens first, question/context, write tokens, CLS last."""
    gen = torch.Generator().manual_seed(seed)
    n_mem, cls = len(read_ids), seq_len - 1
    steps = []
    for _ in range(n_segments):
        ids = torch.randint(10, vocab - 2 * n_mem - 10, (batch, seq_len), generator=gen)
        if n_mem:
            ids[:, :n_mem] = torch.tensor(read_ids)
            ids[:, cls - n_mem:cls] = torch.tensor(write_ids)
        p_mask = torch.zeros(batch, seq_len, dtype=torch.bool)
        p_mask[:, : n_mem + 1] = True
        p_mask[:, cls - n_mem:cls] = True
        start = torch.randint(n_mem + 1, cls - n_mem - 8, (batch,), generator=gen)
        steps.append({
            "doc_index": torch.arange(batch), "input_ids": ids, "attention_mask": torch.ones(batch, seq_len),
            "token_type_ids": torch.zeros(batch, seq_len, dtype=torch.long), "p_mask": p_mask,
            "cls_index": torch.full((batch,), cls), "start_positions": start, "end_positions": start + 3,
            "has_answer": torch.rand(batch, generator=gen) < 0.5,
        })
    return [{k: v.to(device) for k, v in step.items()} for step in steps]


def _train_step(runner: TimeStepMajorRunner, optimizer, steps: list[dict], n_docs: int, all_occurrences: bool,
                losses: list[float], bf16: bool) -> None:
    """One stage training step over a time-step-major document batch."""
    with torch.autocast(steps[0]["input_ids"].device.type, dtype=torch.bfloat16, enabled=bf16):
        outputs = runner(steps, n_docs)
    loss = global_softmax_loss(outputs, steps, n_docs, all_occurrences)
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    losses.append(float(loss.detach()))


def build_model(smoke: bool) -> tuple[MemXLNetForQA, QAConfig, dict]:
    """The random-init model at the `qa preset=base` shape (tiny in the smoke) and its settings."""
    if smoke:
        cfg = resolve(QAConfig, {"preset": "base", "memory.num_tokens": "4"})
        shape, vocab_base, seq_len, batch, segments = dict(TINY_XLNET), 1000, 64, 2, [2, 4]
    else:
        cfg = resolve(QAConfig, {"preset": "base"})
        shape, vocab_base, seq_len, batch = XLNET_BASE_SHAPE, XLNET_VOCAB, cfg.max_seq_length, cfg.batch_size
        segments = sorted(set(cfg.curriculum.segments))
    n_mem = cfg.memory.num_tokens
    read_ids = list(range(vocab_base, vocab_base + n_mem))
    write_ids = list(range(vocab_base + n_mem, vocab_base + 2 * n_mem))
    torch.manual_seed(cfg.seed)
    model = MemXLNetForQA(XLNetConfig(vocab_size=vocab_base + 2 * n_mem, **shape), cfg.memory.with_tokens(read_ids, write_ids))
    settings = {"shape": shape, "vocab": vocab_base + 2 * n_mem, "seq_len": seq_len, "documents_per_batch": batch,
                "segments": segments, "read_ids": read_ids, "write_ids": write_ids}
    return model, cfg, settings


def qa_memxlnet(ctx: CheckContext) -> dict:
    """examples/s and peak memory at 2/4/6 segments, with and without checkpoint_segments."""
    device = ctx.device
    model, cfg, settings = build_model(ctx.smoke)
    model = model.to(device).train()
    n_mem, vocab, seq_len, batch = cfg.memory.num_tokens, settings["vocab"], settings["seq_len"], settings["documents_per_batch"]
    read_ids, write_ids, shape = settings["read_ids"], settings["write_ids"], settings["shape"]
    segments, (warmup, steps) = settings["segments"], ((1, 1) if ctx.smoke else (2, 4))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.learning_rate)
    rows: list[dict] = []
    bf16 = mixed_precision(cfg.precision) == "bf16"
    ctx.save(shape={**shape, "vocab": vocab, "memory_tokens": n_mem, "seq_len": seq_len,
                    "documents_per_batch": batch}, precision="bf16 autocast" if bf16 else "fp32", rows=rows)
    last = 0.0
    for checkpointing in (False, True):
        for n_segments in segments:
            config = {"segments": n_segments, "checkpoint_segments": checkpointing}
            if rows and ctx.remaining() < 2 * last:
                rows.append({**config, "skipped": f"time budget ({ctx.remaining():.0f}s left)"})
                ctx.save(rows=rows)
                continue
            started = time.perf_counter()
            batch_steps = time_step_major_steps(n_segments, batch, seq_len, read_ids, write_ids, vocab, device)
            runner = TimeStepMajorRunner(model, checkpoint_segments=checkpointing)
            losses: list[float] = []
            step = partial(_train_step, runner, optimizer, batch_steps, batch, cfg.all_answer_occurrences, losses, bf16)
            reset_peak_memory(device)
            try:
                times = step_times(step, device, warmup, steps)
            except torch.cuda.OutOfMemoryError as exc:
                rows.append({**config, "error": f"out of memory: {str(exc)[:200]}"})
                free_device_memory(device)
                continue
            step_s = median(times)
            rows.append({**config, "step_ms": round(step_s * 1e3, 1), "examples_per_s": round(batch / step_s, 2),
                         "segments_per_s": round(batch * n_segments / step_s, 1),
                         "peak_memory_mib": peak_memory_mib(device), "finite_loss": all(map(math.isfinite, losses))})
            last = time.perf_counter() - started
            ctx.save(rows=rows)
    measured = [r for r in rows if "examples_per_s" in r]
    summary = ", ".join(f"{r['segments']} segs{' ckpt' if r['checkpoint_segments'] else ''}: "
                        f"{r['examples_per_s']} ex/s" + (f" {r['peak_memory_mib']:.0f} MiB" if r["peak_memory_mib"] else "")
                        for r in measured)
    problems = [f"{r['segments']} segs ckpt={r['checkpoint_segments']}: {r['error']}" for r in rows if "error" in r]
    problems += [f"{r['segments']} segs ckpt={r['checkpoint_segments']}: non-finite loss"
                 for r in measured if not r["finite_loss"]]
    problems += [f"{r['segments']} segs ckpt={r['checkpoint_segments']}: not measured ({r['skipped']})"
                 for r in rows if "skipped" in r]
    if ctx.cuda:  # what checkpoint_segments is for: one segment's activations instead of all of them
        peaks = {(r["segments"], r["checkpoint_segments"]): r["peak_memory_mib"] for r in measured}
        most = max(segments)
        if (most, True) in peaks and (most, False) in peaks and peaks[most, True] >= peaks[most, False]:
            problems.append(f"checkpoint_segments did not lower peak memory at {most} segments "
                            f"({peaks[most, True]} vs {peaks[most, False]} MiB)")
    if not measured or problems:
        return {"status": "fail", "summary": "; ".join(problems) or "nothing measured"}
    return {"status": "pass", "summary": summary}


QA_STAGE = {"sample.documents": 8, "sample.dev_documents": 3, "data.train_size": 24, "data.eval_size": 8,
            "curriculum.segments": [2], "max_n_segs": 2, "batch_size": 4, "curriculum.epochs": 1,
            "max_seq_length": 64, "doc_stride": 32, "max_query_length": 12, "tokenizer_vocab_size": 300,
            "memory.num_tokens": 2, "precision": "bf16"}


def qa_stage(ctx: CheckContext) -> dict:
    """The qa stage through its end-of-epoch evaluation, then the evaluate stage, at bf16."""
    import dataclasses
    import tempfile
    from pathlib import Path

    from stages.core.artifacts import Artifact
    from stages.core.context import StageContext
    from stages.evaluate.spec import EvaluateConfig
    from stages.qa import train
    from stages.qa.evaluate import run_qa_eval

    cfg = resolve(QAConfig, QA_STAGE)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp, stand_in(ctx) as accelerator:
        out = Path(tmp) / "qa"
        out.mkdir()
        stage_ctx = StageContext(stage="qa", signature="check", root=Path(tmp), out_dir=out, upstream={})
        stage_ctx.log.setLevel("WARNING")
        metrics = train.run(cfg, stage_ctx)
        qa = Artifact.unmanaged(out, "qa", dataclasses.asdict(cfg))
        eval_ctx = StageContext.standalone(Path(tmp) / "eval", {"qa": qa}, "evaluate")
        scores = run_qa_eval(resolve(EvaluateConfig, {"task": "qa"}), eval_ctx)
    result = {"config": QA_STAGE, "metrics": {k: v for k, v in metrics.items() if isinstance(v, (int, float))},
              "evaluate": {k: v for k, v in scores.items() if isinstance(v, (int, float))},
              "seconds": round(time.perf_counter() - started, 1), "peak_memory_mib": peak_memory_mib(ctx.device),
              "host_device_syncs": sum(accelerator.syncs.values()) if accelerator else None}
    ctx.save(**result)
    losses = [metrics.get("loss_start"), metrics.get("loss_end")]
    if not all(isinstance(x, float) and math.isfinite(x) for x in losses):
        return {"status": "fail", "summary": f"qa loss {losses}"}
    if "dev_f1" not in metrics or "f1" not in scores:
        return {"status": "fail", "summary": "the epoch evaluation or the evaluate stage returned no F1"}
    return {"status": "pass", "summary": f"{metrics['train_steps']} steps at bf16, loss {losses[0]:.3f} -> "
                                         f"{losses[1]:.3f}, dev F1 {metrics['dev_f1']:.1f}, evaluate F1 {scores['f1']:.1f}"}
