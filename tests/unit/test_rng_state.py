"""Resumable RNG state: every generator a training step draws from, CUDA's included."""

import random

import numpy as np
import pytest
import torch

from stages.core.devices import rng_state, set_rng_state
from stages.core.safestate import load_state, save_state


def draws() -> tuple:
    cuda = torch.rand(3, device="cuda").tolist() if torch.cuda.is_available() else None
    return torch.rand(3).tolist(), np.random.rand(3).tolist(), random.random(), cuda


def test_a_saved_rng_state_replays_the_same_draws(tmp_path):
    save_state(tmp_path, "rng", rng_state())
    expected = draws()
    set_rng_state(load_state(tmp_path, "rng"))
    assert draws() == expected


def test_a_cuda_rng_state_off_a_gpu_is_a_one_line_error():
    state = {**rng_state(), "cuda": [torch.zeros(16, dtype=torch.uint8)]}
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(RuntimeError, match="resume it on a GPU node"):
        set_rng_state(state)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_dropout_on_the_gpu_replays_after_a_restore(tmp_path):
    save_state(tmp_path, "rng", rng_state())
    expected = torch.nn.functional.dropout(torch.ones(64, device="cuda"), 0.5).tolist()
    set_rng_state(load_state(tmp_path, "rng"))
    assert torch.nn.functional.dropout(torch.ones(64, device="cuda"), 0.5).tolist() == expected
