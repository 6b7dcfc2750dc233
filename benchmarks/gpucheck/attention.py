"""FlexAttention checks: compiled kernel vs a dense SDPA reference, and compile stability.

`flex_correctness` runs the model's own attention layer (`models.graphlm.layers.Attention`) twice
on the same weights and inputs: once with the batch's FlexAttention block mask (the compiled kernel
the CUDA path uses) and once with the dense boolean mask evaluated from the very same mask_mod
(SDPA), and compares both against a float64 dense reference. Outputs and gradients (input and
projection weights) are compared as normalised max errors, max|x - ref| / max|ref|.

`compile_stability` trains a GraphLM on real packing-loader batches (every batch a different
document layout and link set) and counts, with `torch._dynamo.utils.counters`, how many graphs
were compiled and how many graph breaks happened, before and after warm-up; recompile reasons are
captured from dynamo's `recompiles` log. A step that compiles anything after warm-up is a failure.
"""

from __future__ import annotations

import copy
import logging
import tempfile
import time
from pathlib import Path

import torch
from torch.nn.attention.flex_attention import create_block_mask

from benchmarks.gpucheck.runtime import CheckContext, free_device_memory, loader_batches, sync
from models.graphlm import (
    AttentionMask,
    GraphLMConfig,
    GraphLMForTraining,
    build_attention_mask,
    causal_mask_mod,
    dense_mask,
    make_mask_mod,
)
from models.graphlm.layers import Attention, rotary_tables
from stages.pretrain.data import to_device

MODES = ("causal", "doc", "graph")
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
# Normalised max error allowed against the float64 reference. A case also passes when the flex
# error is within twice the dense-SDPA error at the same precision (then the kernel is as exact
# as the dense path the CPU trains with; bf16 rounding dominates both).
TOLERANCE = {"fp32": 2e-3, "bf16": 3e-2}


def _normalised_error(value: torch.Tensor, reference: torch.Tensor) -> float:
    scale = reference.abs().max().clamp_min(1e-12)
    return float((value.double() - reference).abs().max() / scale)


def _attention_case(attention: Attention, reference: Attention, x: torch.Tensor, mask_mod, block_mask,
                    dtype: str, backward: bool) -> dict:
    """Errors of the flex and dense-SDPA paths at `dtype` against the float64 dense path."""
    device = x.device
    batch, seq, _ = x.shape
    positions = torch.arange(seq, device=device)
    cos, sin = rotary_tables(positions, attention.head_dim, 10000.0)
    dense = dense_mask(mask_mod, batch, positions, seq)
    grad_out = torch.randn_like(x)

    def run(module, inputs, mask, cast):
        inputs = inputs.detach().clone().requires_grad_(backward)
        module.zero_grad(set_to_none=True)
        autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=cast == "bf16")
        with autocast, torch.set_grad_enabled(backward):
            out = module(inputs, cos.to(inputs.dtype), sin.to(inputs.dtype), mask)
        grads = {}
        if backward:
            out.backward(grad_out.to(out.dtype))
            grads = {"grad_input": inputs.grad, "grad_qkv_weight": module.qkv.weight.grad}
        return {"output": out.detach(), **{k: v.detach() for k, v in grads.items()}}

    ref = run(reference, x.double(), AttentionMask("ref", dense=dense), "fp64")
    flex = run(attention, x, AttentionMask("flex", block_mask=block_mask), dtype)
    sdpa = run(attention, x, AttentionMask("sdpa", dense=dense), dtype)
    result = {}
    for name, expected in ref.items():
        flex_err, sdpa_err = _normalised_error(flex[name], expected), _normalised_error(sdpa[name], expected)
        finite = bool(torch.isfinite(flex[name]).all())
        ok = finite and (flex_err <= TOLERANCE[dtype] or flex_err <= 2 * sdpa_err)
        result[name] = {"flex_err": flex_err, "sdpa_err": sdpa_err, "finite": finite, "ok": ok}
    return result


def flex_correctness(ctx: CheckContext) -> dict:
    """Compiled FlexAttention vs dense SDPA for causal/doc/graph masks, fp32 and bf16, fwd (+bwd)."""
    device = ctx.device
    backward = ctx.cuda  # FlexAttention has no CPU backward
    if ctx.smoke:
        batch_size, seq, heads, head_dim = 2, 128, 2, 16
        cases = [(mode, "fp32") for mode in MODES] + [("graph", "bf16")]
    else:  # gpt2-small's head shape, two packs of 1024 tokens
        batch_size, seq, heads, head_dim = 2, 1024, 12, 64
        # Most telling first: if compiling runs long, the last cases are reported as skipped.
        cases = [(mode, dtype) for mode in ("graph", "doc", "causal") for dtype in DTYPES]
    # A real packing-loader batch; of a few, the one with the most links (short documents in the smoke).
    with tempfile.TemporaryDirectory() as tmp:
        candidates = loader_batches(Path(tmp), seq, batch_size, 8, mean_length=25 if ctx.smoke else 300)
    batch = to_device(max(candidates, key=lambda b: int(b["edges"].shape[0])), device)
    docs = [len(spans) for spans in batch["doc_spans"]]
    if max(docs) < 2 or batch["edges"].shape[0] == 0:
        return {"status": "fail", "summary": f"the test batch has {docs} documents per pack and "
                                             f"{batch['edges'].shape[0]} links: doc/graph masks untested"}
    # compile=True makes the layer use the compiled kernel on CPU too (CUDA always compiles it).
    config = GraphLMConfig(vocab_size=97, n_layers=1, d_model=heads * head_dim, n_heads=heads,
                           d_ff=4 * heads * head_dim, compile=not ctx.cuda)
    torch.manual_seed(0)
    attention = Attention(config).to(device)
    reference = copy.deepcopy(attention).double()
    x = torch.randn(batch_size, seq, config.d_model, device=device)
    rows = []
    ctx.save(shape={"batch": batch_size, "seq": seq, "heads": heads, "head_dim": head_dim, "docs_per_pack": docs,
                    "links": int(batch["edges"].shape[0])},
             tolerance=TOLERANCE, backward=backward, rows=rows)
    last = 0.0
    for mode, dtype in cases:
        if rows and ctx.remaining() < 2 * last:
            rows.append({"mask": mode, "dtype": dtype, "skipped": f"time budget ({ctx.remaining():.0f}s left)"})
            ctx.save(rows=rows)
            continue
        started = time.perf_counter()
        if mode == "causal":
            mask_mod = causal_mask_mod()
            block_mask = create_block_mask(mask_mod, batch_size, None, seq, seq, device=device)
        else:
            mask_mod = make_mask_mod(mode, batch["doc_index"], batch["edges"])
            block_mask = build_attention_mask(mode, batch["doc_index"], batch["edges"], impl="flex").block_mask
        errors = _attention_case(attention, reference, x, mask_mod, block_mask, dtype, backward)
        rows.append({"mask": mode, "dtype": dtype, **errors, "seconds": round(time.perf_counter() - started, 1)})
        last = time.perf_counter() - started
        ctx.save(rows=rows)
    failed = [f"{r['mask']}/{r['dtype']}/{k}" for r in rows for k, v in r.items() if isinstance(v, dict) and not v["ok"]]
    worst = max((v["flex_err"] for r in rows for v in r.values() if isinstance(v, dict)), default=0.0)
    skipped = [f"{r['mask']}/{r['dtype']}" for r in rows if "skipped" in r]
    summary = f"{len(rows) - len(skipped)} cases, worst normalised error {worst:.2e}"
    if skipped:  # a case not run has shown nothing
        return {"status": "fail", "summary": f"{summary}; not run for time: {', '.join(skipped)}"}
    summary += "" if backward else "; forward only (FlexAttention has no CPU backward)"
    if failed:
        return {"status": "fail", "summary": f"{summary}; out of tolerance: {', '.join(failed)}"}
    return {"status": "pass", "summary": summary}


class _RecompileLog(logging.Handler):
    """Collects dynamo's recompile messages (enabled with torch._logging.set_logs(recompiles=True))."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if "ecompil" in message:
            self.messages.append(message[:600])


def _compile_counts() -> dict:
    from torch._dynamo.utils import counters

    return {"graphs": int(counters["stats"]["unique_graphs"]),
            "graph_breaks": int(sum(counters["graph_break"].values())),
            "break_reasons": sorted(counters["graph_break"])[:5]}


def _variant(ctx: CheckContext, name: str, compile_blocks: bool, batches: list[dict], warmup: int,
             preset: str) -> dict:
    import torch._dynamo
    import torch._logging
    from torch._dynamo.utils import counters

    device = ctx.device
    torch._dynamo.reset()
    counters.clear()
    torch.manual_seed(0)
    config = GraphLMConfig.from_preset(preset, vocab_size=50257, mask="graph", attention_impl="flex",
                                       compile=compile_blocks)
    model = GraphLMForTraining(config).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    handler = _RecompileLog()
    dynamo_log = logging.getLogger("torch._dynamo")
    torch._logging.set_logs(recompiles=True)
    dynamo_log.addHandler(handler)
    per_step, after_warmup = [], None
    try:
        for index, batch in enumerate(batches):
            if index == warmup:
                after_warmup = _compile_counts()
                handler.messages.clear()
            if ctx.cuda:  # a full training step, as the stage runs it (bf16 autocast)
                with torch.autocast("cuda", dtype=torch.bfloat16):
                    loss = model(batch).loss
                loss.backward()
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
            else:  # FlexAttention has no CPU backward: forward passes only
                with torch.no_grad():
                    model(batch)
            sync(device)
            per_step.append(_compile_counts()["graphs"])
    finally:
        dynamo_log.removeHandler(handler)
        torch._logging.set_logs()
    final = _compile_counts()
    new_graphs = final["graphs"] - after_warmup["graphs"]
    new_breaks = final["graph_breaks"]
    docs = [int(b["doc_index"].max(dim=1).values.max()) + 1 for b in batches]
    del model, optimizer
    free_device_memory(device)
    return {"variant": name, "compile_blocks": compile_blocks, "steps": len(batches), "warmup_steps": warmup,
            "max_docs_per_pack": docs, "graphs_after_warmup": after_warmup["graphs"],
            "graphs_per_step": per_step, "new_graphs_after_warmup": new_graphs, "graph_breaks": new_breaks,
            "break_reasons": final["break_reasons"], "recompile_messages": handler.messages[:3],
            "ok": new_graphs == 0 and new_breaks == 0}


def compile_stability(ctx: CheckContext) -> dict:
    """No graph breaks, and no recompiles after warm-up, over batches whose masks all differ."""
    device = ctx.device
    if ctx.smoke:
        preset, budget, batch_size, warmup, measured = "tiny", 256, 2, 1, 2
        # On CPU the kernel is compiled only inside compiled blocks (compile=true).
        variants = [("compiled_blocks", True)]
    else:
        preset, budget, batch_size, warmup, measured = "small", 1024, 4, 2, 6
        variants = [("flex_kernel (stage default compile=false)", False), ("compiled_blocks (compile=true)", True)]
    with tempfile.TemporaryDirectory() as tmp:
        batches = [to_device(b, device) for b in loader_batches(Path(tmp), budget, batch_size, warmup + measured)]
    rows = []
    ctx.save(preset=preset, token_budget=budget, batch_size=batch_size, rows=rows,
             method="torch._dynamo.utils.counters (stats.unique_graphs, graph_break) + recompiles log")
    for name, compile_blocks in variants:
        rows.append(_variant(ctx, name, compile_blocks, batches, warmup, preset))
        ctx.save(rows=rows)
    layouts = {tuple(b["doc_index"].flatten().tolist()) for b in batches}
    bad = [r["variant"] for r in rows if not r["ok"]]
    summary = "; ".join(f"{r['variant']}: {r['graphs_after_warmup']} graphs in warm-up, "
                        f"+{r['new_graphs_after_warmup']} after, {r['graph_breaks']} breaks" for r in rows)
    if len(layouts) < 2:
        return {"status": "fail", "summary": f"the batches did not vary, nothing was shown; {summary}"}
    return {"status": "fail" if bad else "pass", "summary": summary}
