"""Every preset in experiments/ and every search space in experiments/search_spaces/ loads and
validates, so a typo in a YAML file fails here rather than in a researcher's hour-long run."""
from __future__ import annotations

import pytest

from fer_experiments import config, models
from fer_experiments.studies import search_space


@pytest.mark.parametrize("name", config.list_experiments())
def test_every_preset_builds_a_valid_config(name):
    cfg = config.build_config(name).resolved()
    assert cfg.model in models.list_models()
    assert cfg.precision in config.PRECISIONS and cfg.precision != "auto"  # resolved for this machine


@pytest.mark.parametrize("path", sorted(search_space.SPACES_DIR.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_search_space_loads(path):
    # The family's model (a file named after a model) or the seed CNN for the family-less ones.
    model = path.stem if path.stem in models.MODELS else "custom_aug"
    assert search_space.load(model, str(path))


def test_models_with_their_own_search_space_use_it():
    assert search_space.default_file("fer_compact").name == "fer_compact.yaml"
    assert search_space.default_file("fer_vgg").name == "fer_compact.yaml"
    assert search_space.default_file("custom_aug").name == "custom.yaml"
    assert search_space.default_file("resnet50").name == "resnet50.yaml"
