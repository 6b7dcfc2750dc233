"""Training metrics: a JSONL log per run (rank 0) and the MFU estimate."""

from __future__ import annotations

import json
from pathlib import Path

import torch

# Dense bf16 peak TFLOP/s by GPU name fragment (no sparsity).
_PEAK_BF16_TFLOPS = (("H200", 989.0), ("H100", 989.0), ("A100", 312.0), ("L40S", 362.0), ("A10", 125.0))


def flops_per_token(n_params: int, n_layers: int, d_model: int, seq_len: int) -> float:
    """Training FLOPs per token: 6N for the matmuls plus 12*L*d*T for causal attention scores
    (PaLM appendix B); N counts the tied output projection once."""
    return 6.0 * n_params + 12.0 * n_layers * d_model * seq_len


def peak_flops(configured_tflops: float = 0.0) -> float | None:
    """Peak FLOP/s of one accelerator: configured, or guessed from the CUDA device name."""
    if configured_tflops > 0:
        return configured_tflops * 1e12
    if not torch.cuda.is_available():
        return None
    name = torch.cuda.get_device_name()
    for fragment, tflops in _PEAK_BF16_TFLOPS:
        if fragment in name:
            return tflops * 1e12
    return None


class MetricsLog:
    """Append-only JSONL of per-step metrics; on resume, lines past the checkpoint are dropped
    so the log reads as one uninterrupted run."""

    def __init__(self, path: Path, enabled: bool, resume_step: int) -> None:
        self.path = Path(path)
        self.enabled = enabled
        if enabled and self.path.exists():
            kept = [line for line in self.path.read_text().splitlines()
                    if line.strip() and json.loads(line).get("step", 0) <= resume_step]
            self.path.write_text("".join(line + "\n" for line in kept))

    def write(self, record: dict) -> None:
        if self.enabled:
            with open(self.path, "a") as handle:
                handle.write(json.dumps(record) + "\n")
