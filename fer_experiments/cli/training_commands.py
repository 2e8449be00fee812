"""`fer-exp train`, `tune`, `import-run` and `export-run`: making runs, and carrying them between stores."""
from __future__ import annotations

import os
import sys

import click

from .. import config as cfgmod
from ..errors import UserError
from ..studies import settings as study_settings
from ..studies.registry import PRUNERS, SAMPLERS
from .group import config_options, given, mlflow_experiment_option, option, preset_option


@click.command()
@config_options()
@preset_option
@mlflow_experiment_option("MLflow experiment [fer2013, or fer2013-synthetic for synthetic data]")
@option("--resume", "resume_run_id", default=None, help="continue a killed run (its MLflow run id)")
@option("--run-folder", default=None, type=click.Path(file_okay=False),
        help="record into DIR/<run id>/ instead of MLflow (no MLflow needed); `fer-exp import-run` adds it later")
@option("--repeats", default=1, show_default=True, type=click.IntRange(min=1),
        help="train with N seeds (seed, seed+1, …) as sibling runs under one parent run holding their mean, sd and "
             "t-interval; rerun the same command to finish a killed set")
@option("--coordinator", default=None, envvar="JAX_COORDINATOR_ADDRESS", metavar="HOST:PORT",
        help="train as one of several processes (JAX backend): process 0's host and a free port, the same on every "
             "process [env JAX_COORDINATOR_ADDRESS; under SLURM's srun all three are found]")
@option("--num-processes", default=None, envvar="JAX_NUM_PROCESSES", type=click.IntRange(min=1),
        help="how many processes train together [env JAX_NUM_PROCESSES]")
@option("--process-id", default=None, envvar="JAX_PROCESS_ID", type=click.IntRange(min=0),
        help="this process's id, 0..N-1; process 0 records the run [env JAX_PROCESS_ID]")
@option("--collective-timeout", default=120, show_default=True, type=click.IntRange(min=5), metavar="SECONDS",
        help="over several processes: how long to wait for every process to join, and for a silent one "
             "before ending the others")
def train(preset, mlflow_experiment, resume_run_id, run_folder, repeats, coordinator, num_processes, process_id,
          collective_timeout, **options):
    """Train one registered model and record it in MLflow (or, with --run-folder, in a folder)."""
    from .. import tracking  # TensorFlow is imported only when needed
    from ..training import processes

    if processes.wanted(coordinator, num_processes, process_id):
        if repeats > 1:
            raise cfgmod.ConfigError(f"--repeats {repeats} cannot be combined with training over several processes: "
                                     f"launch one multi-process training per seed (--seed)")
        processes.initialize(coordinator, num_processes, process_id, collective_timeout)
    if repeats > 1 and (run_folder or resume_run_id):
        raise cfgmod.ConfigError(f"--repeats {repeats} cannot be combined with {'--run-folder' if run_folder else '--resume'}: "
                                 f"a repeat set lives in MLflow, and rerunning the same command resumes it")
    tracker = tracking.FileTracker(run_folder) if run_folder else tracking.MlflowTracker()
    try:
        _train(tracker, preset, mlflow_experiment, resume_run_id, run_folder, repeats, options)
    except KeyboardInterrupt as stop:  # Ctrl-C, SIGTERM: one line that says what is left, not click's "Aborted!"
        raise UserError(_stopped_line(stop, run_folder, " ".join(sys.argv[1:]))) from None


def _stopped_line(stop: KeyboardInterrupt, run_folder: str | None, command: str) -> str:
    why = str(stop) or "Ctrl-C"
    if getattr(stop, "stopped_set", ""):
        return (f"stopped ({why}): repeat set {stop.stopped_set} is KILLED with the seeds it finished; "
                f"the same command again (fer-exp {command}) trains the seeds it lacks")
    if getattr(stop, "stopped_run", ""):
        folder = f" --run-folder {run_folder}" if run_folder else ""
        return (f"stopped ({why}): run {stop.stopped_run} is KILLED; `fer-exp train --resume {stop.stopped_run}"
                f"{folder}` continues it from its last finished epoch")
    return f"stopped ({why}) before a run began: nothing was recorded"


def _train(tracker, preset, mlflow_experiment, resume_run_id, run_folder, repeats, options) -> None:
    from .. import tracking, training
    from ..training import processes

    if repeats > 1:
        return _train_repeats(cfgmod.build_config(given(preset), **options), repeats, tracker, mlflow_experiment,
                              given(preset) or "", options)
    if resume_run_id:
        cfg = cfgmod.TrainConfig(**tracker.run_config(resume_run_id)).validate()
        preset = tracker.run_tags(resume_run_id).get(tracking.tags.PRESET)
    else:
        cfg = cfgmod.build_config(given(preset), **options)
    result = training.train(cfg, experiment=mlflow_experiment, resume_run_id=resume_run_id, tracker=tracker,
                            preset=given(preset) or "")
    if not processes.is_recorder():
        click.echo(f"process {processes.index()} of {processes.count()}: trained; process 0 records run {result.run_id}")
        return
    # The model's own figures (the in-fit best_val_accuracy, mixed precision's, is in the run, not here).
    shown = {k: v for k, v in result.metrics.items() if k.endswith(("accuracy", "macro_f1")) and k != "best_val_accuracy"}
    on, verdict = _trained_on(tracker.run_tags(result.run_id), cfg.limit)
    click.echo(f"run {result.run_id} finished on {on}: " + ", ".join(f"{k}={v:.4f}" for k, v in sorted(shown.items()))
               + verdict)
    click.echo(f"model: {result.model_uri}")
    if not run_folder:  # MLflow's UI opens on its GenAI overview: these open the runs (`tracking.ui_views`)
        links = tracker.ui_links(result.run_id)
        click.echo(f"in `mlflow ui`: this run {links['run']}\n              all runs, best first {links['runs']}")


def _train_repeats(cfg, n: int, tracker, experiment: str | None, preset: str, options: dict) -> None:
    from .. import training

    result = training.train_repeats(cfg, n, tracker=tracker, train=training.train, experiment=experiment or "",
                                    preset=preset, given=options, echo=click.echo)
    click.echo(result.table.dropna(axis=1, how="all").to_string(index=False, float_format="{:.4f}".format))
    s = result.summary
    for key in ("validation_accuracy", "test_accuracy", "test_macro_f1"):
        if f"{key}_sd" in s:
            click.echo(f"{key} over {int(s['seeds_finished'])} seeds: mean {s[key]:.4f}, sd {s[key + '_sd']:.4f}, "
                       f"95 % t-interval [{s[key + '_ci_low']:.4f}, {s[key + '_ci_high']:.4f}]")
    links = tracker.ui_links(result.parent_run_id)
    click.echo(f"repeat set: parent run {result.parent_run_id}\nin `mlflow ui`: the set {links['run']}\n"
               f"              every set's seeds grouped, their average {tracker.repeats_link(result.parent_run_id)}")


def _trained_on(tags: dict, limit: int) -> tuple[str, str]:
    """What the run's figures are figures of, as its tags record it — the data (SYNTHETIC said so), the
    `limit`, the images per split — and, for a run no better than the majority class, a word to that."""
    from ..data.labels import data_words
    from ..tracking import tags as T

    images = f"{tags[T.IMAGES]} images" if T.IMAGES in tags else ""
    used = ": ".join(x for x in (f"limit {limit} images per split" if limit else "", images) if x)
    on = data_words(tags.get(T.DATASET), tags.get(T.SYNTHETIC) == "true", used)
    nothing = tags.get(T.LEARNED_NOTHING) == "true"
    return on, " — LEARNED NOTHING: no better than always answering the majority class" if nothing else ""


TUNE = study_settings.defaults()


@click.command()
@config_options(defaults={"epochs": f"{study_settings.TRIAL_EPOCHS} per trial"})
@preset_option
@option("--n-trials", default=TUNE["n_trials"], show_default=True, type=click.IntRange(min=1),
        help="finished (complete + pruned) trials the study aims at, across all workers")
@option("--timeout", default=TUNE["timeout"], show_default=True, type=click.FloatRange(min=0),
        help="seconds for this worker; 0 = none")
@option("--study", default=TUNE["study"], help="study name [fer-<model>-<dataset>]")
@option("--storage", default=TUNE["storage"],
        help="Optuna storage: SQLAlchemy URL (postgresql://user@host/db, password in PGPASSWORD), journal:FILE, or "
             "grpc://HOST:PORT (a `fer-exp study-server`) [journal file mlruns/optuna/journal.log]")
@option("--sampler", default=TUNE["sampler"], show_default=True, type=click.Choice(list(SAMPLERS)))
@option("--pruner", default=TUNE["pruner"], show_default=True, type=click.Choice(list(PRUNERS)))
@option("--search-space", default=TUNE["search_space"], help="YAML file overriding the family's default space")
@option("--confirm-top", default=TUNE["confirm_top"], show_default=True, type=click.IntRange(min=0), metavar="K",
        help="once the study is done, train its K best complete trials again with more seeds; the champion "
             "registered is the one with the best mean validation accuracy over its seeds (0 = off: the best trial)")
@option("--confirm-seeds", default=TUNE["confirm_seeds"], show_default=True, type=click.IntRange(min=0), metavar="S",
        help="extra seeds (seed+1 … seed+S) per confirmed trial, as child runs of the study's parent; 0 = off")
@mlflow_experiment_option("MLflow experiment [fer2013 / fer2013-synthetic]")
def tune(preset, n_trials, timeout, study, storage, sampler, pruner, search_space, confirm_top, confirm_seeds,
         mlflow_experiment, **options):
    """Run (or join, or resume) an Optuna study; every trial is a nested MLflow run. Settings the
    study does not search are fixed by the options (and --preset) as in `train`. Once the study is
    done, its top trials are confirmed with more seeds (study/confirmation.csv on the parent run) and
    the champion, the best mean over seeds, is registered as models:/<study>@champion."""
    from ..studies import tuning
    from ..studies.storage import password_in

    if os.environ.get("MLFLOW_RUN_ID") and password_in(storage):
        click.echo(f"warning: `mlflow run` has recorded this storage URL, password included, as param 'storage' of run "
                   f"{os.environ['MLFLOW_RUN_ID']} (and printed it): change that password, and pass it as PGPASSWORD "
                   f"or in ~/.pgpass with a URL that has none", err=True)
    options["epochs"] = options["epochs"] or study_settings.TRIAL_EPOCHS
    base = cfgmod.build_config(given(preset), **options)
    settings = study_settings.TuneSettings(base=base, n_trials=n_trials, timeout=timeout, study=study, storage=storage,
                                   sampler=sampler, pruner=pruner, search_space=search_space,
                                   confirm_top=confirm_top, confirm_seeds=confirm_seeds,
                                   experiment=mlflow_experiment or "")
    tuning.tune(settings, echo=click.echo)  # its last line names the champion


@click.command("study-server")
@option("--storage", required=True,
        help="the database the studies live in: SQLAlchemy URL (postgresql://user@host/db, password in PGPASSWORD)")
@option("--host", default="127.0.0.1", show_default=True,
        help="address to listen on (0.0.0.0: every interface; the proxy has no authentication)")
@option("--port", default=13000, show_default=True, type=click.IntRange(1, 65535))
def study_server(storage, host, port):
    """Serve a study database to many workers over Optuna's gRPC storage proxy: this process holds the
    database connections; workers pass `tune --storage grpc://HOST:PORT`. Runs until interrupted."""
    from ..studies import grpc_proxy
    from ..studies import storage as st

    rdb = st.open_rdb(storage)
    click.echo(f"study server for {st.mask_url(storage)}: workers pass --storage grpc://{host}:{port} "
               f"(Ctrl-C stops it)")
    grpc_proxy.serve(rdb, host, port)


@click.command()
@option("--data", required=True, help="the data to pack (FER-2013 folder, CSV, synthetic[:N])")
@option("--out", required=True, type=click.Path(file_okay=False), help="the bundle folder to write (new or empty)")
@option("--preset", default="fer_vgg", show_default=True, help="what run.sh trains")
@option("--accelerator", default="cpu", show_default=True, type=click.Choice(["cpu", "cuda12", "cuda13"]),
        help="the JAX wheels to bundle: CPU, or CUDA 12 / 13 (NVIDIA driver >= 525 / >= 580)")
@option("--python-version", default=None, metavar="X.Y", help="the node's Python [this one's]")
@option("--platform", default=None, help="the node's platform tag, e.g. manylinux_2_28_x86_64 [this machine's]")
def bundle(data, out, preset, accelerator, python_version, platform):
    """Write a folder that installs and trains on a machine with no network: packed data, wheels, run.sh."""
    from .. import bundle as bundles

    bundles.make(data, out, preset=preset, accelerator=accelerator, python_version=python_version,
                 platform=platform, echo=click.echo)


@click.command("import-run")
@click.argument("folders", nargs=-1, required=True, type=click.Path(file_okay=False), metavar="FOLDER...")
@mlflow_experiment_option("MLflow experiment [the one the run names]")
def import_run(folders, mlflow_experiment):
    """Make file-only runs (`train --run-folder`, `export-run`) ordinary MLflow runs in the tracking store.

    A FOLDER holding run folders (what export-run writes) imports each, a repeat set's seeds under its parent."""
    from ..tracking import imports

    for folder, run_id in imports.import_runs(folders, experiment=mlflow_experiment):
        click.echo(f"{folder} → run {run_id}")


@click.command("export-run")
@click.argument("run_id", metavar="RUN_ID")
@option("--out", required=True, type=click.Path(file_okay=False), help="folder to write DIR/<run id>/ into")
@option("--include", "include", multiple=True, default=("*",), show_default=True, metavar="GLOB",
        help="artifacts to take (repeatable), e.g. 'evaluation/*/predictions.csv'; the image series and model stay")
def export_run(run_id, out, include):
    """Write a run (a repeat set: with its finished seeds) as file-only run folders for `import-run` elsewhere."""
    from ..tracking import exports

    for folder in exports.export_runs(run_id, out, tuple(include)):
        click.echo(f"run {folder.name} → {folder}")
