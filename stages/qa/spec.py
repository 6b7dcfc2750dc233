"""Stage spec of `qa` (light: stdlib and the config only)."""

from stages.core.registry import Headline, StageSpec
from stages.qa.config import QAConfig

#: What both QA studies share: data, seeds, one thread per run.
_STUDY = {"seed": "1,2,3", "sample_documents": "1200", "sample_dev_documents": "200", "num_threads": "1"}

#: The short documents and two-stage curriculum of `study=qa_memory` and the studies built on it.
_SHORT = {"memory_num_tokens": "0,4", **_STUDY, "sample_documents": "400", "sample_cross_only_documents": "20000",
          "sample_neighbours": "1", "sample_neighbour_guilds": "unregistered", "memory_extends_segment": "true",
          "progressive_segments": "[1,2]", "stage_seq_lengths": "[104,64]"}

#: `study=qa_memory_shared`; `study=qa_memory_wide` is the same with a wider reader, `qa_memory_lookups`
#: with more register lookups to learn from.
_SHARED = {**_SHORT, "stage_epochs": "[16,3]", "learning_rate": "5e-4", "shared_reader": "true"}

# `study=qa_memory`: does memory help across segments? Memory vs none, 3 seeds each (the
# generated data stays fixed; the seed changes init and data order). Short documents (one
# neighbour: the subject's facts, one neighbour's, then the register; about 81 context tokens, two
# 64-token segments, the second holding the whole register and never the subject). The
# neighbours' guilds are not registered: memory has to carry which registered guild came before
# the register. Curriculum: 12 epochs with each whole document in one 104-token segment (the
# reader learns the cross-segment question with everything in view, README d35-d37), then 2
# epochs of the two 64-token segments, where only memory can carry the first segment to the
# second. Memory tokens extend the segment, so both variants read the same windows (d22, d23).
# 400 documents keep every question (local scores); 20,000 more only their cross-segment one.
# `study=qa_memory_shared`: the same documents and segments, both variants continuing one
# memory-free reader per seed (`shared_reader`), so the paired difference measures memory alone;
# learning rate 5e-4, at which the reader of d36's documents learned the question in view for a
# seed that 2e-3 left at ln 4 (README d39, d40).
# `study=qa_memory_wide`: qa_memory_shared with a reader of hidden size 128 (8 heads), 10 reader
# epochs: at size 64 the reader's learning of the register lookup in view was a seed-dependent
# step (epoch 4, 8, 17 or never in 30 epochs: README "30 reader epochs"), which spread the
# paired differences; a wider model has more heads to find the lookup with.
# `study=qa_memory_lookups`: qa_memory_shared with half the cross-only documents (10,000), each
# keeping one of its register lookups ("When was the Belor Guild founded?") too, so an epoch costs
# the same. Every failed reader of the studies above stayed at chance on that one-hop lookup, the
# last hop of the cross-segment question, which the 400 full documents ask only 1,600 times an
# epoch against 20,000 cross-segment questions; now 11,600 times.
# `study=qa_memory_one_reader`: every seed continues one reader that learned the cross-segment
# question in view (seed 2's of 30 epochs: 99.6 dev F1 in view, the first of seeds 1-5 to reach 95;
# README "30 reader epochs"), and the seeds vary the memory stage only (init of what memory adds,
# data order, dropout), as seeds vary only the fine-tuning of a pretrained model. 6 memory epochs:
# in 3, seed 4's stage 2 did not carry a reader that had learned.
# `study=qa_memory_long`: the earlier design on the default documents (two neighbours, four
# 64-token segments), whose ceiling never learned the question (d28-d33).
# `study=qa_ceiling`: the reader with each whole default document in one 192-token segment and no
# memory, 7,200 steps (the earlier study budget). What it cannot answer with everything in view,
# memory cannot help it answer.
_STUDIES = {
    "qa_memory": {**_SHORT, "stage_epochs": "[12,2]"},
    "qa_memory_shared": _SHARED,
    "qa_memory_wide": {**_SHARED, "tiny_d_model": "128", "stage_epochs": "[10,3]"},
    "qa_memory_lookups": {**_SHARED, "sample_cross_only_documents": "10000", "sample_cross_only_lookups": "1"},
    "qa_memory_one_reader": {**_SHARED, "stage_epochs": "[30,6]", "shared_reader_seed": "2"},
    "qa_memory_long": {"memory_num_tokens": "0,4", **_STUDY, "progressive_segments": "[1,4]",
                       "stage_epochs": "[12,6]", "memory_extends_segment": "true",
                       "sample_neighbour_guilds": "unregistered"},
    "qa_ceiling": {**_STUDY, "memory_num_tokens": "0", "max_seq_length": "192", "max_n_segs": "1",
                   "progressive_segments": "[1]", "epochs_per_stage": "6"},
}

STAGE = StageSpec(
    name="qa",
    config_cls=QAConfig,
    run="stages.qa.train:run",
    upstream=(),
    description="MemXLNet long-document SQuAD v2: progressive-segment phase-2 training, resumable",
    resumable=True,
    prefetch="stages.qa.spec:prefetch",
    grid={"memory_num_tokens": "0,4"},  # the demo's comparison: without and with memory tokens
    studies=_STUDIES,
    # A shared reader trains inside the first run of its seed: with `stage_epochs=[30,3]` and three
    # runs on 2 cores that run takes about 2 hours, and the default 60-minute limit cut it (README);
    # every shared-reader study gets 180 minutes.
    study_minutes={name: 180 for name, keys in _STUDIES.items() if keys.get("shared_reader") == "true"},
    # The forms of generated questions (dataset=sample) split the local kind: person lookups and the
    # register lookup (the last hop of every cross-segment question). Absent on other data.
    seed_metrics=("dev_local_f1", "dev_cross_segment_f1", "dev_unanswerable_f1", "dev_f1", "dev_local_exact",
                  "dev_cross_segment_exact", "dev_form_home_town_f1", "dev_form_trade_f1",
                  "dev_form_patron_guild_f1", "dev_form_guild_year_f1"),
    paired_metrics=("dev_local_f1", "dev_cross_segment_f1", "dev_unanswerable_f1", "dev_f1", "dev_form_guild_year_f1"),
    headlines=(
        Headline(
            "MemXLNet QA: dev F1 by question kind (the qa run's own dev split)",
            ("dev_local_f1", "dev_cross_segment_f1", "dev_unanswerable_f1", "dev_f1", "dev_HasAns_f1", "train_steps"),
            plot=("qa_f1_by_kind", ("dev_local_f1", "dev_cross_segment_f1", "dev_unanswerable_f1"),
                  "QA dev F1 by question kind"),
        ),
        Headline(
            "MemXLNet QA: SQuAD v2 scores (evaluate stage)",
            tuple(f"evaluate:{m}" for m in ("exact", "f1", "HasAns_exact", "HasAns_f1", "NoAns_exact", "NoAns_f1",
                                            "local_f1", "cross_segment_f1", "unanswerable_f1")),
            plot=("qa_f1", ("f1", "HasAns_f1", "NoAns_f1"), "SQuAD v2 F1 by variant"),
        ),
    ),
)

#: The shared reader (`shared_reader=true`): a qa run of `QAConfig.reader_config()` (stage 1 alone,
#: without memory), started by the qa runs that share it rather than by `jobs/`, so it is not
#: registered: `{root}/qa_reader/<signature>/` is an artifact like any other.
READER = StageSpec(
    name="qa_reader",
    config_cls=QAConfig,
    run="stages.qa.train:run",
    description="the memory-free reader that qa runs with shared_reader=true continue",
    resumable=True,
)

#: Values of QA fields that need nothing from a hub.
_BUILTIN = {"model": {"tiny"}, "tokenizer": {"auto"}, "dataset": {"sample", ""}, "eval_dataset": {"sample", ""}}


def prefetch(cfg: QAConfig, cache_dir) -> list[str]:
    """HF models/tokenizers and `datasets` given by hub id, into the root's cache for offline jobs."""
    from stages.core.offline import fetch_dataset, fetch_hf_repo, is_hub_id

    done = []
    for key in ("model", "tokenizer"):
        ref = getattr(cfg, key)
        if ref not in _BUILTIN[key] and is_hub_id(ref):
            done.append(fetch_hf_repo(f"qa.{key}", ref, cache_dir))
    # The QA stage reads split "train" of `dataset` and "validation" of `eval_dataset`.
    for key, split in (("dataset", "train"), ("eval_dataset", "validation")):
        ref = getattr(cfg, key)
        if ref not in _BUILTIN[key] and is_hub_id(ref):
            done.append(fetch_dataset(f"qa.{key}", ref, split, cache_dir))
    return done
