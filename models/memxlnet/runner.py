"""Time-step-major execution of documents: step t runs segment t of every document still active."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from models.memxlnet.memory import scatter_rows, select_rows
from models.memxlnet.modeling import MemXLNetForQA

STEP_KEYS = ("input_ids", "attention_mask", "token_type_ids", "p_mask")


def place_steps(steps: list[dict], device: torch.device) -> list[dict]:
    """Every tensor of every step on `device` (the rest as is); a no-op for tensors already there."""
    return [{k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in step.items()}
            for step in steps]


class TimeStepMajorRunner(nn.Module):
    """Runs a document batch through MemXLNetForQA, carrying memory from segment t to t+1.

    ``steps[t]`` holds segment t of the documents listed in ``steps[t]["doc_index"]`` (positions in
    the document batch). Documents that have no segment t are simply absent from step t: they are
    not computed and their memory rows are left untouched.

    What is kept for backprop through time: by default every segment's activation graph lives until
    the loss is computed, because gradients flow through the memory into earlier segments and the
    global softmax couples all segments of a document. With ``checkpoint_segments=True`` only each
    segment's inputs, logits and memory state are kept; a segment's activations are recomputed
    during backward, so peak activation memory is one segment's instead of ``max_n_segs``'.
    Gradients are identical either way.

    ``memory_donor_shift`` (evaluation only, 0 = off): before the second segment, document ``i``'s
    memory is replaced by the memory that document ``i + shift`` (cyclically, within the batch)
    wrote in its first segment, and later segments continue from it: the swap ablation, which
    keeps the memory in distribution but takes away what the document's own first segment wrote.
    """

    def __init__(self, model: MemXLNetForQA, checkpoint_segments: bool = False, memory_donor_shift: int = 0):
        super().__init__()
        self.model = model
        self.checkpoint_segments = checkpoint_segments
        self.memory_donor_shift = memory_donor_shift

    def _segment(self, input_ids, attention_mask, token_type_ids, p_mask, state):
        out = self.model(input_ids, attention_mask, token_type_ids, p_mask, state)
        return out.start_logits, out.end_logits, out.memory_state, out.memory_info

    def forward(self, steps: list[dict], n_docs: int) -> list[dict]:
        """Per step: ``start_logits``/``end_logits`` [b_t, L], ``doc_index`` and ``memory_info``.

        Steps may come from the host: this is where they join the model's device.
        """
        steps = place_steps(steps, next(self.model.parameters()).device)
        state = self.model.init_memory(n_docs)
        outputs = []
        for t, step in enumerate(steps):
            if t == 1 and self.memory_donor_shift and state is not None:
                state = {k: v.roll(-self.memory_donor_shift, dims=0) for k, v in state.items()}
            rows = step["doc_index"]
            sub = None if state is None else select_rows(state, rows)
            args = [step[k] for k in STEP_KEYS]
            if self.checkpoint_segments and torch.is_grad_enabled():
                start, end, new_sub, info = checkpoint(self._segment, *args, sub, use_reentrant=False)
            else:
                out = self.model(*args, sub)
                start, end, new_sub, info = out.start_logits, out.end_logits, out.memory_state, out.memory_info
            if state is not None:
                state = scatter_rows(state, rows, new_sub)
            outputs.append({"start_logits": start, "end_logits": end, "doc_index": rows, "memory_info": info})
        return outputs
