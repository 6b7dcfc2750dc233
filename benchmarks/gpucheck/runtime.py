"""What a check runs with: its context (smoke flag, deadline, partial results), the device,
synchronised step timing and peak memory.

A check runs in its own subprocess (see `benchmarks/gpu_check.py`). It saves partial results as it
goes (`CheckContext.save`), so a check killed at its time budget still reports what it measured.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch

from stages.pretrain.metrics import peak_bf16_tflops

H100_CLASS = ("H100", "H200", "GH200")
STATUSES = ("pass", "n/a", "fail", "skipped", "error", "timeout")
#: Only "pass" and "n/a" (the check does not apply to this device; its summary says why) pass: a
#: check skipped for time or killed at its budget has shown nothing.
PASSING = ("pass", "n/a")


@dataclass
class CheckContext:
    """Handed to every check function. `deadline` is a `time.time()` value; the parent kills the
    check a few seconds after it, so checks skip optional work when `remaining()` runs low."""

    smoke: bool
    deadline: float
    result_path: Path
    partial: dict = field(default_factory=dict)

    @property
    def device(self) -> torch.device:
        if torch.cuda.is_available():
            return torch.device("cuda")
        if not self.smoke:
            raise RuntimeError("no CUDA device; run with --cpu-smoke (tiny shapes on CPU) or --dry-run")
        return torch.device("cpu")

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"

    @property
    def h100_class(self) -> bool:
        """An H100-class GPU: where the README's MFU target applies."""
        return self.cuda and any(word in torch.cuda.get_device_name(0).upper().split() for word in H100_CLASS)

    def remaining(self) -> float:
        return self.deadline - time.time()

    def save(self, **details) -> None:
        """Merge `details` into the partial result and write it atomically."""
        self.partial.update(details)
        write_json(self.result_path, self.partial)


@contextmanager
def stand_in(ctx: CheckContext):
    """On CUDA, nothing; in the CPU smoke, the virtual accelerator, so a stage run there meets the
    placement rules and sync counting of a GPU (yields the mode, or None on CUDA)."""
    if ctx.cuda:
        yield None
        return
    from benchmarks.gpucheck.standins import virtual_accelerator

    with virtual_accelerator() as mode:
        yield mode


def write_json(path: Path, data: dict) -> None:
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, default=str))
    os.replace(tmp, path)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def step_times(fn, device: torch.device, warmup: int, steps: int) -> list[float]:
    """Wall seconds of each of `steps` calls of fn() after `warmup` untimed calls, synchronised
    before and after each call (the device queue is drained, so each time is the whole step)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(steps):
        sync(device)
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return times


def median(values: list[float]) -> float:
    return statistics.median(values)


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_mib(device: torch.device) -> float | None:
    """Peak bytes allocated by tensors since the last reset, MiB (CUDA only; None on CPU)."""
    if device.type != "cuda":
        return None
    return round(torch.cuda.max_memory_allocated(device) / 2**20, 1)


def free_device_memory(device: torch.device) -> None:
    import gc

    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def loader_batches(out_dir: Path, token_budget: int, batch_size: int, count: int, mean_length: int = 300,
                   n_docs: int = 2000) -> list[dict]:
    """`count` batches from the real packing loader (random_walk) over a generated linked corpus."""
    from stages.formats.generators import write_synthetic
    from stages.packing.config import PackingConfig
    from stages.packing.loader import PackLoader

    corpus = write_synthetic(Path(out_dir), n_docs=n_docs, mean_length=mean_length)
    packing = PackingConfig(strategy="random_walk", token_budget=token_budget, batch_size=batch_size)
    stream = iter(PackLoader.from_paths(corpus.graph, corpus.tokens, packing, seed=0))
    return [next(stream) for _ in range(count)]


def device_info() -> dict:
    """The accelerator and software this run measured, with the bf16 peak used for MFU."""
    info = {"host": platform.node(), "python": platform.python_version(), "torch": torch.__version__,
            "cuda_available": torch.cuda.is_available()}
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        name = torch.cuda.get_device_name(0)
        peak = peak_bf16_tflops(name)
        info.update({
            "name": name, "capability": list(torch.cuda.get_device_capability(0)),
            "memory_gib": round(props.total_memory / 2**30, 1), "multiprocessors": props.multi_processor_count,
            "cuda": torch.version.cuda, "device_count": torch.cuda.device_count(),
            "peak_bf16_tflops": peak[1] if peak else None,
            "peak_source": f"table entry {peak[0]!r}" if peak else
            "unknown device: no MFU (add it to PEAK_BF16_TFLOPS in stages/pretrain/metrics.py)",
        })
    else:
        info.update({"name": "cpu", "peak_bf16_tflops": None, "peak_source": "no CUDA device"})
    return info


def device_check(ctx: CheckContext) -> dict:
    """The device this run measures (a check of its own, so the parent never initialises CUDA)."""
    info = device_info()
    ctx.save(device=info)
    if not info["cuda_available"]:
        return {"status": "n/a" if ctx.smoke else "fail", "summary": "no CUDA device (a CPU smoke run)"}
    return {"status": "pass", "summary": f"{info['name']}, {info['memory_gib']} GiB, torch {info['torch']} "
                                         f"(CUDA {info['cuda']}), bf16 peak: {info['peak_bf16_tflops'] or 'unknown'}"}
