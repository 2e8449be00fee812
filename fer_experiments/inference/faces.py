"""From image files to 48×48 face crops, as `predict` and `explain` both need them; and the helpers
their outputs share (table rows, output names that never collide, line widths that suit the photo).

Per image: decode it (any size, colour or gray) → find faces with a detector (`detectors`) → widen
each box by `margin`, crop the grayscale image, resize to 48×48. An image that is already a face
crop (both sides ≤ CROP_MAX_SIDE px, like FER-2013's 48×48) is one face, whole. An image that cannot
be read is an `error`, never an exception: one bad file never stops a batch. So is one over MAX_PIXELS,
found from its header before any pixel is decoded: a 1.2 MB PNG can hold 20000×20000 pixels, which
OpenCV would decode into 1.2 GB (and predict took 3.3 GB with the gray copy and the search).
"""
from __future__ import annotations

import io
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from ..errors import UserError
from ..models import INPUT_SHAPE

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")  # what a folder is searched for
CROP_MAX_SIDE = 64  # an image no bigger than this on both sides is a face crop: classified whole
# Decoded pixels per image at most: a 50-megapixel phone photo (8160×6120) passes and takes ~200 MB
# decoded (colour and gray copies); 20000×20000 (400 MP, 1.6 GB) does not. Below Pillow's own bomb
# limit (~89 MP), whose warning is therefore silenced while the header is read.
MAX_PIXELS = 50_000_000


class InferenceError(UserError):
    """A problem with the user's paths, model or output: one line naming it and the fix."""


def find_images(paths: Iterable[str | Path]) -> list[Path]:
    """Files as given, and the image files under each folder (recursively, sorted)."""
    found = []
    for p in map(Path, paths):
        if p.is_dir():
            found += sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_EXTS)
        elif p.is_file():
            found.append(p)
        else:
            raise InferenceError(f"path '{p}' does not exist: pass image files or folders of images")
    if not found:
        raise InferenceError(f"no images ({', '.join(IMAGE_EXTS)}) in {', '.join(map(str, paths))}: "
                             "pass image files or folders that hold some")
    return found


def read_image(path: Path) -> np.ndarray:
    """BGR uint8 (gray images come as three equal channels); ValueError if it cannot be decoded or has
    more than MAX_PIXELS pixels (checked from the header first)."""
    data = np.fromfile(path, np.uint8)  # not cv2.imread: that fails silently and on non-ASCII paths
    _check_size(data)
    img = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if img is None:
        raise ValueError("cannot decode the image: empty or corrupt file, or an unsupported format")
    return img


def _check_size(data: np.ndarray) -> None:
    """ValueError past MAX_PIXELS. OpenCV cannot read a header alone; Pillow's `open` is lazy (the
    size, no pixels). A format Pillow does not know is left to OpenCV, which then says what it is."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # MAX_PIXELS, lower, decides
        try:
            with Image.open(io.BytesIO(data.tobytes())) as im:
                w, h = im.size
        except Image.DecompressionBombError:  # over twice Pillow's limit: it gives no size
            raise ValueError(f"the image has more than {2 * (Image.MAX_IMAGE_PIXELS or 0) // 10**6} megapixels, "
                             f"over the {MAX_PIXELS // 10**6}-megapixel limit: shrink it first") from None
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
            return
    if w * h > MAX_PIXELS:
        raise ValueError(f"the image is {w}x{h} ({w * h / 1e6:.0f} megapixels), over the "
                         f"{MAX_PIXELS // 10**6}-megapixel limit: shrink it first")


def crop_bounds(shape, box, margin: float) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1): the box grown by `margin` × its size (half on each side), clipped to the image."""
    x, y, w, h = box
    dx, dy = int(round(w * margin / 2)), int(round(h * margin / 2))
    return max(0, x - dx), max(0, y - dy), min(shape[1], x + w + dx), min(shape[0], y + h + dy)


def crop_face(gray: np.ndarray, box, margin: float) -> np.ndarray:
    """The `crop_bounds` window of the image, as 48×48."""
    x0, y0, x1, y1 = crop_bounds(gray.shape, box, margin)
    return cv2.resize(gray[y0:y1, x0:x1], INPUT_SHAPE[1::-1], interpolation=cv2.INTER_AREA)


@dataclass
class FaceImage:
    """One input image after detection: its face boxes and 48×48 crops, or why it has none."""
    path: Path
    source: str = ""  # "detected" | "whole_image"
    boxes: list = field(default_factory=list)
    crops: list = field(default_factory=list)
    error: str | None = None

    @property
    def status(self) -> str:
        return "ok" if self.crops else "error" if self.error else "no_face"

    def batch(self) -> np.ndarray:
        """The crops as the model's input, (N, 48, 48, 1) float32."""
        return np.stack(self.crops).astype("float32")[..., None]


def prepare(path: Path, detector, margin: float) -> FaceImage:
    """One image file read, its faces found by `detector` (from `detectors.get_detector`) and cropped."""
    try:
        image = read_image(path)
        gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    except (OSError, ValueError, cv2.error) as exc:  # a bad file is a row, not the end of the batch
        return FaceImage(path, error=next((s for s in str(exc).splitlines() if s.strip()), repr(exc)))
    if max(gray.shape) <= CROP_MAX_SIDE:
        box = (0, 0, gray.shape[1], gray.shape[0])
        return FaceImage(path, "whole_image", [box], [crop_face(gray, box, 0.0)])
    boxes = detector.detect(image)
    return FaceImage(path, "detected", boxes, [crop_face(gray, b, margin) for b in boxes])


def row(columns: tuple[str, ...], path: Path, **fields) -> dict:
    """One output row: every column present (None where not given), `file` the image's path."""
    return {c: None for c in columns} | {"file": str(path)} | fields


def unique_stem(stem: str, used: set, taken: Callable[[str], bool] = lambda _: False) -> str:
    """`stem`, or `stem-1`, `stem-2` … : a name not in `used` (two inputs a/x.jpg and b/x.jpg) and not
    `taken` (e.g. the input file itself); it is added to `used`."""
    name, n = stem, 0
    while name in used or taken(name):
        n += 1
        name = f"{stem}-{n}"
    used.add(name)
    return name


def line_width(shape) -> int:
    """Box and text stroke in px: visible on a big photo, after JPEG too."""
    return max(2, round(max(shape[:2]) / 400))


def write_png(path: Path, rgb: np.ndarray) -> None:
    path.write_bytes(cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))[1].tobytes())
