"""pretrain config: components, presets, validation messages, sweepable keys, moved keys."""

import dataclasses

import pytest

from models.graphlm.config import MODEL_PRESETS, GraphLMConfig
from stages.core import config as config_lib
from stages.core.config import ConfigError, resolve
from stages.packing.config import PackingConfig
from stages.pretrain.config import PretrainConfig


def test_defaults_are_the_tiny_cpu_run():
    cfg = resolve(PretrainConfig, {})
    assert (cfg.preset, cfg.model.mask, cfg.zero_stage) == ("tiny", "graph", 0)
    assert (cfg.packing.token_budget, cfg.packing.batch_size) == (1024, 1)
    shape = cfg.model_config(n_vocab=50257)
    assert (shape.n_layers, shape.d_model, shape.vocab_size) == (2, 128, 50257)


def test_the_components_are_the_packing_and_model_configs_themselves():
    cfg = resolve(PretrainConfig, {"packing.strategy": "bfs", "model.smear_keys": "true"})
    assert type(cfg.packing) is PackingConfig and type(cfg.model) is GraphLMConfig
    assert cfg.packing.strategy_mix.parts == (("bfs", 1.0),)  # parsed once, when the config was resolved
    assert "strategy_mix" in vars(cfg.packing)
    assert not {f.name for f in dataclasses.fields(PretrainConfig)} & (
        {f.name for f in dataclasses.fields(PackingConfig)} | {f.name for f in dataclasses.fields(GraphLMConfig)})


def test_the_model_config_fills_in_the_derived_fields():
    cfg = resolve(PretrainConfig, {"packing.reset_positions": "true", "model.mask": "doc"})
    shape = cfg.model_config(n_vocab=301)
    assert (shape.vocab_size, shape.reset_positions, shape.mask) == (301, True, "doc")
    assert cfg.model.vocab_size != 301  # the component itself is left as resolved
    names = config_lib.field_names(PretrainConfig)
    assert "model.vocab_size" not in names and "model.reset_positions" not in names
    assert "vocab_size" not in config_lib.signature_dict(cfg)["model"]


def test_preset_sets_the_model_shape_and_run_defaults_and_overrides_win():
    cfg = resolve(PretrainConfig, {"preset": "gpt2-small", "lr": "1e-4", "model.n_layers": "4"})
    assert cfg.packing.token_budget == 1024 and cfg.packing.batch_size == 16 and cfg.lr == 1e-4
    assert cfg.model.n_layers == 4 and cfg.model.d_model == MODEL_PRESETS["gpt2-small"]["d_model"]
    for size, shape in MODEL_PRESETS.items():  # one home for the shapes
        model = resolve(PretrainConfig, {"preset": size}).model
        assert {key: getattr(model, key) for key in shape} == shape


@pytest.mark.parametrize("key,value", [("packing.strategy", "bfs"), ("model.mask", "doc"),
                                       ("packing.order_mode", "prefer_targets_first"),
                                       ("packing.token_budget", "512"), ("steps", "7"), ("lr", "0.01"), ("seed", "3")])
def test_sweep_keys_are_accepted(key, value):
    cfg = resolve(PretrainConfig, {key: value})
    got = cfg
    for part in key.split("."):
        got = getattr(got, part)
    assert str(got) == value or got == float(value)


@pytest.mark.parametrize("overrides,message", [
    ({"model.mask": "full"}, "`model.mask`: 'full' is not allowed"),
    ({"zero_stage": "4"}, "zero_stage"),
    ({"steps": "0"}, "`steps`: 0 must be >= 1"),
    ({"val_fraction": "0.9"}, "`val_fraction`: 0.9 must be < 0.5"),
    ({"lr": "-1"}, "`lr`: -1.0 must be > 0"),
    ({"lr": "nan"}, "`lr`: nan is not a finite number"),
    ({"min_lr_ratio": "1.5"}, "`min_lr_ratio`: 1.5 must be <= 1"),
    ({"packing.strategy": "teleport"}, "packing.strategy: unknown 'teleport'"),
    ({"packing.batch_size": "0"}, "`packing.batch_size`: 0 must be >= 1"),
    ({"model.n_heads": "0"}, "`model.n_heads`: 0 must be > 0"),
    ({"model.n_heads": "5"}, "model.d_model: 128 is not divisible by n_heads=5"),
    ({"preset": "huge"}, "preset"),
])
def test_bad_values_name_the_key(overrides, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        resolve(PretrainConfig, overrides)


@pytest.mark.parametrize("old", sorted(PretrainConfig.RENAMED))
def test_an_old_flat_key_fails_with_one_line_naming_its_new_name(old):
    new = PretrainConfig.RENAMED[old]
    assert new in config_lib.field_names(PretrainConfig)
    with pytest.raises(ConfigError) as err:
        resolve(PretrainConfig, {old: "1"})
    assert str(err.value) == f"key `{old}` of PretrainConfig is now `{new}`: write `{new}=...`"


def test_a_recorded_flat_config_is_read_under_the_new_names():
    """Manifests written before the nesting hold flat keys; readers (evaluate) still get them."""
    recorded = {"strategy": "bfs", "token_budget": 256, "layout": "none", "seed": 3, "mask": "doc",
                "smear_keys": True, "steps": 7, "preset": "tiny"}
    cfg = config_lib.from_dict(PretrainConfig, recorded)
    assert (cfg.packing.strategy, cfg.packing.token_budget, cfg.packing.layout) == ("bfs", 256, "none")
    assert (cfg.model.mask, cfg.model.smear_keys, cfg.seed, cfg.steps) == ("doc", True, 3, 7)
    assert config_lib.from_dict(PretrainConfig, config_lib.to_dict(cfg)) == cfg


@pytest.mark.parametrize("grad_clip", [0.0, 0.5])
def test_deepspeed_clips_at_grad_clip_and_not_at_all_when_it_is_zero(grad_clip):
    from stages.pretrain.accel import deepspeed_plugin

    cfg = resolve(PretrainConfig, {"zero_stage": "2", "grad_clip": str(grad_clip)})
    assert deepspeed_plugin(cfg).deepspeed_config["gradient_clipping"] == grad_clip
