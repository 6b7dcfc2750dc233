"""CUDA-only checks of MemXLNet's time-step-major training; skipped cleanly without a GPU."""

import pytest
import torch

from benchmarks.gpucheck.qa import time_step_major_steps
from models.memxlnet import MemoryConfig, MemXLNetForQA, TimeStepMajorRunner, global_softmax_loss

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


def _loss_and_grads(checkpoint_segments: bool):
    vocab, n_mem, batch = 500, 4, 3
    read, write = list(range(vocab - 2 * n_mem, vocab - n_mem)), list(range(vocab - n_mem, vocab))
    torch.manual_seed(0)
    model = MemXLNetForQA.tiny(vocab, MemoryConfig(n_mem, read_token_ids=read, write_token_ids=write), dropout=0.0)
    model = model.cuda().train()
    steps = time_step_major_steps(3, batch, 48, read, write, vocab, torch.device("cuda"))
    loss = global_softmax_loss(TimeStepMajorRunner(model, checkpoint_segments)(steps, batch), steps, batch, True)
    loss.backward()
    return loss.detach(), {name: p.grad.detach() for name, p in model.named_parameters() if p.grad is not None}


def test_checkpoint_segments_gives_the_same_loss_and_gradients_on_cuda():
    loss, grads = _loss_and_grads(False)
    loss_ckpt, grads_ckpt = _loss_and_grads(True)
    assert torch.isfinite(loss)
    torch.testing.assert_close(loss_ckpt, loss)
    assert grads.keys() == grads_ckpt.keys() and any("memory" in name for name in grads)
    for name in grads:
        torch.testing.assert_close(grads_ckpt[name], grads[name], atol=1e-5, rtol=1e-4, msg=name)
