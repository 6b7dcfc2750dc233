"""Span losses: segment-local softmax, global softmax across segments, any-positive targets."""

import math

import torch

from models.memxlnet import global_softmax_loss, segment_local_loss


def _case():
    """Two documents: doc 0 has two segments, the answer in both (positions 1 and 0); doc 1 has one
    segment and no answer (its CLS is position 2). Logits are zero except where noted."""
    seg0 = {"start_logits": torch.tensor([[0.0, 2.0, 0.0], [0.0, 0.0, 1.0]]), "doc_index": torch.tensor([0, 1])}
    seg0["end_logits"] = seg0["start_logits"].clone()
    seg1 = {"start_logits": torch.tensor([[1.0, 0.0, 0.0]]), "doc_index": torch.tensor([0])}
    seg1["end_logits"] = seg1["start_logits"].clone()
    steps = [
        {"doc_index": torch.tensor([0, 1]), "input_ids": torch.zeros(2, 3), "cls_index": torch.tensor([2, 2]),
         "start_positions": torch.tensor([1, 2]), "end_positions": torch.tensor([1, 2]),
         "has_answer": torch.tensor([True, False])},
        {"doc_index": torch.tensor([0]), "input_ids": torch.zeros(1, 3), "cls_index": torch.tensor([2]),
         "start_positions": torch.tensor([0]), "end_positions": torch.tensor([0]), "has_answer": torch.tensor([True])},
    ]
    return [seg0, seg1], steps


def test_segment_local_loss_is_mean_cross_entropy_per_segment():
    outputs, steps = _case()
    e = math.e
    doc0_seg0 = -math.log(e**2 / (e**2 + 2))
    doc1 = -math.log(e / (e + 2))
    doc0_seg1 = -math.log(e / (e + 2))
    expected = (doc0_seg0 + doc1 + doc0_seg1) / 3
    assert math.isclose(segment_local_loss(outputs, steps).item(), expected, rel_tol=1e-6)


def test_global_softmax_with_and_without_all_answer_occurrences():
    outputs, steps = _case()
    e = math.e
    doc0_total = e**2 + 2 + e + 2  # both segments of document 0 share one softmax
    doc1 = -math.log(e / (e + 2))
    all_occurrences = (-math.log((e**2 + e) / doc0_total) + doc1) / 2
    first_only = (-math.log(e**2 / doc0_total) + doc1) / 2
    got_all = global_softmax_loss(outputs, steps, 2, all_occurrences=True).item()
    got_first = global_softmax_loss(outputs, steps, 2, all_occurrences=False).item()
    assert math.isclose(got_all, all_occurrences, rel_tol=1e-6)
    assert math.isclose(got_first, first_only, rel_tol=1e-6)
    assert got_all < got_first
