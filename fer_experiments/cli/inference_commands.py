"""`fer-exp predict`, `explain` and `export`: using what was trained."""
from __future__ import annotations

import click

from ..inference.detectors import DETECTORS
from .group import option


def face_finding(command):
    """The options `predict` and `explain` share: images, model, and how faces are found."""
    for decorator in reversed((
            click.argument("paths", nargs=-1, required=True, metavar="PATH..."),
            option("--model-uri", "model_uri", required=True, aliases=("--model",),
                   help="models:/<model id>, runs:/<run id>/<model name> or a .keras file"),
            option("--margin", default=0.2, show_default=True, type=click.FloatRange(0, 2),
                   help="grow each detected face box by this fraction of its size before cropping"),
            option("--detector", type=click.Choice(list(DETECTORS)), default="haar", show_default=True,
                   help="face detector: OpenCV's Haar cascade, or MTCNN (pip install 'fer_experiments[faces]')"))):
        command = decorator(command)
    return command


@click.command()
@face_finding
@option("--format", "fmt", type=click.Choice(["jsonl", "csv"]), default="jsonl", show_default=True)
@option("--out", default=None, type=click.Path(dir_okay=False), help="output file [stdout]")
@option("--annotate", "annotate_dir", default=None, type=click.Path(file_okay=False),
        help="write a copy of each image with a face here, boxes and labels drawn")
def predict(paths, model_uri, fmt, out, annotate_dir, margin, detector):
    """Emotions of the faces in images (files or folders): one JSON line (or CSV row) per face."""
    from ..inference import predict as prediction

    # The --out file is only created once the images and the model have been found.
    click.echo(prediction.run(paths, model_uri, out, fmt=fmt, margin=margin, annotate_dir=annotate_dir,
                              detector=detector), err=True)


@click.command()
@face_finding
@option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
        help="folder for the overlays and explanations.csv")
def explain(paths, model_uri, out_dir, margin, detector):
    """Where the model looks: a Grad-CAM overlay per face (faces found as predict finds them)."""
    from ..inference import explain as explanation

    click.echo(explanation.run(paths, model_uri, out_dir, detector=detector, margin=margin))


@click.command()
@click.argument("model_uri")
@option("--format", "fmt", type=click.Choice(["tflite", "onnx"]), default="tflite", show_default=True,
        help="tflite (LiteRT) | onnx (needs pip install 'fer_experiments[export]')")
@option("--out", required=True, type=click.Path(dir_okay=False), help="file to write, ending .tflite / .onnx")
@option("--check-data", default="synthetic:300", show_default=True,
        help="faces (folder, CSV, synthetic[:N]) the export must predict like Keras on")
@option("--log", is_flag=True, help="also log the file to a new run in the model's MLflow experiment")
def export(model_uri, fmt, out, check_data, log):
    """Export a logged model (models:/…, runs:/…) or a .keras file to one TFLite or ONNX file for
    inference; fails unless its probabilities match Keras's within 1e-4."""
    from ..inference import export as exporting

    for line in exporting.export(model_uri, fmt, out, check_data=check_data, log=log).lines():
        click.echo(line)
