"""CPU stand-ins for the GPU bug classes: a tensor left on the host, and host-device syncs.

`VirtualAccelerator` is a `TorchFunctionMode` that gives the CPU two residences, as a CUDA run has:

* the **accelerator**, `ACCELERATOR` = ``cpu:0``: what Accelerate places things on when
  ``ACCELERATE_TORCH_DEVICE=cpu:0`` (its own documented override of the device), what
  ``.to(device)`` reaches and what a factory called with ``device=`` creates;
* the **host**, plain ``cpu``: what numpy, ``torch.from_numpy``, factories without a device and
  ``.cpu()`` produce (on CUDA these are exactly the tensors that live in host memory).

Every tensor gets the residence of what made it. An op that mixes an accelerator tensor with a
host tensor of one or more dimensions raises, as CUDA does ("Expected all tensors to be on the
same device"); host 0-dim tensors, index tensors and `copy_` are allowed, as CUDA allows them. A
tensor's ``.device`` reads ``cpu:0`` on the accelerator, so code that creates tensors "on x's
device" follows x as it would on a GPU, and ``.numpy()`` of an accelerator tensor raises as it does
for a CUDA tensor. Every read of an accelerator value by the host (``.item()``, ``float()``,
``bool()``, ``.tolist()``, ``.cpu()``, and ``.to()`` the host from project code) is a host-device
sync on a GPU; the mode counts them by call site.

Why this is faithful: the rules are CUDA's own placement rules, applied to the same Python calls
the code makes on a GPU; only the storage stays in host memory. Tensors whose residence is unknown
(made inside C++ autograd, such as gradients, or received from other processes) are compatible with
both, so the stand-in never reports a mismatch that CUDA would not; it can miss one only where a
value crosses C++ (gradients and optimizer state follow their parameters on a GPU too).
"""

from __future__ import annotations

import os
import traceback
from collections import Counter
from contextlib import contextmanager
from pathlib import Path

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten

ACCELERATOR = torch.device("cpu", 0)
_TAG = "_virtual_residence"
_ACC, _HOST = "accelerator", "host"

_T = torch.Tensor
# Reads of a value by the host: each is a device->host copy the host waits for on a GPU.
_SYNC_READS = {_T.item, _T.tolist, _T.__float__, _T.__int__, _T.__bool__, _T.__index__, _T.cpu, _T.numpy}
_MOVES = {_T.to, _T.cuda}
# CUDA accepts host tensors in these positions (indices, a cross-device copy's source).
_INDEXING = {_T.__getitem__, _T.__setitem__, _T.index_select, _T.copy_}
_DEVICE_GET = _T.device.__get__
_PROJECT = str(Path(__file__).resolve().parents[2])


class DeviceMismatch(RuntimeError):
    """An op mixed an accelerator tensor with a host tensor (CUDA would raise the same)."""


def residence(tensor: torch.Tensor) -> str | None:
    """"accelerator", "host" or None (unknown) for a tensor seen by the mode."""
    return getattr(tensor, _TAG, None)


def _set(value, where: str | None):
    if where is not None:
        for item in tree_flatten(value)[0]:
            if isinstance(item, torch.Tensor):
                try:
                    setattr(item, _TAG, where)
                except (AttributeError, RuntimeError):  # e.g. a tensor subclass with slots
                    pass
    return value


def _is_accelerator(device) -> bool:
    return device is not None and torch.device(device) == ACCELERATOR


def _target_of_move(func, args, kwargs) -> str | None:
    """Where `.to(...)`/`.cuda()` sends a tensor, or None when only the dtype changes."""
    if func is _T.cuda:
        return _ACC
    for value in [*args[1:], kwargs.get("device"), kwargs.get("other")]:
        if isinstance(value, torch.Tensor):
            return residence(value)
        if isinstance(value, (str, torch.device)):
            try:
                return _ACC if _is_accelerator(value) else _HOST
            except RuntimeError:  # a dtype name such as "float16" is not a device
                continue
    return None


def _is_project(filename: str) -> bool:
    return (filename.startswith(_PROJECT) and "site-packages" not in filename
            and not filename.endswith("standins.py"))


def _call_site() -> str:
    """The innermost project frame: where the sync is written (or the library call that makes it)."""
    for frame in reversed(traceback.extract_stack()[:-2]):  # less this function and the mode
        if _is_project(frame.filename):
            return f"{os.path.relpath(frame.filename, _PROJECT)}:{frame.lineno}"
    return "<outside the project>"


def _called_by_project() -> bool:
    frame = traceback.extract_stack(limit=3)[0]  # the caller of the mode
    return _is_project(frame.filename)


class VirtualAccelerator(TorchFunctionMode):
    """The placement and sync rules of a CUDA device, on the CPU (see the module docstring)."""

    def __init__(self) -> None:
        super().__init__()
        self.syncs: Counter[str] = Counter()

    @property
    def sync_count(self) -> int:
        return sum(self.syncs.values())

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func == _DEVICE_GET:
            return ACCELERATOR if residence(args[0]) == _ACC else func(*args, **kwargs)
        if func in _SYNC_READS:
            if residence(args[0]) == _ACC:
                if func is _T.numpy:
                    raise TypeError("can't convert an accelerator tensor to numpy: copy it to the host "
                                    "with .cpu() first (virtual accelerator)")
                self.syncs[_call_site()] += 1
            return _set(func(*args, **kwargs), _HOST if func is _T.cpu else None)
        if func in _MOVES:
            target = _target_of_move(func, args, kwargs)
            # Libraries move values to the real device they grouped tensors by, which on the CPU
            # is the host and on a GPU the GPU itself: only the project's own moves count.
            if target == _HOST and residence(args[0]) == _ACC and _called_by_project():
                self.syncs[_call_site()] += 1
            out = func(*args, **kwargs)
            if isinstance(args[0], torch.nn.Parameter) and target is not None:
                # Module.to() stores the moved data into the same Parameter (`param.data = out`).
                _set(args[0], target)
            return _set(out, target or residence(args[0]))
        tensors = [t for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)]
        if "device" in kwargs and kwargs["device"] is not None:
            where = _ACC if _is_accelerator(kwargs["device"]) else _HOST
        else:
            where = self._combine(func, tensors)
        out = func(*args, **kwargs)
        if where is None and not tensors and isinstance(out, torch.Tensor):
            where = _HOST  # a factory without a device makes a host tensor, as on CUDA
        return _set(out, where)

    @staticmethod
    def _combine(func, tensors: list[torch.Tensor]) -> str | None:
        places = {residence(t) for t in tensors}
        if _ACC not in places:
            return _HOST if _HOST in places else None
        if func not in _INDEXING:
            host = [t for t in tensors if residence(t) == _HOST and t.dim() > 0]
            if host:
                name = getattr(func, "__qualname__", getattr(func, "__name__", repr(func)))
                raise DeviceMismatch(
                    f"Expected all tensors to be on the same device, but found at least two devices, "
                    f"{ACCELERATOR} and cpu! ({name} got a host tensor of shape {tuple(host[0].shape)}; "
                    f"virtual accelerator)")
        return _ACC


@contextmanager
def virtual_accelerator():
    """Run the body with the CPU split into accelerator (``cpu:0``) and host; yields the mode.

    Sets ``ACCELERATE_TORCH_DEVICE`` so that Accelerate and `stages.core.devices.local_device`
    place models on the accelerator, and forgets Accelerate's cached state on both sides.
    """
    from accelerate.state import AcceleratorState, GradientState

    previous = os.environ.get("ACCELERATE_TORCH_DEVICE")
    os.environ["ACCELERATE_TORCH_DEVICE"] = str(ACCELERATOR)
    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()
    mode = VirtualAccelerator()
    try:
        with mode:
            yield mode
    finally:
        if previous is None:
            os.environ.pop("ACCELERATE_TORCH_DEVICE", None)
        else:
            os.environ["ACCELERATE_TORCH_DEVICE"] = previous
        AcceleratorState._reset_state(reset_partial_state=True)
        GradientState._reset_state()


def kernel_dtypes_recorder():
    """(mode, calls): a `TorchFunctionMode` that records the q/k/v dtypes of every attention kernel call."""
    from torch.nn.attention.flex_attention import flex_attention

    kernels = {torch.nn.functional.scaled_dot_product_attention: "sdpa", flex_attention: "flex"}
    calls: list[tuple[str, tuple[torch.dtype, ...]]] = []

    class _Recorder(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            if func in kernels:
                qkv = [*args[:3], *(kwargs[k] for k in ("query", "key", "value") if k in kwargs)][:3]
                calls.append((kernels[func], tuple(t.dtype for t in qkv)))
            return func(*args, **kwargs)

    return _Recorder(), calls


