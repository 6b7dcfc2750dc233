"""model=tiny: the random init's scale is a knob, and at its default nothing changes."""

import pytest

from stages.core.config import resolve, signature_dict
from stages.qa import components
from stages.qa.config import QAConfig


@pytest.mark.parametrize("std", [0.02, 0.125])
def test_the_tiny_model_is_initialised_at_the_configured_scale(std):
    cfg = resolve(QAConfig, {"memory.num_tokens": 0, "tiny_init_std": std})
    model = components.build_model(cfg, range(500), [], [])
    weights = [model.transformer.word_embedding.weight, model.transformer.layer[0].rel_attn.q,
               model.transformer.layer[1].ff.layer_1.weight]
    for w in weights:
        assert w.std().item() == pytest.approx(std, rel=0.1)


def test_the_init_scale_joins_the_signature_only_when_set():
    plain = signature_dict(resolve(QAConfig, {}))
    assert "tiny_init_std" not in plain
    assert signature_dict(resolve(QAConfig, {"tiny_init_std": 0.125})) == {**plain, "tiny_init_std": 0.125}
