"""The face detectors of `fer-exp predict --detector` (fer_experiments/inference/detectors.py) on real photographs:

    python -m benchmarks.detectors --fer-dir ../shared/fer2013 --out benchmarks/results/detectors.json  # ~2 min, 2 CPUs

The photos are real and nobody here made them; they ship inside installed packages:
- with one face each: scikit-image's `astronaut` (Eileen Collins, frontal), `camera` (the cameraman,
  in profile behind his camera) and matplotlib's `grace_hopper.jpg` sample (frontal, glasses, cap);
- without a face: scikit-image's coffee, chelsea (a cat: a human-face detector must not fire on it),
  rocket, motorcycle (stereo pair, left), hubble_deep_field, grass, gravel, brick, and
  scikit-learn's china and flower sample images.
FER-format faces are also pasted onto the face-free photos at several sizes (one face per photo, at a
seeded random place): the project's synthetic faces and, with --fer-dir, real FER-2013 *train* faces
(read from that folder, never copied; `test/` is never read). FER crops are tight, so the pasted square
is the face's box.

Ground truth for the three real faces was set by hand, by looking at each photo with a 10-px grid
(REAL_FACES). A detection finds a true face when their IoU is >= 0.3 (each true face and each detection
matched at most once, best IoU first): box conventions differ (MTCNN's boxes are taller than Haar's
squares, the hand boxes run brow/cap to chin), and 0.3 still demands the box be on the face. Every
detection not matched is a false detection, a second box on the same face included.
Seconds per photo: the median over all photos, after one warm-up call (model tracing, caches), which
is timed apart with the detector's loading as its start-up.
"""
from __future__ import annotations

import json
import os
import platform
import statistics
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import click
import cv2
import numpy as np

from fer_experiments.data.synthetic import make_synthetic
from fer_experiments.inference.detectors import DETECTORS, get_detector

# x, y, w, h in the photo's own pixels, brow (or cap brim) to chin, cheek to cheek (ear to nose tip in profile).
REAL_FACES = {
    "astronaut": [(180, 75, 80, 83)],  # 512×512
    "camera": [(185, 120, 70, 75)],  # 512×512, gray; profile facing right
    "grace_hopper": [(170, 150, 182, 170)],  # 512×600; the cap covers the forehead
}
FACE_FREE = ("coffee", "chelsea", "rocket", "motorcycle", "hubble_deep_field", "grass", "gravel", "brick",
             "china", "flower")
SIZES = (48, 96, 160, 256)  # px of the pasted FER faces (48 = FER's own size)
MATCH_IOU = 0.3
MTCNN_SWEEP = (0.8, 0.9, 0.95, 0.99)  # MTCNN confidence cuts reported besides the detector's own


def real_photos() -> dict[str, np.ndarray]:
    """The photos above as BGR uint8, by name."""
    import skimage.data
    from matplotlib import cbook
    from sklearn.datasets import load_sample_images

    rgb = {n: getattr(skimage.data, n)() for n in ("astronaut", "camera", "coffee", "chelsea", "rocket",
                                                   "hubble_deep_field", "grass", "gravel", "brick")}
    rgb["motorcycle"] = skimage.data.stereo_motorcycle()[0]
    samples = load_sample_images()
    rgb |= {Path(f).stem: im for f, im in zip(samples.filenames, samples.images)}
    photos = {n: cv2.cvtColor(im, cv2.COLOR_GRAY2BGR if im.ndim == 2 else cv2.COLOR_RGB2BGR) for n, im in rgb.items()}
    photos["grace_hopper"] = cv2.imread(str(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)))
    return {n: photos[n] for n in (*REAL_FACES, *FACE_FREE)}


def fer_train_faces(fer_dir: str, n: int, rng: np.random.Generator) -> np.ndarray:
    files = sorted((Path(fer_dir) / "train").glob("*/*.jpg"))
    if not files:
        raise click.BadParameter(f"no train/<class>/*.jpg under '{fer_dir}'", param_hint="--fer-dir")
    return np.stack([cv2.imread(str(files[i]), cv2.IMREAD_GRAYSCALE) for i in rng.choice(len(files), n, replace=False)])


def pasted(faces: np.ndarray, source: str, backgrounds: dict[str, np.ndarray], rng: np.random.Generator):
    """(name, source, image, [box]) per face: len(faces) / len(SIZES) faces at each size."""
    names, per_size = list(backgrounds), len(faces) // len(SIZES)
    for k, face in enumerate(faces[:per_size * len(SIZES)]):
        size, bg_name = SIZES[k // per_size], names[k % len(names)]
        img = backgrounds[bg_name].copy()
        x, y = int(rng.integers(0, img.shape[1] - size + 1)), int(rng.integers(0, img.shape[0] - size + 1))
        face_img = cv2.resize(face, (size, size), interpolation=cv2.INTER_CUBIC) if size != face.shape[0] else face
        img[y:y + size, x:x + size] = face_img[..., None]
        yield f"{source}-{size}-{k}-on-{bg_name}", f"{source} {size} px", img, [(x, y, size, size)]


def iou(a, b) -> float:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    inter = max(0, min(ax + aw, bx + bw) - max(ax, bx)) * max(0, min(ay + ah, by + bh) - max(ay, by))
    return inter / (aw * ah + bw * bh - inter)


def match(detections, truth) -> int:
    """How many true faces a detection finds (IoU >= MATCH_IOU, one-to-one, best pairs first)."""
    pairs = sorted(((iou(d, t), i, j) for i, d in enumerate(detections) for j, t in enumerate(truth)), reverse=True)
    used_d, used_t = set(), set()
    for v, i, j in pairs:
        if v >= MATCH_IOU and i not in used_d and j not in used_t:
            used_d.add(i)
            used_t.add(j)
    return len(used_t)


def measure(photos, detector) -> tuple[float, list[dict]]:
    """Seconds of the warm-up call, and per photo: boxes with their confidence (MTCNN; None for Haar) and
    the seconds detection took."""
    run = getattr(detector, "scored", None) or (lambda img: [(b, None) for b in detector.detect(img)])
    start = time.perf_counter()
    run(photos[0][2])
    warm_up, rows = time.perf_counter() - start, []
    for name, source, img, truth in photos:
        start = time.perf_counter()
        scored = run(img)
        rows.append({"photo": name, "source": source, "truth": truth, "seconds": time.perf_counter() - start,
                     "boxes": [list(b) for b, _ in scored], "confidences": [c for _, c in scored]})
    return warm_up, rows


def summarise(rows: list[dict], min_confidence: float | None) -> dict:
    """Found and false counts per source (detections below min_confidence dropped), and the timing."""
    by_source, false_real = {}, 0
    for r in rows:
        found, false = _found_false(r, min_confidence)
        s = by_source.setdefault(r["source"], {"faces": 0, "found": 0, "photos": 0, "false": 0})
        s["faces"] += len(r["truth"])
        s["found"] += found
        s["photos"] += 1
        s["false"] += false
        false_real += false if r["source"] == "real photos" else 0
    real = [s for k, s in by_source.items() if not k.startswith("synthetic")]  # photos and FER-2013: real people
    faces, found = sum(s["faces"] for s in real), sum(s["found"] for s in real)
    false, n = sum(s["false"] for s in by_source.values()), len(rows)
    return {"by_source": by_source, "real_faces": faces, "real_found": found, "real_detection_rate": found / faces,
            "false": false, "false_per_photo": false / n, "false_real_photos": false_real,
            "median_seconds": statistics.median(r["seconds"] for r in rows), "photos": n}


def markdown(results: dict) -> str:
    names = list(results["detectors"])
    d = {n: results["detectors"][n]["summary"] for n in names}
    m, versions = results["machine"], ", ".join(f"{k} {v}" for k, v in results["versions"].items())
    head = [f"| {' | '.join(f'`{n}`' for n in names)} |", "|---" * len(names) + "|"]
    lines = [f"Machine: {m['cpus']} CPUs, {m['platform']}; {versions}", "",
             f"Detection rate (true faces found, IoU >= {MATCH_IOU}):", "",
             "| faces | n " + head[0], "|---|---" + head[1]]
    for source, s in d[names[0]]["by_source"].items():
        lines.append(f"| {source} | {s['faces']} | "
                     + " | ".join(_rate(d[n]["by_source"][source]["found"], s["faces"]) for n in names) + " |")
    lines += [f"| **real faces** (photos + FER-2013) | {d[names[0]]['real_faces']} | "
              + " | ".join(f"**{_rate(d[n]['real_found'], d[n]['real_faces'])}**" for n in names) + " |", ""]
    real_photos = [r for r in results["detectors"][names[0]]["photos"] if r["source"] == "real photos"]
    lines += [f"| detector | false detections: real photos ({len(real_photos)}) | all photos ({d[names[0]]['photos']}) "
              "| per photo | seconds / photo (median) | start-up s (load + first photo) |", "|---|---|---|---|---|---|"]
    lines += [f"| `{n}` | {d[n]['false_real_photos']} | {d[n]['false']} | {d[n]['false_per_photo']:.3f} "
              f"| {d[n]['median_seconds']:.3f} | {d[n]['load_seconds'] + d[n]['warm_up_seconds']:.1f} |" for n in names]
    lines += ["", "Real photos, one by one (faces found / faces, false detections):", "", "| photo " + head[0],
              "|---" + head[1]]
    for i, r in enumerate(real_photos):
        cells = (_found_false(results["detectors"][n]["photos"][i], results["detectors"][n]["min_confidence"])
                 for n in names)
        lines.append(f"| {r['photo']} | " + " | ".join(f"{f}/{len(r['truth'])}, {x} false" for f, x in cells) + " |")
    if "sweep" in results:
        cut = results["detectors"]["mtcnn"]["min_confidence"]
        lines += ["", f"`mtcnn` by confidence cut (the detector keeps >= {cut}):",
                  "", "| min confidence | real faces found | on the real photos | false detections (all photos) "
                  "| false on real photos |", "|---|---|---|---|---|"]
        for cut, s in results["sweep"].items():
            real = s["by_source"]["real photos"]
            lines.append(f"| {cut} | {_rate(s['real_found'], s['real_faces'])} | {real['found']}/{real['faces']} "
                         f"| {s['false']} | {s['false_real_photos']} |")
    return "\n".join(lines + [""])


def _rate(found: int, faces: int) -> str:
    return f"{found}/{faces}" + (f" ({found / faces:.0%})" if faces > 3 else "")  # no percent of 3 faces


def _found_false(r: dict, cut: float | None) -> tuple[int, int]:
    boxes = [b for b, c in zip(r["boxes"], r["confidences"]) if cut is None or c >= cut]
    found = match(boxes, r["truth"])
    return found, len(boxes) - found


@click.command()
@click.option("--fer-dir", default=None, help="FER-2013 folder: also paste real faces from its train/ (never test/)")
@click.option("--per-size", default=50, show_default=True, help="pasted faces per source and size")
@click.option("--detector", "names", multiple=True, type=click.Choice(list(DETECTORS)), help="repeatable [all]")
@click.option("--seed", default=0, show_default=True)
@click.option("--out", default=None, type=click.Path(dir_okay=False), help="JSON file for every figure and box")
def main(fer_dir, per_size, names, seed, out):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before mtcnn imports TensorFlow: it logs each face-free photo
    rng = np.random.default_rng(seed)
    real = real_photos()
    photos = [(n, "real photos", img, REAL_FACES.get(n, [])) for n, img in real.items()]
    backgrounds = {n: real[n] for n in FACE_FREE}
    n_faces = per_size * len(SIZES)
    photos += list(pasted(make_synthetic(max(n_faces, 14), seed=seed)[0], "synthetic", backgrounds, rng))
    if fer_dir:
        photos += list(pasted(fer_train_faces(fer_dir, n_faces, rng), "FER-2013 train", backgrounds, rng))
    results = {"machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
               "versions": {"opencv": cv2.__version__} | {p: v for p in ("mtcnn", "tensorflow", "tensorflow-cpu")
                                                           if (v := _version(p))},
               "match_iou": MATCH_IOU, "real_faces": REAL_FACES, "detectors": {}}
    for name in names or DETECTORS:
        click.echo(f"== {name}: {len(photos)} photos", err=True)
        start = time.perf_counter()
        det = get_detector(name)
        load = time.perf_counter() - start
        warm_up, rows = measure(photos, det)
        cut = getattr(det, "min_confidence", None)
        summary = summarise(rows, cut) | {"load_seconds": load, "warm_up_seconds": warm_up}
        results["detectors"][name] = {"min_confidence": cut, "summary": summary, "photos": rows}
        if name == "mtcnn":
            results["sweep"] = {str(c): summarise(rows, c) for c in MTCNN_SWEEP}
    if out:
        Path(out).write_text(json.dumps(results, indent=1))
    click.echo(markdown(results))


def _version(package: str) -> str | None:
    try:
        return version(package)
    except PackageNotFoundError:
        return None


if __name__ == "__main__":
    main()
