"""The `qa` stage: MemXLNet fine-tuning on long-document SQuAD v2 through a progressive segment curriculum.

Each curriculum phase ``i`` (with up to ``curriculum.segments[i]`` segments per document) trains in
``phase_{i+1}_segs_{n}/``: a resumable ``checkpoint/`` while it runs, ``best_model/`` (best dev F1,
HF-style folder with tokenizer and resolved training config) and ``phase_done.json`` when finished.
The next phase starts from the previous phase's best model. Warm-ups count epochs within each
phase, as MemXLNet does (`stages.qa.curriculum`). A phase that allows fewer segments than a
document has trains on the answer-centred window of its segments (nothing is dropped); evaluation
reads the first ``max_n_segs`` segments. A phase may cut segments of its own length
(``curriculum.phase_seq_lengths``); the last phase's length is what evaluation reads. With
``curriculum.shared_reader``, phase 1 is a `qa_reader` artifact trained without memory, once for
every run that differs only in its memory keys and later phases; each run adds its own memory
from phase 2 on. A preemption signal -> checkpoint at the next step boundary -> ``Preempted``; a
relaunch resumes bit for bit (model, optimizer, LR schedule, RNG, sampler position).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import random
import shutil
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator, DistributedDataParallelKwargs, InitProcessGroupKwargs
from safetensors.torch import load_file, save_file

from models.memxlnet import MemXLNetForQA, TimeStepMajorRunner, global_softmax_loss, place_steps, segment_local_loss
from stages.core.context import record_curve
from stages.core.devices import mixed_precision, ranks_share_a_gpu, rng_state, set_rng_state
from stages.core.preemption import Preempted, PreemptionFlag
from stages.core.safestate import load_state, save_state
from stages.qa import components, squad_eval
from stages.qa import data as qa_data
from stages.qa.batching import EpochSampler, answer_centred_starts, document_batch
from stages.qa.predict import predict
from stages.qa.spec import READER

FINAL_MODEL_POINTER = "final_model.json"
PHASE_DONE = "phase_done.json"


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def lr_schedule(total_steps: int, warmup_ratio: float):
    """Linear warmup then linear decay to zero, as a LambdaLR factor of the step."""
    warmup = max(1, int(total_steps * warmup_ratio))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup))

    return factor


def evaluate_model(model: MemXLNetForQA, store, gold: dict, cfg, max_segments: int, extraction: str | None = None,
                   threshold: float | None = None, batch_size: int | None = None) -> tuple[dict, dict, dict]:
    """(official metrics + per-kind scores, predictions, na-probs) of a model on a feature store.
    ``extraction``, ``threshold`` and ``batch_size`` default to the training config's."""
    preds, na_probs = predict(model, store, batch_size or cfg.batch_size, max_segments, cfg.max_answer_length,
                              cfg.no_answer_threshold if threshold is None else threshold,
                              extraction=extraction or cfg.extraction)
    return squad_eval.evaluate(gold["data"], preds, na_probs), preds, na_probs


class PhaseTrainer:
    """Trains one phase of the progressive-segment curriculum; owns its checkpoint folder."""

    def __init__(self, cfg, ctx, accelerator: Accelerator, index: int, segments: int, data: dict,
                 home: Path | None = None):
        self.cfg, self.ctx, self.acc = cfg, ctx, accelerator
        self.index, self.segments = index, segments
        self.data = data
        self.train_store, self.dev_store = data["phase_stores"][index]
        self.dir = Path(home or ctx.out_dir) / f"phase_{index + 1}_segs_{segments}"
        self.ckpt = self.dir / "checkpoint"

    # ------------------------------------------------------------------ setup
    def setup(self, start_from: Path | None) -> None:
        cfg, data = self.cfg, self.data
        _seed_everything(cfg.seed + self.index)
        if start_from is None:
            self.model = components.build_model(cfg, data["tokenizer"], data["read_ids"], data["write_ids"])
        else:
            self.model = MemXLNetForQA.from_pretrained(start_from)
            memory = cfg.memory.with_tokens(data["read_ids"], data["write_ids"])
            if self.model.memory_config != memory:  # from the shared reader: this run's memory joins here
                self.model = self.model.with_memory(memory, len(data["tokenizer"]))
        docs = np.arange(len(self.train_store))
        self.starts = answer_centred_starts(self.train_store, docs, self.segments)
        self.sampler = EpochSampler(docs, cfg.batch_size, cfg.seed + self.index, self.acc.process_index, self.acc.num_processes)
        self.steps_per_epoch = self.sampler.batches_per_epoch()
        if self.steps_per_epoch == 0:
            raise ValueError(f"batch_size: {cfg.batch_size} x {self.acc.num_processes} ranks exceeds the "
                             f"{len(docs)} training questions; lower batch_size or add data")
        self.epochs = cfg.curriculum.epochs_of(self.index)
        total = self.steps_per_epoch * self.epochs
        base_ids = {id(p) for p in self.model.base_parameters()}
        groups = [
            {"params": [p for p in self.model.parameters() if id(p) in base_ids]},
            {"params": [p for p in self.model.parameters() if id(p) not in base_ids and p.requires_grad]},
        ]
        self.optimizer = torch.optim.AdamW(groups, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
        schedule = lr_schedule(total, cfg.warmup_ratio)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, [lambda s: schedule(s) * (0.0 if self.base_frozen(s) else 1.0), schedule])
        self.runner = self.acc.prepare(TimeStepMajorRunner(self.model, cfg.checkpoint_segments))
        self.step, self.curve, self.best_f1, self.epoch_metrics = 0, [], -1.0, []
        if self.ckpt.is_dir():
            self.load_checkpoint()

    def warmups(self, epoch: int) -> dict[str, bool | str]:
        return self.cfg.curriculum.warmups(epoch, self.cfg.use_global_softmax, self.cfg.extraction)

    def base_frozen(self, step: int) -> bool:
        return bool(self.warmups(step // self.steps_per_epoch)["freeze_base"])

    # ------------------------------------------------------------------ checkpoints
    def save_checkpoint(self) -> None:
        acc = self.acc
        tmp = self.dir / ".checkpoint.tmp"
        if acc.is_main_process:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
        acc.wait_for_everyone()
        save_state(tmp, f"rng_rank{acc.process_index}", rng_state())
        acc.wait_for_everyone()
        if acc.is_main_process:
            save_file({k: v.detach().contiguous() for k, v in self.model.state_dict().items()},
                      str(tmp / "model.safetensors"))
            save_state(tmp, "state", {
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "sampler": self.sampler.state_dict(),
                "step": self.step, "curve": self.curve, "best_f1": self.best_f1, "epoch_metrics": self.epoch_metrics,
            })
            (tmp / components.TRAINING_CONFIG_NAME).write_text(json.dumps(dataclasses.asdict(self.cfg), indent=2))
            shutil.rmtree(self.ckpt, ignore_errors=True)
            os.replace(tmp, self.ckpt)
        acc.wait_for_everyone()

    def load_checkpoint(self) -> None:
        state = load_state(self.ckpt, "state")
        rng = load_state(self.ckpt, f"rng_rank{self.acc.process_index}")
        self.model.load_state_dict(load_file(str(self.ckpt / "model.safetensors")))
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.sampler.load_state_dict(state["sampler"])
        self.step, self.curve = state["step"], state["curve"]
        self.best_f1, self.epoch_metrics = state["best_f1"], state["epoch_metrics"]
        set_rng_state(rng)
        self.ctx.log.info("qa phase %d: resumed at step %d", self.index + 1, self.step)

    # ------------------------------------------------------------------ training
    def train_step(self, docs: np.ndarray, use_global: bool) -> float:
        batch = document_batch(self.train_store, docs, self.segments, self.starts[docs])
        steps = place_steps(batch["steps"], self.acc.device)  # the losses read them too
        outputs = self.runner(steps, batch["n_docs"])
        if use_global:
            loss = global_softmax_loss(outputs, steps, batch["n_docs"], self.cfg.all_answer_occurrences)
        else:
            loss = segment_local_loss(outputs, steps)
        self.acc.backward(loss)
        if self.base_frozen(self.step):
            for p in self.model.base_parameters():
                p.grad = None
        if self.cfg.max_grad_norm > 0:
            self.acc.clip_grad_norm_(self.model.parameters(), self.cfg.max_grad_norm)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return float(self.acc.reduce(loss.detach(), reduction="mean"))

    def run(self, flag: PreemptionFlag) -> dict:
        cfg = self.cfg
        while self.sampler.epoch < self.epochs:
            mode = self.warmups(self.sampler.epoch)
            batches = self.sampler.epoch_batches(self.sampler.epoch)
            while self.sampler.position < len(batches):
                if flag.is_set_anywhere():
                    self.save_checkpoint()
                    raise Preempted(self.step)
                loss = self.train_step(batches[self.sampler.position], bool(mode["global_softmax"]))
                if not math.isfinite(loss):
                    raise FloatingPointError(f"qa loss is {loss} at step {self.step}; lower learning_rate")
                self.curve.append(loss)
                self.step += 1
                self.sampler.position += 1
                if self.step % cfg.checkpoint_every == 0:
                    self.save_checkpoint()
            self.end_epoch(mode)
        return self.finish()

    def end_epoch(self, mode: dict) -> None:
        metrics = {"exact": 0.0, "f1": 0.0}
        if self.acc.is_main_process:
            metrics, _, _ = evaluate_model(self.model, self.dev_store, self.data["dev"], self.cfg,
                                           self.cfg.max_n_segs, str(mode["extraction"]))
            epoch_losses = self.curve[-self.steps_per_epoch:]
            metrics = {**metrics, "epoch": self.sampler.epoch, **mode, "train_loss": float(np.mean(epoch_losses))}
            kinds = " ".join(f"{k[:-3]} {v:.1f}" for k, v in metrics.items() if k.endswith("_f1") and
                             k.split("_")[0] in ("local", "cross", "unanswerable"))
            self.ctx.log.info("qa phase %d epoch %d: loss %.4f dev EM %.2f F1 %.2f %s", self.index + 1,
                              metrics["epoch"], metrics["train_loss"], metrics["exact"], metrics["f1"], kinds)
            self.epoch_metrics.append(metrics)
            if metrics["f1"] > self.best_f1:
                self.best_f1 = metrics["f1"]
                components.save_checkpoint_model(self.model, self.data["tokenizer"], dataclasses.asdict(self.cfg),
                                               self.dir / "best_model")
        self.acc.wait_for_everyone()
        self.sampler.epoch += 1
        self.sampler.position = 0
        self.save_checkpoint()

    def finish(self) -> dict:
        summary = {"segments": self.segments, "steps": self.step, "best_f1": self.best_f1,
                   "epochs": self.epoch_metrics, "loss_curve": self.curve}
        if self.acc.is_main_process:
            (self.dir / PHASE_DONE).write_text(json.dumps(summary, indent=1))
            shutil.rmtree(self.ckpt, ignore_errors=True)
        self.acc.wait_for_everyone()
        return summary


def prepare_data(cfg, ctx, accelerator: Accelerator) -> dict:
    """Tokenizer and cached features; rank 0 builds them first, the other ranks then reuse the cache.
    With a shared reader, phase 1 is the reader's, which builds its own."""
    with accelerator.main_process_first():
        train, dev = components.load_splits(cfg, ctx.cache_dir)
        for name, split in (("train", train), ("dev", dev)):  # repaired/dropped answers, in the manifest
            for reason, count in qa_data.validation_counts(split).items():
                ctx.skip(f"{name} {reason}", count=count)
        data = _phase_data(cfg, train, dev, ctx, first=1 if cfg.curriculum.shared_reader else 0)
    train_store, dev_store = data["phase_stores"][-1]
    if len(train_store) == 0 or len(dev_store) == 0:
        raise ValueError(f"data.dataset: {len(train_store)} training / {len(dev_store)} dev questions; "
                         "check data.dataset/eval_dataset and data.train_size/eval_size")
    return data


def _phase_data(cfg, train: dict, dev: dict, ctx, first: int) -> dict:
    """Tokenizer and one (train, dev) feature store per curriculum phase from ``first`` on (earlier
    phases: None); phases of the same segment length share their stores."""
    tokenizer, read_ids, write_ids = components.build_tokenizer(cfg, train, ctx.cache_dir)
    stores, by_length = [], {}
    for phase in range(cfg.curriculum.phases):
        spec = components.segment_layout(cfg, read_ids, write_ids, phase)
        if phase >= first and spec.max_seq_length not in by_length:
            by_length[spec.max_seq_length] = (components.features(train, tokenizer, spec, ctx.cache_dir, ctx),
                                              components.features(dev, tokenizer, spec, ctx.cache_dir, ctx))
        stores.append(by_length.get(spec.max_seq_length) if phase >= first else None)
    return {"phase_stores": stores, "dev": dev, "tokenizer": tokenizer, "read_ids": read_ids, "write_ids": write_ids}


def shared_reader(ctx) -> tuple[Path, dict]:
    """(best model, phase summary) of the shared reader, the `qa_reader` artifact this run's plan
    built first (`stages.qa.spec.shared_reader_node`); verified by the runner like any upstream."""
    artifact = ctx.upstream[READER.name]
    ctx.record["shared_reader"] = {"signature": artifact.signature, "path": str(artifact.path)}
    best = artifact.path / json.loads((artifact.path / FINAL_MODEL_POINTER).read_text())["path"]
    return best, json.loads((best.parent / PHASE_DONE).read_text())


def run(cfg, ctx) -> dict:
    """Train through the curriculum; metrics are the last phase's best dev scores."""
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    # Memory-update weights get no gradient in a step whose documents all have one segment (a
    # one-segment curriculum phase; short documents): nothing later reads what was written.
    # DistributedDataParallel must be told, or it stops at the next step.
    handlers = [DistributedDataParallelKwargs(find_unused_parameters=True)]
    if ranks_share_a_gpu():  # NCCL refuses two ranks on one device
        handlers.append(InitProcessGroupKwargs(backend="gloo"))
    accelerator = Accelerator(cpu=not torch.cuda.is_available(), kwargs_handlers=handlers,
                              mixed_precision=mixed_precision(cfg.precision))
    data = prepare_data(cfg, ctx, accelerator)
    if accelerator.is_main_process:
        (Path(ctx.out_dir) / "dev.json").write_text(json.dumps(data["dev"]))
    previous_best, phases = None, []
    if cfg.curriculum.shared_reader:
        previous_best, summary = shared_reader(ctx)
        phases = [summary]
    flag = PreemptionFlag.install()
    for index, segments in enumerate(cfg.curriculum.segments):
        if index < len(phases):
            continue
        trainer = PhaseTrainer(cfg, ctx, accelerator, index, segments, data)
        done = trainer.dir / PHASE_DONE
        if done.is_file():
            summary = json.loads(done.read_text())
        else:
            trainer.setup(previous_best)
            summary = trainer.run(flag)
        phases.append(summary)
        previous_best = trainer.dir / "best_model"
    final = previous_best.relative_to(ctx.out_dir).as_posix()
    metrics = {}
    if accelerator.is_main_process:
        model = MemXLNetForQA.from_pretrained(previous_best).to(accelerator.device)
        # Scored as evaluation reads it: the last phase's segments.
        metrics, _, _ = evaluate_model(model, data["phase_stores"][-1][1], data["dev"], cfg, cfg.max_n_segs)
        (Path(ctx.out_dir) / FINAL_MODEL_POINTER).write_text(json.dumps({"path": final}))
    curve = [loss for s in phases for loss in s["loss_curve"]]
    ctx.record["loss_curve"] = record_curve([[step, loss] for step, loss in enumerate(curve)])
    ctx.record["phases"] = [{k: v for k, v in s.items() if k != "loss_curve"} for s in phases]
    result = {f"dev_{k}": v for k, v in metrics.items() if isinstance(v, (int, float))}
    for i, phase in enumerate(phases):
        # Mean loss of the first and last tenth of each phase (within a phase after its warmups the
        # loss kind is fixed, so these are comparable).
        losses, tenth = phase["loss_curve"], max(1, len(phase["loss_curve"]) // 10)
        result[f"phase_{i + 1}_best_f1"] = phase["best_f1"]
        result[f"phase_{i + 1}_loss_start"] = float(np.mean(losses[:tenth]))
        result[f"phase_{i + 1}_loss_end"] = float(np.mean(losses[-tenth:]))
    tenth = max(1, len(curve) // 10)
    result.update({"train_steps": len(curve), "loss_start": float(np.mean(curve[:tenth])),
                   "loss_end": float(np.mean(curve[-tenth:])), "final_model": final})
    accelerator.wait_for_everyone()
    return result
