"""CPU stand-ins for the GPU bug classes (dtype under bf16 autocast, device placement, host syncs).

The device and sync stand-in is `benchmarks.gpucheck.standins.VirtualAccelerator` (its docstring
says why it is faithful); these tests first show that it catches what CUDA would catch.
"""

import pytest
import torch

from benchmarks.gpucheck.standins import DeviceMismatch, kernel_dtypes_recorder, virtual_accelerator
from models.graphlm import GraphLMConfig, GraphLMForTraining
from tests.fixtures import random_packed_batch


# ---- the stand-in itself --------------------------------------------------------------------------
def test_virtual_accelerator_rejects_what_cuda_rejects_and_counts_syncs():
    with virtual_accelerator() as mode:
        from accelerate import Accelerator

        device = Accelerator(cpu=True).device
        embed = torch.nn.Embedding(10, 4).to(device)
        host_ids = torch.tensor([[1, 2, 3]])
        with pytest.raises(DeviceMismatch):  # the case the meta device lets through
            embed(host_ids)
        out = embed(host_ids.to(device))
        assert out.device == device
        assert torch.arange(3, device=out.device).device == device  # follows its argument's device
        with pytest.raises(DeviceMismatch):
            out + torch.ones(1, 3, 4)
        out + torch.tensor(2.0)  # a host scalar is allowed, as on CUDA
        with pytest.raises(TypeError):
            out.numpy()
        assert mode.sync_count == 0
        float(out.sum())
        out.detach().cpu().numpy()  # after .cpu() the host may read it
        assert mode.sync_count == 2


# ---- finding 1: one dtype reaches the attention kernel under bf16 autocast ------------------------
@pytest.mark.parametrize("smear_keys", [False, True])
@pytest.mark.parametrize("mask", ["causal", "doc", "graph"])
def test_bf16_autocast_training_step_feeds_the_kernel_one_dtype(mask, smear_keys):
    batch = random_packed_batch(2, 64, 97, seed=3)
    model = GraphLMForTraining(GraphLMConfig.from_preset("tiny", vocab_size=97, mask=mask, smear_keys=smear_keys))
    recorder, calls = kernel_dtypes_recorder()
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16), recorder:
        out = model(batch)
    out.loss.backward()
    assert calls, "no attention kernel was called"
    assert all(len(set(dtypes)) == 1 for _, dtypes in calls), calls
    assert torch.isfinite(out.loss)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
