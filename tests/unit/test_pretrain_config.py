"""pretrain config: presets, validation messages, sweepable keys."""

import pytest

from stages.core.config import ConfigError, resolve
from stages.pretrain.config import PretrainConfig
from stages.pretrain.train import model_config


def test_defaults_are_the_tiny_cpu_run():
    cfg = resolve(PretrainConfig, {})
    assert (cfg.preset, cfg.mask, cfg.zero_stage) == ("tiny", "graph", 0)
    shape = model_config(cfg, n_vocab=50257)
    assert (shape.n_layers, shape.d_model, shape.vocab_size) == (2, 128, 50257)


def test_preset_sets_run_defaults_and_overrides_win():
    cfg = resolve(PretrainConfig, {"preset": "gpt2-small", "lr": "1e-4"})
    assert cfg.token_budget == 1024 and cfg.lr == 1e-4
    assert model_config(cfg, 50257).n_layers == 12


@pytest.mark.parametrize("key,value", [("strategy", "bfs"), ("mask", "doc"), ("order_mode", "prefer_targets_first"),
                                       ("token_budget", "512"), ("steps", "7"), ("lr", "0.01"), ("seed", "3")])
def test_sweep_keys_are_accepted(key, value):
    cfg = resolve(PretrainConfig, {key: value})
    assert str(getattr(cfg, key)) == value or getattr(cfg, key) == float(value)


@pytest.mark.parametrize("overrides,message", [
    ({"mask": "full"}, "mask"),
    ({"zero_stage": "4"}, "zero_stage"),
    ({"steps": "0"}, "steps"),
    ({"val_fraction": "0.9"}, "val_fraction"),
    ({"lr": "-1"}, "lr"),
    ({"strategy": "teleport"}, "strategy"),
    ({"preset": "huge"}, "preset"),
])
def test_bad_values_name_the_key(overrides, message):
    with pytest.raises((ConfigError, ValueError), match=message):
        resolve(PretrainConfig, overrides)


@pytest.mark.parametrize("grad_clip", [0.0, 0.5])
def test_deepspeed_clips_at_grad_clip_and_not_at_all_when_it_is_zero(grad_clip):
    from stages.pretrain.accel import deepspeed_plugin

    cfg = resolve(PretrainConfig, {"zero_stage": "2", "grad_clip": str(grad_clip)})
    assert deepspeed_plugin(cfg).deepspeed_config["gradient_clipping"] == grad_clip
