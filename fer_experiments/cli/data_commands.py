"""`fer-exp data …`: inspect, generate and convert FER-2013-format datasets."""
from __future__ import annotations

import os

import click

from .group import FerGroup, option


@click.group(cls=FerGroup)
def data():
    """Inspect, generate and convert FER-2013-format datasets."""


@data.command("inspect")
@click.argument("source", default="synthetic")
@option("--val-fraction", default=0.1, show_default=True, type=float)
def data_inspect(source, val_fraction):
    """Per-split, per-class image counts of SOURCE."""
    import pandas as pd

    from .. import data as fer_data

    ds = fer_data.load_dataset(source, val_fraction=val_fraction)
    table = pd.DataFrame(ds.counts()).T
    table["total"] = table.sum(axis=1)
    click.echo(f"{ds.name} ({ds.kind}{', SYNTHETIC' if ds.synthetic else ''}) digest {ds.digest}\n{ds.source}")
    click.echo(table.to_string())
    for note in ds.notes:
        click.echo(f"note: {note}")


@data.command("synthetic")
@click.argument("out")
@option("--n", default=4000, show_default=True, type=click.IntRange(min=70), help="images in total")
@option("--seed", default=0, show_default=True, type=int)
def data_synthetic(out, n, seed):
    """Write the synthetic FER-format faces to OUT in the Kaggle folder layout."""
    from .. import data as fer_data

    click.echo(f"wrote {fer_data.write_synthetic(out, n=n, seed=seed)}")


@data.command("convert")
@click.argument("source")
@click.argument("dest")
def data_convert(source, dest):
    """Folder layout → fer2013.csv(.gz), or fer2013.csv(.gz) → folder layout (by SOURCE's kind)."""
    from .. import data as fer_data

    if os.path.isdir(source):
        click.echo(f"wrote {fer_data.folder_to_csv(source, dest)}")
    else:
        click.echo(f"wrote {fer_data.csv_to_folder(source, dest)}")
