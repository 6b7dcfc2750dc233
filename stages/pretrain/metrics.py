"""Training metrics: a JSONL log per run (rank 0) and the MFU estimate."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import torch

# Dense bf16 peak TFLOP/s (no sparsity, vendor data sheets) by GPU name words; the first entry
# whose words all appear, in order, as whole words of the device name wins, so the PCIe and NVL
# variants of a part (lower clocks and power) come before its SXM default.
PEAK_BF16_TFLOPS = (
    ("H100 PCIe", 756.0), ("H100 NVL", 835.0), ("H100", 989.0),
    ("H200 NVL", 835.0), ("H200", 989.0), ("GH200", 989.0),
    ("A100", 312.0), ("L40S", 362.0), ("L4", 121.0), ("A10", 125.0),
)


def flops_per_token(n_params: int, n_layers: int, d_model: int, seq_len: int, density: float) -> float:
    """Training FLOPs per token: 6N for the matmuls (N counts the tied output projection once)
    plus 12*L*d*T*density for attention (PaLM appendix B counts 12*L*d*T, the whole T x T score
    matrix): `density` is the share of score blocks the kernel computes
    (`AttentionMask.block_density`), so a doc or graph mask is not credited with blocks it skips."""
    return 6.0 * n_params + 12.0 * n_layers * d_model * seq_len * density


def peak_flops(configured_tflops: float = 0.0) -> float | None:
    """Peak FLOP/s of one accelerator: configured, or guessed from the CUDA device name."""
    if configured_tflops > 0:
        return configured_tflops * 1e12
    if not torch.cuda.is_available():
        return None
    match = peak_bf16_tflops(torch.cuda.get_device_name())
    return match[1] * 1e12 if match else None


def peak_bf16_tflops(device_name: str) -> tuple[str, float] | None:
    """(table entry, dense bf16 peak TFLOP/s) for a CUDA device name, or None if it is unknown.

    Whole words only: "NVIDIA A10G" is not an "A10", "NVIDIA H100 PCIe" is not the SXM part.
    """
    words = re.findall(r"[A-Za-z0-9]+", device_name.upper())
    for entry, tflops in PEAK_BF16_TFLOPS:
        wanted = entry.upper().split()
        if any(words[i:i + len(wanted)] == wanted for i in range(len(words))):
            return entry, tflops
    return None


class MetricsLog:
    """Append-only JSONL of per-step metrics; on resume, lines past the checkpoint are dropped
    so the log reads as one uninterrupted run. A torn line (the process was killed mid-write)
    is skipped and counted in `torn_lines`, never fatal."""

    def __init__(self, path: Path, enabled: bool, resume_step: int) -> None:
        self.path = Path(path)
        self.enabled = enabled
        self.torn_lines = 0
        if enabled and self.path.exists():
            kept = []
            for line in self.path.read_text(errors="replace").splitlines():
                try:
                    record = json.loads(line) if line.strip() else None
                except ValueError:
                    record, self.torn_lines = None, self.torn_lines + 1
                if isinstance(record, dict) and record.get("step", 0) <= resume_step:
                    kept.append(line)
            if self.torn_lines:
                logging.getLogger("wikigraph.pretrain").warning(
                    "%s: skipped %d torn line(s) left by an interrupted run", self.path, self.torn_lines)
            self.path.write_text("".join(line + "\n" for line in kept))

    def write(self, record: dict) -> None:
        if self.enabled:
            with open(self.path, "a") as handle:
                handle.write(json.dumps(record) + "\n")
