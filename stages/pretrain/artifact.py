"""The file names of a `pretrain` artifact, in one light module (no torch): the trainer writes
them, the LM evaluator and benchmarks read them."""

#: Final weights (safetensors) and the GraphLM shape they load into.
MODEL_WEIGHTS = "model.safetensors"
MODEL_CONFIG = "model_config.json"
#: Training metrics, one JSON object per logged step.
METRICS_LOG = "metrics.jsonl"
