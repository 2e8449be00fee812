"""One command for the benchmark (not part of CI):

    python -m benchmarks.run --data ../shared/fer2013                 # every part
    python -m benchmarks.run --data ../shared/fer2013 --part step --part pipeline
    python -m benchmarks.run --data ../shared/fer2013 --part accuracy --recipe fer_compact_fast
    python -m benchmarks.run --data ../shared/fer2013 --part compare    # the seed's four models + report
    python -m benchmarks.run --data ../shared/fer2013 --part backends --step-batches 3 --repeats 5  # TF vs JAX, per precision

Results go to ``benchmarks/results/results.json`` (machine-readable; a part's section is replaced
when it is run again, so parts can be run one at a time) and ``benchmarks/results/results.md``
(the tables, regenerated from the JSON each time). Training runs are recorded in MLflow's default
local store of the working directory, like any other run. Every timing is judged by `validity.py`:
a figure that breaks its rules is written INVALID, with the reason, in place of its number, and the
console says how many.
"""
from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

import click

from . import validity

PARTS = ("step", "pipeline", "overhead", "accuracy", "compare", "backends")
DEFAULT_RECIPES = ("fer_compact_fast", "custom:epochs=10", "custom_aug:epochs=10",
                   "resnet50:weights=none,image_size=48,epochs=3", "vgg16:weights=none,image_size=48,epochs=3",
                   "fer_compact_long")


@click.command()
@click.option("--data", required=True, help="FER-2013 folder (train/, test/ = PublicTest)")
@click.option("--part", "parts", multiple=True, type=click.Choice(PARTS), help="parts to run [all]")
@click.option("--recipe", "recipes", multiple=True,
              help="accuracy and compare parts: preset[:key=value,...], repeatable [accuracy: "
                   + ", ".join(DEFAULT_RECIPES) + "; compare: the four seed models, sized for 2 CPU cores]")
@click.option("--out", default=str(Path(__file__).parent / "results"), show_default=True)
@click.option("--steps", default=150, show_default=True, help="pipeline part: batches timed per measurement")
@click.option("--step-batches", default=30, show_default=True, help="step and backends parts: batches timed per measurement")
@click.option("--step-model", "step_models", multiple=True,
              help="step part: models to profile, repeatable [all three]; backends part: the preset timed, "
                   "a name or a .yaml path [custom_aug]")
@click.option("--repeats", default=3, show_default=True,
              help="step and backends parts: interleaved rounds, i.e. measurements per arm (median and spread)")
@click.option("--limit", default=4000, show_default=True, help="overhead part: training images per epoch")
def main(data, parts, recipes, out, steps, step_batches, step_models, repeats, limit):
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "results.json"
    results = json.loads(path.read_text()) if path.exists() else {}
    results["machine"] = {"cpus": os.cpu_count(), "platform": platform.platform(),
                          "processor": platform.processor() or platform.machine()}
    for part in parts or PARTS:
        click.echo(f"== {part}", err=True)
        if part == "step":
            from .step import RECIPES, measure
            chosen = tuple(r for r in RECIPES if not step_models or r[0] in step_models)
            results["step"] = measure(data, steps=step_batches, repeats=repeats, recipes=chosen)
        elif part == "pipeline":
            from .pipeline import measure
            results["pipeline"] = measure(data, steps=steps)
        elif part == "overhead":
            from .overhead import measure
            results["overhead"] = measure(data, limit=limit)
        elif part == "backends":
            from .backends import measure
            results["backends"] = measure(data, steps=step_batches, repeats=repeats,
                                          preset=step_models[0] if step_models else "custom_aug")
        elif part == "compare":
            from .compare import CPU_RECIPES, run
            results["compare"] = run(data, out, recipes=recipes or CPU_RECIPES)
        else:
            from .accuracy import run_recipe
            rows = {r["recipe"]: r for r in results.get("accuracy", [])}
            for recipe in recipes or DEFAULT_RECIPES:
                rows[recipe] = run_recipe(recipe, data)
                results["accuracy"] = list(rows.values())
                _write(results, out)  # after every recipe: a long part keeps what it has done
        results.setdefault("finished", {})[part] = time.strftime("%Y-%m-%d %H:%M")
        _write(results, out)
    table = (out / "results.md").read_text()
    click.echo(table)
    for word in ("INVALID", "not resolved"):
        lines = [line for line in table.splitlines() if word in line and line != validity.RULE_TEXT]
        if lines:
            click.echo(f"{len(lines)} line(s) of results.md hold figures {word} (the rules: benchmarks/validity.py)", err=True)


def _write(results: dict, out: Path) -> None:
    from .table import markdown

    (out / "results.json").write_text(json.dumps(results, indent=1))
    (out / "results.md").write_text(markdown(results))


if __name__ == "__main__":
    main()
