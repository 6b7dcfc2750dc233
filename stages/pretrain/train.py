"""The `pretrain` stage: train a GraphLM on graph-packed batches, resumable bit for bit.

Every rank calls `run`; rank 0 returns the metrics. A step is `grad_accum` micro-batches. At each
step boundary the loop checks the (all-reduced) preemption flag: on SIGUSR2 it checkpoints and
raises `Preempted`; a relaunch with the same out_dir resumes from the newest checkpoint.
"""

from __future__ import annotations

import json
import math
import random
import time

import numpy as np
import torch
import torch.distributed as dist

from models.graphlm import GraphLMForTraining
from stages.core.context import record_curve
from stages.core.preemption import Preempted, PreemptionFlag
from stages.formats.graph import GraphIndex
from stages.formats.tokens import TokenStore
from stages.pretrain import checkpoint as ckpt
from stages.pretrain.accel import build_accelerator, release_accelerator, uses_deepspeed
from stages.pretrain.artifact import METRICS_LOG, MODEL_CONFIG, MODEL_WEIGHTS
from stages.pretrain.data import split_documents, to_device, tokens_in, train_loader, validation_batches
from stages.pretrain.metrics import MetricsLog, flops_per_token, peak_flops
from stages.pretrain.schedule import adamw, set_lr, warmup_cosine
from stages.pretrain.vocab import CompactVocab


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class _Interval:
    """The device-side values of the steps since the last flush, and the wall time they took."""

    def __init__(self, step: int) -> None:
        self.first_step, self.stats, self.tokens = step, [], 0
        self.started = time.perf_counter()

    def add(self, stats: torch.Tensor, tokens: int) -> None:
        self.stats.append(stats)
        self.tokens += tokens

    def seconds(self) -> float:
        """Wall time since the interval began; after a flush's sync it includes the device's work."""
        return time.perf_counter() - self.started


def run(cfg, ctx) -> dict:
    """Train (or resume) and return final metrics on rank 0; see the module docstring."""
    graph = GraphIndex.open(ctx.upstream["graph"].path)
    store = TokenStore.open(ctx.upstream["pretokenize"].path)
    accelerator = build_accelerator(cfg, ctx.log)
    try:
        return _Trainer(cfg, ctx, accelerator, graph, store).fit()
    finally:
        store.close()
        release_accelerator()


class _Trainer:
    def __init__(self, cfg, ctx, accelerator, graph: GraphIndex, store: TokenStore) -> None:
        self.cfg, self.ctx, self.acc = cfg, ctx, accelerator
        self.rank, self.world = accelerator.process_index, accelerator.num_processes
        self.main = accelerator.is_main_process
        seed_everything(cfg.seed)
        split = split_documents(graph, store, cfg.val_fraction, cfg.heldout, cfg.hub_degree)
        self.split_sizes = split.sizes()
        self.vocab = CompactVocab.from_store(store) if cfg.vocab == "compact" else None
        self.loader = train_loader(graph, store, cfg, split, self.rank, self.world)
        self.val_batches = [self.encode(b) for b in
                            validation_batches(graph, store, cfg, split, self.rank, self.world, cfg.val_batches)]
        self.model_config = cfg.model_config(self.vocab.size if self.vocab else store.n_vocab)
        model = GraphLMForTraining.from_config(self.model_config)
        self.n_params = model.num_parameters()
        optimizer = adamw(model, cfg.lr, cfg.weight_decay, cfg.beta2)
        self.model, self.optimizer = accelerator.prepare(model, optimizer)
        self.deepspeed = uses_deepspeed(accelerator)
        self.step, self.tokens_seen, self.train_seconds = 0, 0, 0.0
        self.loss_curve: list[list[float]] = []
        self.val_curve: list[list[float]] = []
        self.resumed_from = None
        latest = ckpt.latest_checkpoint(ctx.out_dir)
        if latest is not None:
            loader_state, state = ckpt.load_checkpoint(accelerator, latest)
            self.loader.load_state_dict(loader_state)
            self.step, self.tokens_seen = state["step"], state["tokens_seen"]
            self.train_seconds = state["train_seconds"]
            self.loss_curve, self.val_curve = state["loss_curve"], state["val_curve"]
            self.resumed_from = self.step
            ctx.log.info("resumed from %s (step %d)", latest, self.step)
        self.metrics = MetricsLog(ctx.out_dir / METRICS_LOG, self.main, self.step)
        self.densities: list[float] = []  # attention block density per logging interval (for MFU)
        self.peak = peak_flops(cfg.peak_tflops)
        if self.main:
            (ctx.out_dir / MODEL_CONFIG).write_text(json.dumps(self.model_config.to_dict(), indent=1))
            if self.vocab is not None:
                self.vocab.save(ctx.out_dir)

    def encode(self, batch: dict) -> dict:
        """Loader ids -> model ids (dense ones under vocab=compact)."""
        return self.vocab.encode_batch(batch) if self.vocab is not None else batch

    # ---- training ------------------------------------------------------------------------
    def fit(self) -> dict:
        """The hot loop: the host reads the device once per logging interval (`flush`), never per step."""
        cfg = self.cfg
        flag = PreemptionFlag.install()
        batches = iter(self.loader)
        bar = self.ctx.progress(total=cfg.steps, desc="pretrain", initial=self.step)
        interval = _Interval(self.step)
        while self.step < cfg.steps:
            lr = warmup_cosine(self.step, cfg.lr, cfg.warmup_steps, cfg.steps, cfg.min_lr_ratio)
            set_lr(self.optimizer, lr)
            stats, tokens = self.train_step(batches)
            self.step += 1
            self.tokens_seen += tokens * self.world
            interval.add(stats, tokens * self.world)
            validating = bool(cfg.val_every) and self.step % cfg.val_every == 0 and self.step < cfg.steps
            saving = bool(cfg.checkpoint_every) and self.step % cfg.checkpoint_every == 0 and self.step < cfg.steps
            if not (validating or saving or self.step % cfg.log_every == 0 or self.step == cfg.steps):
                continue
            preempted = self.flush(interval, flag, lr)
            bar.update(self.step - bar.n)
            bar.set_postfix(loss=f"{self.loss_curve[-1][1]:.3f}")
            if validating:
                self.metrics.write({"step": self.step, "val_loss": self.validate()})
            if saving or preempted:
                self.save()
            if preempted:
                bar.close()
                raise Preempted(self.step)
            interval = _Interval(self.step)
        bar.close()
        return self.finish()

    def train_step(self, batches) -> tuple[torch.Tensor, int]:
        """One optimizer step over grad_accum micro-batches: ([mean loss, grad norm, attention
        density] on the device, tokens). Nothing here waits for the device."""
        cfg, acc = self.cfg, self.acc
        self.model.train()
        losses, densities, grad_norm, tokens = [], [], None, 0
        for _ in range(cfg.grad_accum):
            batch = to_device(self.encode(next(batches)), acc.device)
            tokens += tokens_in(batch)
            with acc.accumulate(self.model):
                out = self.model(batch)
                acc.backward(out.loss)
                if acc.sync_gradients:
                    grad_norm = self.clip_gradients()
                self.optimizer.step()
                self.optimizer.zero_grad(set_to_none=True)
            losses.append(out.loss.detach().float())
            densities.append(out.attention_density.float())
        norm = torch.full((), math.nan, device=acc.device) if grad_norm is None else grad_norm.detach().float()
        return torch.stack([torch.stack(losses).mean(), norm, torch.stack(densities).mean()]), tokens

    def clip_gradients(self) -> torch.Tensor | None:
        """The global gradient norm as a device tensor (clipped when grad_clip > 0)."""
        if self.deepspeed or self.cfg.grad_clip > 0:  # DeepSpeed clips inside its step; this reads back the norm
            norm = self.acc.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
            return None if norm is None else torch.as_tensor(norm, device=self.acc.device)
        return torch.linalg.vector_norm(torch.stack(
            [p.grad.detach().norm() for p in self.model.parameters() if p.grad is not None]))

    def flush(self, interval: _Interval, flag: PreemptionFlag, lr: float) -> bool:
        """Read the interval's per-step values back (one host-device sync, one collective with
        several ranks), extend the curves, write the metrics line; True if any rank was signalled."""
        values = torch.stack(interval.stats)  # [steps, 3]: loss, grad norm, density
        if self.world > 1:
            stop = torch.full((1, 3), float(flag.is_set()), device=values.device)
            values = self.acc.reduce(torch.cat([values, stop]), reduction="mean")
        rows = values.double().tolist()
        seconds = interval.seconds()
        self.train_seconds += seconds
        preempted = rows.pop()[0] > 0 if self.world > 1 else flag.is_set()
        for step, (loss, _, _) in enumerate(rows, start=interval.first_step + 1):
            if not math.isfinite(loss):  # every rank sees the same reduced values: all stop together
                raise FloatingPointError(f"pretrain loss is {loss} at step {step}; nothing is committed: "
                                         f"lower lr (now {self.cfg.lr}) or set grad_clip")
            self.loss_curve.append([step, loss])
        loss, grad_norm, _ = rows[-1]
        tokens_per_s = interval.tokens / seconds if seconds > 0 else 0.0
        record = {"step": self.step, "loss": round(loss, 6), "lr": lr, "tokens_per_s": round(tokens_per_s, 1),
                  "grad_norm": None if math.isnan(grad_norm) else grad_norm, "tokens_seen": self.tokens_seen,
                  "attention_density": round(float(np.mean([r[2] for r in rows])), 4)}
        if self.peak:
            record["mfu"] = round(self.mfu(tokens_per_s, record["attention_density"]), 4)
        self.metrics.write(record)
        self.densities.append(record["attention_density"])
        return preempted

    def mfu(self, tokens_per_s: float, density: float) -> float:
        """Model FLOPs utilisation with the attention FLOPs the mask's kept blocks compute."""
        flops = flops_per_token(self.n_params, self.model_config.n_layers, self.model_config.d_model,
                                self.cfg.packing.token_budget, density)
        return tokens_per_s * flops / (self.peak * self.world)

    @torch.no_grad()
    def validate(self) -> float:
        """Token-weighted mean loss over every rank's fixed held-out batches."""
        self.model.eval()
        total = torch.zeros(2, dtype=torch.float64, device=self.acc.device)
        for batch in self.val_batches:
            out = self.model(to_device(batch, self.acc.device))
            total += torch.stack([out.loss.double() * out.n_tokens, out.n_tokens.double()])
        if self.world > 1:
            total = self.acc.reduce(total, reduction="sum")
        self.model.train()
        loss = float(total[0] / total[1].clamp_min(1))
        if self.val_curve and self.val_curve[-1][0] == self.step:  # re-finishing a finished run
            self.val_curve.pop()
        self.val_curve.append([self.step, loss])
        return loss

    # ---- persistence ---------------------------------------------------------------------
    def trainer_state(self) -> dict:
        return {"step": self.step, "tokens_seen": self.tokens_seen, "train_seconds": self.train_seconds,
                "loss_curve": self.loss_curve, "val_curve": self.val_curve, "world_size": self.world}

    def save(self) -> None:
        ckpt.save_checkpoint(self.acc, self.ctx.out_dir, self.step, self.loader.state_dict(),
                             self.trainer_state(), self.cfg.keep_checkpoints)

    def save_weights(self) -> None:
        from safetensors.torch import save_file

        state = self.acc.get_state_dict(self.model)  # gathers ZeRO-3 partitions on rank 0
        if self.main:
            save_file({k: v.detach().float().contiguous().cpu() for k, v in state.items()},
                      str(self.ctx.out_dir / MODEL_WEIGHTS))

    def finish(self) -> dict:
        val_loss = self.validate()
        if not math.isfinite(val_loss):  # e.g. the last step's update diverged after a finite loss
            raise FloatingPointError(f"pretrain validation loss is {val_loss} after step {self.step}; nothing is "
                                     f"committed: lower lr (now {self.cfg.lr}) or set grad_clip")
        self.save()  # a finished run is resumable too (e.g. to extend it with more steps)
        self.save_weights()
        self.acc.wait_for_everyone()
        tail = [loss for _, loss in self.loss_curve[-10:]]
        tokens_per_s = self.tokens_seen / self.train_seconds if self.train_seconds else 0.0
        metrics = {
            "final_train_loss": round(float(np.mean(tail)), 6) if tail else None,
            "first_train_loss": self.loss_curve[0][1] if self.loss_curve else None,
            "val_loss": round(val_loss, 6),
            "val_ppl": round(float(np.exp(min(val_loss, 50.0))), 3),
            "tokens_per_s": round(tokens_per_s, 1),
            "steps": self.step,
            "tokens_seen": self.tokens_seen,
            "params": self.n_params,
            "world_size": self.world,
            "process_group_backend": dist.get_backend() if dist.is_initialized() else None,
            "resumed_from_step": self.resumed_from,
            "vocab_size": self.model_config.vocab_size,
            **self.split_sizes,
        }
        if self.peak and self.densities:
            metrics["mfu"] = round(self.mfu(tokens_per_s, float(np.mean(self.densities))), 4)
        if self.main:
            self.ctx.record["loss_curve"] = record_curve(self.loss_curve)
            self.ctx.record["val_curve"] = record_curve(self.val_curve)
            self.metrics.write({"step": self.step, "final": True, **metrics})
        return metrics
