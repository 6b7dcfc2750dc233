"""Stage spec of `qa` (light: stdlib and the config only)."""

from stages.core.registry import StageSpec
from stages.core.reports import Headline, Report
from stages.qa.config import QAConfig

STAGE = StageSpec(
    name="qa",
    config_cls=QAConfig,
    run="stages.qa.train:run",
    upstream=(),
    description="MemXLNet long-document SQuAD v2 through a progressive-segment curriculum, resumable",
    resumable=True,
    prefetch="stages.qa.spec:prefetch",
    derived="stages.qa.spec:shared_reader_node",
    grid={"memory.num_tokens": "0,4"},  # the demo's comparison: without and with memory tokens
)

#: The shared reader (`curriculum.shared_reader=true`): a qa run of `QAConfig.reader_config()` (curriculum
#: phase 1 alone, without memory), a job of the plan that the qa runs sharing it depend on
#: (`shared_reader_node`); never a step of `stage=all` by itself.
READER = StageSpec(
    name="qa_reader",
    config_cls=QAConfig,
    run="stages.qa.train:run",
    description="the memory-free reader that qa runs with curriculum.shared_reader=true continue",
    resumable=True,
    prefetch="stages.qa.spec:prefetch",
    in_chain=False,
)
STAGES = (STAGE, READER)
REPORTS = (Report(
    "qa",
    # The forms of generated questions (data.dataset=sample) split the local kind: person lookups and the
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
),)


def shared_reader_node(cfg: QAConfig, upstream_cfgs: dict) -> dict:
    """The qa stage's derived upstream: with `curriculum.shared_reader`, the reader it continues."""
    return {READER.name: (cfg.reader_config(), {})} if cfg.curriculum.shared_reader else {}

#: Values of QA fields that need nothing from a hub.
_BUILTIN = {"model": {"tiny"}, "tokenizer": {"auto"}, "data.dataset": {"sample", ""},
            "data.eval_dataset": {"sample", ""}}


def prefetch(cfg: QAConfig, cache_dir) -> list[str]:
    """HF models/tokenizers and `datasets` given by hub id, into the root's cache for offline jobs."""
    from stages.core.offline import fetch_dataset, fetch_hf_repo, is_hub_id

    done = []
    for key in ("model", "tokenizer"):
        ref = getattr(cfg, key)
        if ref not in _BUILTIN[key] and is_hub_id(ref):
            done.append(fetch_hf_repo(f"qa.{key}", ref, cache_dir))
    # The QA stage reads split "train" of `dataset` and "validation" of `eval_dataset`.
    for key, split in (("data.dataset", "train"), ("data.eval_dataset", "validation")):
        ref = getattr(cfg.data, key.partition(".")[2])
        if ref not in _BUILTIN[key] and is_hub_id(ref):
            done.append(fetch_dataset(f"qa.{key}", ref, split, cache_dir))
    return done
