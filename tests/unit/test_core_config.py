"""Typed configs, signatures and the key=value grammar."""

import pytest

from jobs.args import parse_args, split_top_level
from stages.core import config as config_lib
from stages.core import registry
from stages.core.config import ConfigError
from stages.core.runner import stage_signature
from tests.toy_stages import ToyNumbersConfig


def test_same_config_same_signature_and_output_fields_change_it():
    spec = registry.get("toy_numbers")
    base = config_lib.resolve(ToyNumbersConfig, {})
    same = config_lib.resolve(ToyNumbersConfig, {"shards": "4"})
    changed = config_lib.resolve(ToyNumbersConfig, {"scale": 3})
    workers = config_lib.resolve(ToyNumbersConfig, {"workers": 8})
    assert stage_signature(spec, base, {}) == stage_signature(spec, same, {})
    assert stage_signature(spec, base, {}) != stage_signature(spec, changed, {})
    # Worker count does not change the output, so it must not change the signature.
    assert stage_signature(spec, base, {}) == stage_signature(spec, workers, {})
    # A different upstream is a different artifact.
    sum_spec = registry.get("toy_sum")
    cfg = config_lib.resolve(sum_spec.config_cls, {})
    assert stage_signature(sum_spec, cfg, {"toy_numbers": "aaa"}) != stage_signature(sum_spec, cfg, {"toy_numbers": "bbb"})


def test_unknown_key_suggests_the_closest():
    with pytest.raises(ConfigError, match="did you mean `shards`"):
        config_lib.resolve(ToyNumbersConfig, {"shard": 3})


def test_wrong_type_names_key_and_expected_type():
    with pytest.raises(ConfigError, match=r"key `shards`.*expected int"):
        config_lib.resolve(ToyNumbersConfig, {"shards": "many"})


def test_choices_and_presets_apply_in_order():
    import dataclasses
    from typing import ClassVar

    @dataclasses.dataclass
    class Sized:
        PRESETS: ClassVar[dict] = {"tiny": {"width": 8, "mode": "a"}, "big": {"width": 512}}
        preset: str = config_lib.knob("tiny", "size preset")
        width: int = config_lib.knob(64, "width")
        mode: str = config_lib.knob("a", "mode", choices=("a", "b"))

        def validate(self):
            if self.width % 8:
                raise ValueError("`width` must be a multiple of 8")

    assert config_lib.resolve(Sized, {}).width == 8
    assert config_lib.resolve(Sized, {"preset": "big"}).width == 512
    assert config_lib.resolve(Sized, {"preset": "big", "width": "16"}).width == 16
    with pytest.raises(ConfigError, match="choose one of a, b"):
        config_lib.resolve(Sized, {"mode": "c"})
    with pytest.raises(ConfigError, match="multiple of 8"):
        config_lib.resolve(Sized, {"width": 12})
    with pytest.raises(ConfigError, match="unknown preset 'huge'"):
        config_lib.resolve(Sized, {"preset": "huge"})


def test_sweeps_split_on_top_level_commas_only():
    assert split_top_level("random,bfs") == ["random", "bfs"]
    assert split_top_level("[2,4]") == ["[2,4]"]
    assert split_top_level("[2,4],[2,4,6]") == ["[2,4]", "[2,4,6]"]
    parsed = parse_args(["stage=pretrain", "strategy=a,b", "seed=1,2", "lr=0.1", "nodes=2", "slurm.extra.mail-type=END"],
                        ["nodes"])
    assert parsed.sweep_keys == ["strategy", "seed"]
    assert len(parsed.sweep_points()) == 4
    assert parsed.launcher == {"nodes": "2"}
    assert parsed.slurm_extra == {"mail-type": "END"}
    with pytest.raises(ConfigError, match="cannot be swept"):
        parse_args(["nodes=1,2"], ["nodes"])


def test_recorded_config_becomes_the_stage_config_class():
    """An upstream manifest's config is read as the upstream stage's class: no reader keeps its own
    fallback defaults (pretrain's token_budget was 1024 in the config and 256 in its evaluator)."""
    from stages.core.artifacts import Artifact
    from stages.pretrain.config import PretrainConfig

    recorded = {**config_lib.to_dict(config_lib.resolve(PretrainConfig, {"steps": "7"})), "removed_key": 1}
    del recorded["packing"]["token_budget"]  # an artifact older than the field
    cfg = Artifact.unmanaged("/nowhere", "pretrain", recorded).typed_config()
    assert isinstance(cfg, PretrainConfig) and cfg.steps == 7
    assert cfg.packing.token_budget == PretrainConfig().packing.token_budget
    with pytest.raises(config_lib.ConfigError, match="recorded PretrainConfig"):
        config_lib.from_dict(PretrainConfig, {"steps": "many"})


def test_a_component_s_keys_nest_and_say_what_is_wrong_in_one_line():
    """Dotted keys reach the component; a misspelt bare key is matched on the last part of a dotted
    one; a key the stage fills in, or an old flat key, is named as such."""
    from stages.core.config import resolve
    from stages.qa.config import QAConfig

    assert resolve(QAConfig, {"memory.num_tokens": "2"}).memory.num_tokens == 2
    for key, message in (("num_tokns", "did you mean `memory.num_tokens`"),
                         ("memory.read_token_ids", "filled in by the stage"),
                         ("memory_num_tokens", "is now `memory.num_tokens`")):
        with pytest.raises(ConfigError, match=message) as err:
            resolve(QAConfig, {key: "1"})
        assert "\n" not in str(err.value)
