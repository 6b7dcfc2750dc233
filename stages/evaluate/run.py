"""Dispatch `evaluate` to the evaluator of the upstream's model family."""


def run(cfg, ctx) -> dict:
    if cfg.task == "lm":
        from stages.pretrain.evaluate import run_lm_eval

        return run_lm_eval(cfg, ctx)
    from stages.qa.evaluate import run_qa_eval

    return run_qa_eval(cfg, ctx)
