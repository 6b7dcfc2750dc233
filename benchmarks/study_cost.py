"""Estimated GPU cost of the real-data studies (studies/lm_enwiki.yaml, studies/qa_squad.yaml).

Nothing here ran on a GPU. What is measured on this CPU:
- training FLOPs per token of the gpt2-small GraphLM: counted by torch's FlopCounterMode over one
  forward + backward of a 1024-token pack (it counts the matmuls, 6N, but not the CPU attention
  kernel), next to `stages.pretrain.metrics.flops_per_token` from the instantiated model's
  parameter count at the causal block density (matmuls plus attention scores: an upper bound for
  the doc and graph masks, which compute fewer blocks); the larger of the two is used;
- training FLOPs per segment of an XLNet-base-shaped MemXLNet: FlopCounterMode over one forward +
  backward of one segment at the study's segment lengths (384, and 416 with 2 x 16 memory tokens);
- segments per question: the qa stage's segment layout over SQuAD v2 dev (the half in
  ../shared/data) tokenized with the XLNet cased SentencePiece model, as a stand-in for train.
What is assumed, and printed: H100 SXM dense bf16 peak 989 TFLOP/s (`stages.pretrain.metrics`),
model FLOPs utilisation 35% (also shown at 20% and 50%), 8 GPUs per pretrain run, SQuAD v2 train
130,319 questions and dev 11,873 (the official files), enwiki CPU stages from the README's
measured-scale extrapolation.

    PYTHONPATH=. python benchmarks/study_cost.py
"""

from __future__ import annotations

import dataclasses
import math
import statistics
import sys
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from jobs import studies
from stages.core.config import resolve
from stages.pretrain.config import PretrainConfig
from stages.qa.config import QAConfig
from stages.qa.features import context_room

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
PEAK = 989e12  # H100 SXM dense bf16, stages/pretrain/metrics.PEAK_BF16_TFLOPS
MFU = 0.35
MFU_RANGE = (0.20, 0.50)
SQUAD_TRAIN_QUESTIONS, SQUAD_DEV_QUESTIONS = 130_319, 11_873

GPT2_VOCAB = 50_257  # vocab=compact keeps the ids the corpus uses: at most this on enwiki


def lm_settings() -> dict:
    """studies/lm_enwiki.yaml's pretrain run as the stage resolves it (preset gpt2-small; a swept
    key at its last value), on 8 GPUs per run (packing.batch_size is per rank)."""
    keys = {key: value.split(",")[-1] for key, value in studies.load("lm_enwiki").keys("pretrain").items()}
    cfg = resolve(PretrainConfig, keys)
    return {"steps": cfg.steps, "batch_size": cfg.packing.batch_size, "token_budget": cfg.packing.token_budget,
            "val_every": cfg.val_every, "val_batches": cfg.val_batches, "model": cfg.model_config(GPT2_VOCAB),
            "world_size": 8, "eval_docs": 500, "eval_contexts": 3, "runs": 12}


def qa_settings() -> tuple[QAConfig, int]:
    """studies/qa_squad.yaml's qa run as the stage resolves it (preset base; memory at its largest
    swept value), and its number of runs (memory variants x seeds)."""
    keys = studies.load("qa_squad").keys("qa")
    runs = len(keys["memory.num_tokens"].split(",")) * len(keys["seed"].split(","))
    return resolve(QAConfig, {key: value.split(",")[-1] for key, value in keys.items()}), runs


LM = lm_settings()
QA, QA_RUNS = qa_settings()
MEMORY = QA.memory.num_tokens


def counted_flops(fn) -> float:
    with FlopCounterMode(display=False) as counter:
        fn()
    return float(counter.get_total_flops())


def lm_flops_per_token() -> tuple[float, float, int]:
    """(FlopCounterMode FLOPs per token, metrics.flops_per_token at causal density, parameters)."""
    from models.graphlm.training import GraphLMForTraining
    from stages.pretrain.metrics import flops_per_token

    T = LM["token_budget"]
    model = GraphLMForTraining.from_config(dataclasses.replace(LM["model"], mask="causal", attention_impl="sdpa"))
    tokens = torch.randint(0, GPT2_VOCAB, (1, T))
    batch = {"tokens": tokens, "labels": tokens, "doc_index": torch.zeros(1, T, dtype=torch.long)}
    counted = counted_flops(lambda: model(batch).loss.backward()) / T
    blocks = T // 128  # FlexAttention's 128-token blocks: causal keeps the lower triangle
    density = blocks * (blocks + 1) / 2 / blocks**2
    formula = flops_per_token(model.num_parameters(), model.config.n_layers, model.config.d_model, T, density)
    return counted, formula, model.num_parameters()


def qa_flops_per_segment(length: int) -> float:
    """FlopCounterMode FLOPs of one forward + backward of one XLNet-base segment plus the span head."""
    from transformers import XLNetConfig, XLNetModel

    config = XLNetConfig(vocab_size=32_000 + 2 * MEMORY, d_model=768, n_layer=12, n_head=12, d_inner=3072)
    model, head = XLNetModel(config), torch.nn.Linear(768, 2)
    ids = torch.randint(5, 32_000, (1, length))

    def step():
        hidden = model(input_ids=ids, attention_mask=torch.ones(1, length), token_type_ids=torch.zeros_like(ids),
                       use_mems=False).last_hidden_state
        head(hidden).sum().backward()

    return counted_flops(step)


def squad_segments(long_context: int) -> tuple[float, dict[int, float]] | None:
    """(mean segments per question, {curriculum cap: mean min(segments, cap)}) on the dev half,
    with the qa stage's window arithmetic (stages/qa/features.featurize); None without the data."""
    from stages.qa import data as qa_data
    from stages.qa.tokenizer import wrap_sentencepiece

    squad_file, spiece = DATA / "squad_v2" / "dev-v2.0-half.json", DATA / "xlnet" / "spiece.model"
    if not (squad_file.is_file() and spiece.is_file()):
        return None
    tok = wrap_sentencepiece(spiece)
    squad = qa_data.join_paragraphs(qa_data.load_squad(str(squad_file), "dev", Path("/tmp")), long_context)
    counts = []
    for article in squad["data"]:
        for paragraph in article["paragraphs"]:
            n_ctx = len(tok(paragraph["context"], add_special_tokens=False)["input_ids"])
            for qa in paragraph["qas"]:
                n_q = min(len(tok(qa["question"], add_special_tokens=False)["input_ids"]), QA.max_query_length)
                window = context_room(QA.max_seq_length, 0, n_q)  # memory.extends_segment: memory adds to the length
                step = max(1, min(QA.doc_stride, window))
                counts.append(1 + max(0, math.ceil((n_ctx - window) / step)))
    capped = {cap: statistics.mean(min(c, cap) for c in counts) for cap in QA.curriculum.segments}
    return statistics.mean(min(c, QA.max_n_segs) for c in counts), capped | {"uncapped": statistics.mean(counts)}


def gpu_hours(flops: float, mfu: float = MFU) -> float:
    return flops / (PEAK * mfu) / 3600


def main() -> int:
    torch.manual_seed(0)
    counted, formula, n_params = lm_flops_per_token()
    train_tokens = LM["steps"] * LM["batch_size"] * LM["token_budget"] * LM["world_size"]
    val_tokens = (LM["steps"] // LM["val_every"]) * LM["val_batches"] * LM["batch_size"] * LM["token_budget"] * LM["world_size"]
    eval_tokens = LM["eval_docs"] * LM["eval_contexts"] * LM["token_budget"]
    per_token = max(counted, formula)
    lm_run = per_token * train_tokens + per_token / 3 * (val_tokens + eval_tokens)  # forward only: ~1/3
    print("## lm_enwiki (gpt2-small GraphLM, full enwiki)\n")
    print(f"parameters (vocab {GPT2_VOCAB}, tied): {n_params / 1e6:.1f} M")
    print(f"training FLOPs/token, FlopCounterMode fwd+bwd at T={LM['token_budget']} (matmuls; CPU attention kernel not counted): {counted / 1e9:.3f} G")
    print(f"training FLOPs/token, metrics.flops_per_token at causal block density: {formula / 1e9:.3f} G")
    print(f"tokens per run: {LM['steps']} steps x {LM['batch_size']} packs x {LM['token_budget']} x "
          f"{LM['world_size']} GPUs = {train_tokens / 1e9:.3f} B (+ {val_tokens / 1e6:.1f} M validation, "
          f"{eval_tokens / 1e6:.1f} M evaluation, forward only)")
    print(f"FLOPs per run (the larger FLOPs/token): {lm_run:.3e}\n")

    qa_segs = squad_segments(QA.data.long_context)
    print(f"## qa_squad (XLNet-base MemXLNet, SQuAD v2, long_context={QA.data.long_context})\n")
    seg0, seg16 = qa_flops_per_segment(QA.max_seq_length), qa_flops_per_segment(QA.segment_length())
    print(f"training FLOPs per segment, FlopCounterMode fwd+bwd: {seg0 / 1e9:.1f} G at {QA.max_seq_length} "
          f"tokens (memory 0), {seg16 / 1e9:.1f} G at {QA.segment_length()} (memory {MEMORY})")
    if qa_segs is None:
        print("segments per question: ../shared/data absent; assuming the curriculum caps (upper bound)")
        mean_eval, capped = float(QA.max_n_segs), {c: float(c) for c in QA.curriculum.segments}
    else:
        mean_eval, capped = qa_segs
        print(f"segments per question on the dev half (XLNet spiece, window arithmetic of featurize): uncapped "
              f"{capped['uncapped']:.2f}, " + ", ".join(f"capped at {c}: {capped[c]:.2f}" for c in QA.curriculum.segments))
    train_segments = sum(QA.curriculum.epochs_of(phase) * SQUAD_TRAIN_QUESTIONS * capped[c]
                         for phase, c in enumerate(QA.curriculum.segments))
    epochs = sum(QA.curriculum.epochs_of(phase) for phase in range(QA.curriculum.phases))
    dev_segments = epochs * SQUAD_DEV_QUESTIONS * mean_eval  # one dev evaluation per epoch, forward only
    qa_runs = {}
    for memory, seg in ((0, seg0), (MEMORY, seg16)):
        qa_runs[memory] = seg * train_segments + seg / 3 * dev_segments
    print(f"segment passes per run: {train_segments / 1e6:.2f} M training ({epochs} epochs over "
          f"{SQUAD_TRAIN_QUESTIONS} questions), {dev_segments / 1e6:.2f} M dev (forward only)")
    print(f"FLOPs per run: {qa_runs[0]:.3e} (memory 0), {qa_runs[MEMORY]:.3e} (memory {MEMORY})\n")

    print(f"## estimated GPU-hours (H100 bf16 peak {PEAK / 1e12:.0f} TFLOP/s; MFU assumed, not measured)\n")
    lo, hi = MFU_RANGE
    print(f"| study | runs | GPU-h per run at {MFU:.0%} MFU | total at {MFU:.0%} | total at {hi:.0%} .. {lo:.0%} |")
    print("|---|---|---|---|---|")
    lm_total = lambda m: LM["runs"] * gpu_hours(lm_run, m)
    print(f"| lm_enwiki | {LM['runs']} | {gpu_hours(lm_run):.2f} | {lm_total(MFU):.1f} | "
          f"{lm_total(hi):.1f} .. {lm_total(lo):.1f} |")
    qa_total = lambda m: QA_RUNS // 2 * (gpu_hours(qa_runs[0], m) + gpu_hours(qa_runs[MEMORY], m))
    print(f"| qa_squad | {QA_RUNS} | {gpu_hours(qa_runs[0]):.2f} (memory 0), {gpu_hours(qa_runs[MEMORY]):.2f} "
          f"(memory {MEMORY}) | "
          f"{qa_total(MFU):.1f} | {qa_total(hi):.1f} .. {qa_total(lo):.1f} |")
    print("\nlm_enwiki also runs extract, graph and pretokenize once on CPUs (README, measured scale: about "
          "21,000 + 1,000 + 1,760 CPU-s at enwiki size, extrapolated).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
