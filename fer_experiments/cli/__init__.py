"""`fer-exp`: the command line — the only place that knows about click and exit codes.

- `group`: the error contract (one line, exit 2, for what the user can fix), option spellings, and
  the options generated from `TrainConfig`;
- `training_commands` (train, tune, study-server, bundle, import-run, export-run), `evaluation_commands`
  (evaluate, report, compare),
  `inference_commands` (predict, explain, export), `data_commands` (data inspect/synthetic/convert).
"""
from __future__ import annotations

import click

from .data_commands import data
from .evaluation_commands import compare, evaluate, report
from .group import FerGroup
from .inference_commands import explain, export, predict
from .training_commands import bundle, export_run, import_run, study_server, train, tune


@click.group(cls=FerGroup)
def main():
    """Facial-emotion recognition experiments on FER-2013, tracked in MLflow."""


for command in (train, tune, study_server, bundle, evaluate, report, compare, predict, explain, export, import_run,
                export_run, data):
    main.add_command(command)
