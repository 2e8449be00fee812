"""Every tag this project writes on MLflow runs, named once (MLflow's own live in mlflow.utils.mlflow_tags)."""
from __future__ import annotations

SYNTHETIC = "fer.synthetic"            # "true" | "false": synthetic runs never mix with real ones
MODEL = "fer.model"                    # registered model name
DATASET = "fer.dataset"                # dataset name (folder / CSV / synthetic)
INIT = "fer.init"                      # "from scratch" | "imagenet" | "weights file"
PRESET = "fer.preset"                  # experiments/<preset>.yaml the run started from
BENCHMARK = "fer.benchmark"            # benchmark part or recipe that made the run
RUN_KIND = "fer.run_kind"              # study | worker | repeats | evaluation | export | report | compare
MODEL_URI = "fer.model_uri"            # models:/… logged by a training run
SOURCE_RUN = "fer.source_run"          # the training run an evaluation or export came from
EVALUATED_MODEL = "fer.evaluated_model"
EXPORT_FORMAT = "fer.export_format"
EXPORTED_MODEL = "fer.exported_model"
COMPARED_RUNS = "fer.compared_runs"  # the runs a comparison read, space-separated
REPORT_RUNS = "fer.report_runs"        # how many runs a report compared
IMPORTED_FROM = "fer.imported_from"    # the file-only run folder an imported run came from
LEARNED_NOTHING = "fer.learned_nothing"  # "true" | "false": test (else validation) accuracy no better than the
                                         # majority-class rate by more than evaluation.baseline's margin
VS_MAJORITY = "fer.vs_majority"        # that comparison in words: accuracy, majority rate and class, margin, images
REPEAT_GROUP = "fer.repeat_group"    # one configuration trained with several seeds: the key its runs share
REPEAT_SET = "fer.repeat_set"        # … in words (preset, the settings given, data, key): what the UI groups by
REPEAT_SEED = "fer.repeat_seed"      # the seed of one run of a repeat set (or of a study's confirmation run)
REPEATS = "fer.repeats"              # on a repeat set's parent: how many seeds it was asked for
SEEDS = "fer.seeds"                  # … and which: "42,43,44"
IMAGES = "fer.images"                  # images per split the run really used, e.g. "train 3000, val 2871, test 3000"

STUDY_NAME = "optuna.study_name"
SAMPLER = "optuna.sampler"
PRUNER = "optuna.pruner"
STORAGE = "optuna.storage"             # masked: never a password
TRIAL_NUMBER = "optuna.trial_number"
TRIAL_STATE = "optuna.trial_state"
CONFIRM_TRIAL = "fer.confirm_trial"    # a study's confirmation run: the trial it trains again with another seed


def experiment_name_for(dataset_is_synthetic: bool) -> str:
    # Synthetic runs live apart from real ones so a comparison never mixes them up.
    return "fer2013-synthetic" if dataset_is_synthetic else "fer2013"
