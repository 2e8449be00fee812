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


@pytest.mark.parametrize("name", config.list_experiments())
def test_a_preset_sets_only_what_differs(name):
    """Every key a preset writes changes the resolved config: nothing restates a TrainConfig default,
    the model's own default, or what its `base` already sets (a preset always names its model)."""
    own = config.read_preset(name)
    resolved = config.build_config(name).resolved()
    for key in set(own) - {config.BASE, "model"}:
        without = {k: v for k, v in own.items() if k != key}
        base = config.load_experiment(str(without.pop(config.BASE))) if config.BASE in without else {}
        values = {**base, **{k: config.coerce(k, v) for k, v in without.items()}}
        try:
            assert config.TrainConfig(**values).validate().resolved() != resolved, f"{name} restates {key}"
        except config.ConfigError:  # without the key the preset is not even valid: it matters
            continue


@pytest.mark.parametrize("name", config.list_experiments())
def test_every_preset_header_gives_its_command_and_measured_time(name):
    header = [line for line in config.preset_path(name).read_text().splitlines() if line.startswith("#")]
    text = "\n".join(header)
    assert f"preset={name}" in text or f"--preset {name}" in text, name
    assert "Measured here" in text or "Here (" in text, name
    assert any(unit in text for unit in (" min", " h ")), name


def test_base_presets_inherit_and_cycles_are_one_line(tmp_path):
    child = tmp_path / "child.yaml"
    child.write_text("base: fer_compact_fast\nepochs: 3\n")
    cfg = config.build_config(str(child))
    assert cfg.epochs == 3 and cfg.model == "fer_compact" and cfg.schedule == "onecycle" and cfg.crop == 40
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    a.write_text(f"base: {b}\n")
    b.write_text(f"base: {a}\nepochs: 2\n")
    with pytest.raises(config.ConfigError, match="cycle") as err:
        config.build_config(str(a))
    assert "\n" not in str(err.value)
