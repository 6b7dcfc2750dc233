"""Spec and config of the `evaluate` stage (light: no torch import)."""

import dataclasses
import os

from stages.core.config import WHEN_SET, knob
from stages.core.registry import StageSpec
from stages.core.reports import Report


@dataclasses.dataclass
class EvaluateConfig:
    """What to evaluate and how much of it. `task` picks the upstream: pretrain or qa."""

    task: str = knob("lm", "lm: perplexity of a pretrain checkpoint; qa: SQuAD v2 scores of a qa checkpoint",
                     choices=("lm", "qa"))
    max_docs: int = knob(32, "lm: documents scored per context (study=lm scores 100)", ge=1)
    corpus: str = knob("auto", "lm: auto (fresh on a generated sample, heldout on a dump) | heldout (the "
                       "pretrain split) | fresh (the sample regenerated with another seed) | path of a pretokenize artifact")
    copy_ngram: int = knob(4, "lm: a target token is copyable when the n-gram ending at it occurs in the graph context",
                           ge=1)
    score_mask: str = knob("trained", "lm: mask to score with (trained: the model's own; others are labelled cross_mask)",
                     choices=("trained", "causal", "doc", "graph"))
    generate_tokens: int = knob(32, "lm: tokens in the generation sample (with and without graph context)", ge=0)
    test_size: int = knob(0, "qa: evaluate only the first N questions (0: all)", ge=0)
    dataset: str = knob("", "qa: dataset to score (empty: the held-out split of the qa stage's dataset)")
    no_answer_threshold: float | None = knob(None, "qa: answer only when the answer margin (span - null score) "
                                                   "exceeds this; unset: the threshold saved with the model")
    test_documents: int = knob(0, "qa, dataset=sample: also score a test split of N generated documents, drawn "
                               "from its own seed stream (disjoint from train and dev), scored once; its metrics "
                               "are prefixed test_ (0: none)", signature=WHEN_SET, ge=0)
    reader_admission_f1: float = knob(0.0, "qa: admit the run's reader (curriculum phase 1, whole documents in "
                                      "view) when the dev cross-segment F1 of its best epoch (chosen on dev F1) reaches "
                                      "this; an admitted run also reports its test scores as admitted_test_* (0: no rule)",
                                      signature=WHEN_SET, ge=0, le=100)
    batch_size: int = knob(8, "evaluation batch size (the swap ablation pairs questions within a batch)",
                           signature=False, ge=1)
    seed: int = knob(0, "seed for the random-context baseline and sampling")

    def validate(self) -> None:
        if self.dataset.endswith(".json") and not os.path.isfile(os.path.expanduser(self.dataset)):
            raise ValueError(f"dataset: {self.dataset} does not exist; pass a SQuAD v2 JSON file or leave it empty")


def _upstream(cfg: EvaluateConfig) -> tuple[str, ...]:
    return ("pretrain",) if cfg.task == "lm" else ("qa",)


STAGE = StageSpec(
    name="evaluate",
    config_cls=EvaluateConfig,
    run="stages.evaluate.run:run",
    upstream=_upstream,
    description="perplexity in isolated/graph/random contexts (task=lm) or SQuAD v2 EM/F1 (task=qa)",
    variants=({"task": "lm"}, {"task": "qa"}),
    derived="stages.pretrain.eval_corpus:fresh_corpus_nodes",
)
REPORTS = (Report(
    "evaluate",
    seed_metrics=(
        "nll_copy_isolated", "nll_copy_graph", "nll_copy_random", "d_copy_graph_isolated", "d_copy_graph_random",
        "nll_fact_isolated", "nll_fact_graph", "d_fact_graph_isolated", "d_fact_graph_random",
        "d_repeat", "ppl_isolated", "ppl_graph", "ppl_random",
        "exact", "f1", "HasAns_f1", "NoAns_f1", "local_f1", "cross_segment_f1", "unanswerable_f1",
        "memory_gain_local_f1", "memory_gain_cross_segment_f1", "memory_frozen_cross_segment_f1",
        # generated QA data: abstaining on "the patron guild of <a person never named>" needs memory
        "form_absent_person_guild_year_exact", "memory_gain_form_absent_person_guild_year_exact",
    ),
    paired_metrics=("d_copy_graph_isolated", "d_fact_graph_isolated", "nll_copy_graph", "f1", "local_f1",
                    "cross_segment_f1", "form_absent_person_guild_year_exact"),
),)

