"""The `pretrain` stage: graph-LM pretraining on packed token shards with Accelerate/DeepSpeed."""
