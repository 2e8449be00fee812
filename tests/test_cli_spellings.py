"""One CLI source: every command line the README prints parses (old spellings included), tune takes
train's options, and the defaults of MLproject, the CLI and the settings are one set."""
from __future__ import annotations

import dataclasses
import re
import shlex
import subprocess
import sys
from pathlib import Path

import click
import pytest
import yaml

from fer_experiments.cli import main
from fer_experiments.config import TrainConfig
from fer_experiments.studies import settings

ROOT = Path(__file__).resolve().parent.parent


def parse(*args: str) -> click.Context:
    """The context `fer-exp ARGS` would run with: the subcommand's parsed options, nothing run."""
    with main.make_context("fer-exp", list(args[:1])) as parent:
        command = main.get_command(parent, args[0])
        group_args = list(args[1:])
        if isinstance(command, click.Group):  # `fer-exp data inspect …`
            with command.make_context(args[0], group_args[:1], parent=parent) as sub:
                return command.get_command(sub, group_args[0]).make_context(group_args[0], group_args[1:], parent=sub)
        return command.make_context(args[0], group_args, parent=parent)


def readme_command_lines() -> list[list[str]]:
    """Every `fer-exp …` command in the README's code blocks, as argument lists."""
    text = (ROOT / "README.md").read_text()
    found = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            lexer = shlex.shlex(line.replace("<", "_").replace(">", "_"), posix=True, punctuation_chars=";&|")
            lexer.whitespace_split, lexer.commenters = True, "#"
            words: list[str] = []
            for token in [*lexer, ";"]:
                if token and set(token) <= set(";&|"):  # the end of one command
                    while words and "=" in words[0] and not words[0].startswith("-"):  # VAR=value prefixes
                        words = words[1:]
                    if words[:1] == ["fer-exp"] and len(words) > 1:
                        found.append(words[1:])
                    words = []
                else:
                    words.append(token)
    return found


def test_every_readme_command_line_parses():
    lines = readme_command_lines()
    assert len(lines) >= 15, lines  # the README shows train, tune, evaluate, predict, explain, export, report, data …
    for words in lines:
        if "--help" in words:
            continue
        ctx = parse(*words)
        assert ctx.params, words


def test_old_spellings_still_work_and_mean_the_same():
    old = parse("train", "--experiment", "fer_compact_fast", "--aug_strength", "0.2", "--batch_size", "32",
                "--image_size", "64", "--val_fraction", "0.2")
    new = parse("train", "--preset", "fer_compact_fast", "--aug-strength", "0.2", "--batch-size", "32",
                "--image-size", "64", "--val-fraction", "0.2")
    assert old.params == new.params and old.params["preset"] == "fer_compact_fast"
    assert old.params["aug_strength"] == "0.2" and old.params["batch_size"] == "32"
    tune = parse("tune", "--n_trials", "6", "--search_space", "s.yaml", "--experiment", "custom")
    assert (tune.params["n_trials"], tune.params["search_space"], tune.params["preset"]) == (6, "s.yaml", "custom")
    assert parse("report", "--experiment", "fer2013").params["mlflow_experiment"] == "fer2013"
    assert parse("predict", "x.jpg", "--model", "m.keras").params["model_uri"] == "m.keras"
    assert parse("explain", "x.jpg", "--model", "m.keras", "--out", "o").params["model_uri"] == "m.keras"
    # MLflow forwards `-P n_trials=6` as `--n_trials 6`; a later value wins, as for any repeated option
    assert parse("train", "--preset", "none", "--experiment", "custom").params["preset"] == "custom"


def test_tune_takes_every_training_setting_and_its_own_choices():
    fields = [f.name for f in dataclasses.fields(TrainConfig)]
    tune = parse("tune", "--batch-size", "16", "--precision", "float32", "--crop", "40")
    assert set(fields) <= set(tune.params) and tune.params["batch_size"] == "16"
    train = parse("train")
    assert set(fields) <= set(train.params)
    with pytest.raises(click.BadParameter):
        parse("tune", "--sampler", "grid")  # the choices come from the registry
    with pytest.raises(click.BadParameter):
        parse("tune", "--pruner", "sometimes")


def test_tune_defaults_are_one_set():
    # The CLI's defaults are TuneSettings'; MLproject declares only what TrainConfig defaults.
    tune = parse("tune")
    for key, default in settings.defaults().items():
        cli_key = "mlflow_experiment" if key == "experiment" else key
        assert tune.params[cli_key] in (default, None if default == "" else default), key
    project = yaml.safe_load((ROOT / "MLproject").read_text())["entry_points"]
    defaults = TrainConfig()
    for entry in ("main", "tune"):
        for key, spec in project[entry]["parameters"].items():
            assert key in {f.name for f in dataclasses.fields(TrainConfig)}, (entry, key)
            assert type(getattr(defaults, key))(spec["default"]) == getattr(defaults, key), (entry, key)
            assert f"--{key} {{{key}}}" in project[entry]["command"]


@pytest.mark.slow
def test_python_m_runs_the_same_cli_with_every_command():
    for module in ("fer_experiments", "fer_experiments.cli"):
        out = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True, text=True, cwd=ROOT,
                             timeout=120)
        assert out.returncode == 0, out.stderr[-2000:]
        listed = {line.split()[0] for line in out.stdout.split("Commands:")[1].splitlines() if line.strip()}
        assert listed == set(main.commands), (module, listed)  # import-run included
