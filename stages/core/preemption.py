"""Preemption: SIGUSR2 only sets a flag; the training loop saves at the next step boundary.

Slurm sends SIGUSR2 before a time limit (`--signal=USR2@<s>`) or on preemption. Doing real
work inside a signal handler is unsafe (it can interrupt an optimizer step or a collective),
so the handler records the request and the loop acts on it between steps, then raises
`Preempted`. The launcher turns that into a requeue; the relaunch resumes from the checkpoint.
This is the one preemption path: the job installs the flag before its stage starts (replacing
submitit's own handler, which would requeue from inside the signal handler), so a signal that
arrives before the training loop is not lost, and a stage without step boundaries runs on.
"""

from __future__ import annotations

import signal
import threading


class Preempted(Exception):
    """Raised by a stage after it saved a checkpoint because preemption was requested."""

    def __init__(self, step: int):
        super().__init__(f"preempted: checkpoint saved at step {step}; relaunch to resume")
        self.step = step


class PreemptionFlag:
    """A flag set by SIGUSR2 (or by `request()` in tests); `install` gives the process's one."""

    _process: PreemptionFlag | None = None

    def __init__(self) -> None:
        self._event = threading.Event()

    @classmethod
    def install(cls, signum: int = signal.SIGUSR2) -> PreemptionFlag:
        """The process's flag, with a SIGUSR2 handler that only sets it (installed again on each
        call, in case a library replaced it)."""
        if PreemptionFlag._process is None:
            PreemptionFlag._process = cls()
        flag = PreemptionFlag._process
        signal.signal(signum, lambda _signum, _frame: flag._event.set())
        return flag

    def request(self) -> None:
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()

    def is_set_anywhere(self) -> bool:
        """True if any rank saw the signal, so that all ranks stop at the same step."""
        import torch.distributed as dist

        local = self.is_set()
        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
            return local
        import torch

        backend = dist.get_backend()
        device = "cuda" if backend == "nccl" else "cpu"
        value = torch.tensor([1 if local else 0], device=device)
        dist.all_reduce(value, op=dist.ReduceOp.MAX)
        return bool(value.item())
