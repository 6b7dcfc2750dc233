"""Training state on shared storage without pickle: a JSON tree plus one safetensors file.

Checkpoints live under the artifact root, which other users can often write to. Unpickling a
file from there runs whatever code the file names, so resumable state (optimizer, scheduler,
sampler, RNG) is stored as data only: the structure and plain values as JSON, every tensor and
numpy array in ``{name}.safetensors``. Loading never executes code from the files.

Round trips are exact: tensors keep dtype and bits, Python floats survive JSON (``repr`` is
shortest round-trip; NaN and infinity use JSON's extension), tuples and non-string dict keys
are tagged so ``random.getstate()`` and ``np.random.get_state()`` come back as they went in.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

#: Suffixes of files this project wrote with pickle before; they are never loaded.
PICKLE_SUFFIXES = (".pt", ".pkl", ".pickle", ".bin")

_TAGS = ("__tensor__", "__ndarray__", "__tuple__", "__dict__", "__npscalar__")


class UnsafeStateError(RuntimeError):
    """A state file is missing, malformed or in a pickle format this project refuses to load."""


def _encode(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, torch.Tensor):
        key = f"t{len(tensors)}"
        tensors[key] = obj.detach().cpu().contiguous().clone()
        return {"__tensor__": key}
    if isinstance(obj, np.ndarray):
        key = f"t{len(tensors)}"
        tensors[key] = torch.from_numpy(np.ascontiguousarray(obj).copy())
        return {"__ndarray__": key}
    if isinstance(obj, np.generic):
        return {"__npscalar__": [obj.dtype.str, obj.item()]}
    if isinstance(obj, (bool, int, float, str)) or obj is None:
        return obj
    if isinstance(obj, tuple):
        return {"__tuple__": [_encode(v, tensors) for v in obj]}
    if isinstance(obj, list):
        return [_encode(v, tensors) for v in obj]
    if isinstance(obj, dict):
        if all(isinstance(k, str) and k not in _TAGS for k in obj):
            return {k: _encode(v, tensors) for k, v in obj.items()}
        return {"__dict__": [[_encode(k, tensors), _encode(v, tensors)] for k, v in obj.items()]}
    raise TypeError(f"cannot store {type(obj).__name__} in training state (only tensors, arrays and JSON data)")


def _decode(obj: Any, tensors: dict[str, torch.Tensor], source: Path) -> Any:
    if isinstance(obj, list):
        return [_decode(v, tensors, source) for v in obj]
    if not isinstance(obj, dict):
        return obj
    if len(obj) == 1:
        (tag, value), = obj.items()
        if tag in ("__tensor__", "__ndarray__"):
            if value not in tensors:
                raise UnsafeStateError(f"{source}: tensor {value!r} is missing from the safetensors file")
            return tensors[value] if tag == "__tensor__" else tensors[value].numpy()
        if tag == "__npscalar__":
            return np.dtype(value[0]).type(value[1])
        if tag == "__tuple__":
            return tuple(_decode(v, tensors, source) for v in value)
        if tag == "__dict__":
            return {_decode(k, tensors, source): _decode(v, tensors, source) for k, v in value}
    return {k: _decode(v, tensors, source) for k, v in obj.items()}


def state_paths(directory: Path, name: str) -> tuple[Path, Path]:
    """(JSON file, safetensors file) of the state `name` in `directory`."""
    return Path(directory) / f"{name}.json", Path(directory) / f"{name}.safetensors"


def save_state(directory: Path, name: str, state: Any) -> None:
    """Write `state` as ``{name}.json`` (+ ``{name}.safetensors`` when it holds tensors)."""
    from safetensors.torch import save_file

    json_path, tensor_path = state_paths(directory, name)
    tensors: dict[str, torch.Tensor] = {}
    tree = _encode(state, tensors)
    if tensors:
        tmp = tensor_path.with_name(tensor_path.name + ".tmp")
        save_file(tensors, str(tmp))
        os.replace(tmp, tensor_path)
    tmp = json_path.with_name(json_path.name + ".tmp")
    tmp.write_text(json.dumps({"format": "wikigraph-state-1", "has_tensors": bool(tensors), "state": tree}))
    os.replace(tmp, json_path)


def load_state(directory: Path, name: str) -> Any:
    """Read a state written by `save_state`. Never unpickles: a pickle left where the state
    should be (an older checkpoint, or a planted file) is refused with an error naming it."""
    from safetensors.torch import load_file

    json_path, tensor_path = state_paths(directory, name)
    if not json_path.is_file():
        legacy = [p.name for p in sorted(Path(directory).glob(f"{name}*")) if p.suffix in PICKLE_SUFFIXES]
        hint = (f"; found pickle file(s) {legacy}, which are never loaded (they can run code): "
                "delete this checkpoint folder or rerun the stage with force=true") if legacy else ""
        raise UnsafeStateError(f"{json_path} is missing{hint}")
    try:
        payload = json.loads(json_path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise UnsafeStateError(f"{json_path} is not a JSON training state ({err}); delete the checkpoint "
                               "folder or rerun the stage with force=true") from None
    if not isinstance(payload, dict) or payload.get("format") != "wikigraph-state-1":
        raise UnsafeStateError(f"{json_path} is not a wikigraph training state")
    tensors = {}
    if payload.get("has_tensors"):
        try:
            tensors = load_file(str(tensor_path))
        except Exception as err:  # noqa: BLE001 - safetensors raises its own error types for bad headers
            raise UnsafeStateError(f"{tensor_path} is unreadable ({err}); delete the checkpoint folder or "
                                   "rerun the stage with force=true") from None
    return _decode(payload["state"], tensors, json_path)
