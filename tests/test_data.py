"""Every data source parses in FER-2013's label order; every bad input gets its one-line error."""
from __future__ import annotations

import gzip
import os
import shutil

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from fer_experiments.data import (
    CLASSES,
    DataError,
    csv_to_folder,
    folder_to_csv,
    load_dataset,
    make_synthetic,
    write_synthetic,
)


def _face(value: int, size: int = 48) -> Image.Image:
    return Image.fromarray(np.full((size, size), value, np.uint8))


def make_folder(root, *, test_prefixes=("PublicTest",), per_class=3, case=str.capitalize):
    """A tiny Kaggle layout whose pixel value encodes the label (10 * label + i)."""
    for split, prefixes in (("train", ("Training",)), ("test", test_prefixes)):
        for label, name in enumerate(CLASSES):
            d = root / split / case(name)
            d.mkdir(parents=True)
            for prefix in prefixes:
                for i in range(per_class):
                    _face(10 * label + i).save(d / f"{prefix}_{label}{i}.png")
    return root


def test_synthetic_is_deterministic_imbalanced_and_labelled(tmp_path):
    x1, y1 = make_synthetic(700, seed=3)
    x2, y2 = make_synthetic(700, seed=3)
    x3, _ = make_synthetic(700, seed=4)
    assert x1.shape == (700, 48, 48) and x1.dtype == np.uint8 and y1.dtype == np.int64
    assert np.array_equal(x1, x2) and np.array_equal(y1, y2) and not np.array_equal(x1, x3)
    counts = np.bincount(y1, minlength=7)
    assert counts.min() >= 2 and counts.argmax() == CLASSES.index("happy") and counts.argmin() == CLASSES.index("disgust")
    ds = load_dataset("synthetic:700", cache_dir=tmp_path)
    assert ds.synthetic and ds.kind == "synthetic" and ds.name == "synthetic-fer-s0-n700"
    assert list(ds.splits) == ["train", "val", "test"] and sum(len(s.y) for s in ds.splits.values()) == 700
    assert ds.source == str((tmp_path / "synthetic" / "s0-n700").resolve())
    assert 0 < ds.majority_rate() < 0.5 and list(ds.counts()["test"]) == list(CLASSES)


def test_synthetic_folder_round_trips_in_fer_order(tmp_path):
    root = write_synthetic(tmp_path / "s", n=140, seed=5)
    x, y = make_synthetic(140, seed=5)
    ds = load_dataset(str(root), cache_dir=tmp_path / "c")
    assert ds.kind == "synthetic" and ds.name == "synthetic-fer-s5-n140"  # still synthetic, wherever it lies
    test = ds.splits["test"]  # test/ is the first 20 % of make_synthetic's images
    for label in range(7):  # the loader groups by class folder; within a class the written order holds
        assert np.array_equal(test.x[test.y == label, :, :, 0], x[:28][y[:28] == label])
    assert write_synthetic(root, n=140, seed=5) == root  # the same set again: kept as is
    with pytest.raises(DataError, match="already exists"):
        write_synthetic(root, n=140, seed=6)


def test_stale_synthetic_cache_is_regenerated(tmp_path):
    first = load_dataset("synthetic:70", cache_dir=tmp_path)
    marker = tmp_path / "synthetic" / "s0-n70" / ".complete"
    marker.write_text("synthetic FER faces v0\n")  # as an older generator would have left it
    assert load_dataset(str(marker.parent), cache_dir=tmp_path).name == "synthetic-s0-n70"
    second = load_dataset("synthetic:70", cache_dir=tmp_path)
    assert marker.read_text() != "synthetic FER faces v0\n"
    assert np.array_equal(first.splits["test"].x, second.splits["test"].x)
    with pytest.raises(DataError, match="synthetic:N"):
        load_dataset("synthetic:5", cache_dir=tmp_path)


def test_folder_uses_fer_label_order_and_mixed_case(tmp_path):
    root = make_folder(tmp_path / "fer")
    ds = load_dataset(str(root), cache_dir=tmp_path / "c", val_fraction=0.3)
    x = np.concatenate([ds.splits["train"].x, ds.splits["val"].x])
    y = np.concatenate([ds.splits["train"].y, ds.splits["val"].y])
    assert np.array_equal(x[:, 0, 0, 0] // 10, y)  # pixel value encodes the FER label
    assert len(ds.splits["test"].y) == 21 and ds.kind == "folder" and not ds.synthetic
    assert len(ds.splits["val"].y) == 7  # 30 % of 21, stratified: one per class
    assert sorted(ds.splits["val"].y.tolist()) == list(range(7))


def test_public_and_private_become_val_and_test(tmp_path):
    root = make_folder(tmp_path / "fer", test_prefixes=("PublicTest", "PrivateTest"))
    ds = load_dataset(str(root), cache_dir=tmp_path / "c")
    assert len(ds.splits["val"].y) == 21 and len(ds.splits["test"].y) == 21 and len(ds.splits["train"].y) == 21


def test_test_only_folder_and_cache(tmp_path):
    root = make_folder(tmp_path / "fer")
    (tmp_path / "only").mkdir()
    (root / "test").rename(tmp_path / "only" / "test")
    ds = load_dataset(str(tmp_path / "only"), cache_dir=tmp_path / "c")
    assert list(ds.splits) == ["test"]
    cached = list((tmp_path / "c" / "decoded").glob("*.npz"))
    assert [p.stem for p in cached] == [ds.cache_key]
    # rewriting the files changes the cache key (a new cache entry); an unchanged source reuses its entry
    for p in (tmp_path / "only").rglob("*.png"):
        p.write_bytes(p.read_bytes())
    again = load_dataset(str(tmp_path / "only"), cache_dir=tmp_path / "c")
    assert np.array_equal(again.splits["test"].x, ds.splits["test"].x) and again.cache_key != ds.cache_key
    same = load_dataset(str(tmp_path / "only"), cache_dir=tmp_path / "c")
    assert same.cache_key == again.cache_key and len(list((tmp_path / "c" / "decoded").glob("*.npz"))) == 2
    # what runs record is of the images: the same bytes under other file times keep it (another machine's copy)
    assert again.digest == ds.digest == same.digest
    assert again.splits["test"].digest() == ds.splits["test"].digest()


def test_digest_follows_the_images_not_the_files(tmp_path):
    """Two machines' copies of one folder (other file times) record one digest; another image, label or
    name changes it, and so does the split's own digest that `compare` checks."""
    root = make_folder(tmp_path / "fer")
    copy = tmp_path / "copy"
    shutil.copytree(root, copy)  # copytree keeps times: touch them, as another machine's copy has its own
    for p in copy.rglob("*.png"):
        os.utime(p, ns=(p.stat().st_atime_ns, p.stat().st_mtime_ns + 10**9))
    a = load_dataset(str(root), cache_dir=tmp_path / "c")
    b = load_dataset(str(copy), cache_dir=tmp_path / "c")
    assert a.cache_key != b.cache_key and a.digest == b.digest
    assert a.splits["test"].digest() == b.splits["test"].digest() != a.splits["train"].digest()
    first = sorted((copy / "test").rglob("*.png"))[0]
    Image.fromarray(255 - np.asarray(Image.open(first))).save(first)
    c = load_dataset(str(copy), cache_dir=tmp_path / "c")
    assert c.digest != a.digest and c.splits["test"].digest() != a.splits["test"].digest()
    assert c.splits["train"].digest() == a.splits["train"].digest()


def test_cache_hit_decodes_nothing_and_reseeds_val(tmp_path, monkeypatch):
    from fer_experiments.data import folder

    root = make_folder(tmp_path / "fer", per_class=4)
    first = load_dataset(str(root), cache_dir=tmp_path / "c", seed=1)

    def no_decoding(path):
        raise AssertionError(f"decoded {path} despite the cache")

    monkeypatch.setattr(folder, "_decode", no_decoding)
    again = load_dataset(str(root), cache_dir=tmp_path / "c", seed=1)
    assert np.array_equal(again.splits["val"].x, first.splits["val"].x)
    other = load_dataset(str(root), cache_dir=tmp_path / "c", seed=2, val_fraction=0.25)  # val carved anew
    assert len(other.splits["val"].y) == 7 and other.splits["test"].y.tolist() == first.splits["test"].y.tolist()
    with pytest.raises(DataError, match="val_fraction"):
        load_dataset(str(root), cache_dir=tmp_path / "c", val_fraction=1.0)


def _csv(path, rows):
    pd.DataFrame(rows, columns=["emotion", "pixels", "Usage"]).to_csv(path, index=False)
    return path


def test_csv_plain_and_gzipped(tmp_path):
    pix = lambda v: " ".join([str(v)] * 2304)
    rows = [(lab, pix(lab * 10), "Training") for lab in range(7)] * 3 + [(3, pix(1), "PublicTest"),
                                                                           (5, pix(2), "PrivateTest")]
    plain = _csv(tmp_path / "fer2013.csv", rows)
    gz = tmp_path / "fer2013.csv.gz"
    gz.write_bytes(gzip.compress(plain.read_bytes()))
    for path in (plain, gz):
        ds = load_dataset(str(path), cache_dir=tmp_path / "c")
        assert ds.kind == "csv"
        assert ds.splits["val"].y.tolist() == [3] and ds.splits["test"].y.tolist() == [5]
        train_x = np.concatenate([ds.splits["train"].x])
        assert np.array_equal(train_x[:, 0, 0, 0] // 10, ds.splits["train"].y)


@pytest.mark.parametrize("rows, needle", [
    ([(0, "1 2 3", "Training")], "3 pixels instead of 2304"),
    ([(0, " ".join(["1"] * 2304), "Validation")], "Usage 'Validation' is unknown"),
    ([(7, " ".join(["1"] * 2304), "Training")], "emotion 7 is not a label 0..6"),
    ([(0, " ".join(["300"] * 2304), "Training")], "outside 0..255"),
])
def test_csv_errors(tmp_path, rows, needle):
    path = _csv(tmp_path / "bad.csv", rows)
    with pytest.raises(DataError) as err:
        load_dataset(str(path), cache_dir=tmp_path / "c")
    assert needle in str(err.value) and "\n" not in str(err.value) and "row 2" in str(err.value)


def test_csv_missing_column(tmp_path):
    path = tmp_path / "bad.csv"
    pd.DataFrame({"emotion": [0], "pixels": ["1"]}).to_csv(path, index=False)
    with pytest.raises(DataError, match="lacks column.* Usage"):
        load_dataset(str(path), cache_dir=tmp_path / "c")
    _csv(path, [])
    with pytest.raises(DataError, match="has no rows"):
        load_dataset(str(path), cache_dir=tmp_path / "c")
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(DataError, match="not a .csv"):
        load_dataset(str(tmp_path / "notes.txt"), cache_dir=tmp_path / "c")


def _bad_folder(tmp_path, kind):
    root = make_folder(tmp_path / kind, per_class=2)
    happy = root / "train" / "Happy"
    if kind == "empty":
        (root / "train" / "Sad").mkdir(exist_ok=True)
        for p in (root / "train" / "Sad").iterdir():
            p.unlink()
    elif kind == "unknown":
        (root / "train" / "contempt").mkdir()
        _face(1).save(root / "train" / "contempt" / "x.png")
    elif kind == "corrupt":
        (happy / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    elif kind == "no_classes":
        shutil.rmtree(root / "test")
        (root / "test").mkdir()
    elif kind == "no_splits":
        shutil.rmtree(root / "train")
        shutil.rmtree(root / "test")
    elif kind == "colour":
        Image.fromarray(np.dstack([np.full((48, 48), v, np.uint8) for v in (200, 10, 10)])).save(happy / "red.png")
    return root


@pytest.mark.parametrize("kind, needle", [
    ("empty", "is empty"), ("unknown", "unknown class folder"), ("corrupt", "broken.jpg is corrupt"),
    ("colour", "red.png is in colour"), ("no_classes", "has no class folders"), ("no_splits", "neither train/ nor test/"),
])
def test_bad_folders(tmp_path, kind, needle):
    with pytest.raises(DataError) as err:
        load_dataset(str(_bad_folder(tmp_path, kind)), cache_dir=tmp_path / "c")
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_missing_path_and_resize_and_gray_rgb(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_dataset(str(tmp_path / "nowhere"))
    root = make_folder(tmp_path / "fer", per_class=2)
    _face(77, size=64).save(root / "train" / "Happy" / "big.png")
    gray_rgb = Image.fromarray(np.dstack([np.full((48, 48), 90, np.uint8)] * 3))
    gray_rgb.save(root / "train" / "Fear" / "rgb.png")
    gray_rgb.save(root / "train" / "Fear" / "rgb.jpg", quality=75)
    shutil.rmtree(root / "test" / "Disgust")
    ds = load_dataset(str(root), cache_dir=tmp_path / "c")
    assert "1 images in train/ were not 48x48 and were resized" in ds.notes
    assert "test/ has no folder for disgust" in ds.notes
    assert ds.splits["train"].x.shape[1:] == (48, 48, 1) and ds.splits["train"].x.dtype == np.uint8
    assert ds.counts()["test"]["disgust"] == 0 and ds.counts()["train"]["fear"] + ds.counts()["val"]["fear"] == 4


def test_hidden_entries_ignored_and_unprefixed_test_files_kept(tmp_path):
    root = make_folder(tmp_path / "fer", test_prefixes=("PublicTest", "PrivateTest"), per_class=1)
    (root / "train" / ".ipynb_checkpoints").mkdir()
    (root / "train" / "Happy" / "._Training_30.png").write_bytes(b"macOS resource fork")
    _face(35).save(root / "test" / "Happy" / "extra.png")
    ds = load_dataset(str(root), cache_dir=tmp_path / "c")
    assert len(ds.splits["val"].y) == 7 and len(ds.splits["test"].y) == 8
    assert any("neither PublicTest_ nor PrivateTest_" in n for n in ds.notes)


def test_folder_csv_round_trip(tmp_path):
    root = write_synthetic(tmp_path / "s", n=140, seed=5)
    csv = folder_to_csv(root, tmp_path / "s.csv.gz")
    back = csv_to_folder(csv, tmp_path / "back")
    a, b = (load_dataset(str(p), cache_dir=tmp_path / "c", seed=1) for p in (root, back))
    for split in ("train", "val", "test"):
        assert np.array_equal(a.splits[split].x, b.splits[split].x)
        assert np.array_equal(a.splits[split].y, b.splits[split].y)


def bomb_png(path, width: int, height: int):
    """A real decompression bomb: a 1-bit gray PNG of width×height zero pixels, complete and valid,
    yet a few kB per 100 megapixels on disk (zlib squeezes the all-zero rows ~1000:1)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    z, row = zlib.compressobj(9), bytes(1 + (width + 7) // 8)  # filter byte 0, then the packed bits
    idat = b"".join(z.compress(row) for _ in range(height)) + z.flush()
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0))
                     + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
    return path


@pytest.mark.parametrize("side", [20000, 10000])  # Pillow's DecompressionBombError; its warning only
def test_decompression_bomb_is_one_line_before_decoding(tmp_path, side):
    import warnings

    root = make_folder(tmp_path / "fer", per_class=1)
    bomb = bomb_png(root / "train" / "Happy" / "bomb.png", side, side)
    assert bomb.stat().st_size < 100_000
    with warnings.catch_warnings(record=True) as seen, pytest.raises(DataError) as err:
        warnings.simplefilter("always")
        load_dataset(str(root), cache_dir=tmp_path / "c")
    message = str(err.value)
    assert "bomb.png" in message and "megapixel" in message and "\n" not in message, message
    assert not [w for w in seen if issubclass(w.category, Image.DecompressionBombWarning)]  # one line, no warning


@pytest.mark.timeout(60)  # before the walker kept its parents' real paths, this walked forever
def test_symlink_loops_are_refused(tmp_path):
    root = make_folder(tmp_path / "fer", per_class=1)
    happy = root / "train" / "Happy"
    (happy / "up").symlink_to("..")
    (happy / "self").symlink_to(".")
    with pytest.raises(DataError) as err:
        load_dataset(str(root), cache_dir=tmp_path / "c")
    assert "symlink loop" in str(err.value) and f"{happy}/self" in str(err.value) and "\n" not in str(err.value)
    (happy / "up").unlink()
    (happy / "self").unlink()
    (happy / "a.png").symlink_to("b.png")
    (happy / "b.png").symlink_to("a.png")
    with pytest.raises(DataError, match=r"a\.png is a symlink loop"):
        load_dataset(str(root), cache_dir=tmp_path / "c")
    (happy / "a.png").unlink()
    (happy / "b.png").unlink()
    (root / "train" / "Fear").rename(tmp_path / "fear")  # a class folder linked from elsewhere: still fine
    (root / "train" / "Fear").symlink_to(tmp_path / "fear")
    assert load_dataset(str(root), cache_dir=tmp_path / "c").counts()["test"]["fear"] == 1


def test_non_utf8_and_damaged_gzip_csv_say_so(tmp_path):
    pix = " ".join(["1"] * 2304)
    plain = _csv(tmp_path / "fer2013.csv", [(lab, pix, "Training") for lab in range(7)])
    data = plain.read_bytes()
    at = data.index(b"Training", data.index(b"Training") + 1)  # row 3's Usage
    latin1 = tmp_path / "latin1.csv"
    latin1.write_bytes(data[:at] + "Tr\xe9ining".encode("latin-1") + data[at + 8:])
    gz = gzip.compress(data)
    (tmp_path / "cut.csv.gz").write_bytes(gz[:len(gz) // 2])  # an interrupted download
    damaged = bytearray(gz)
    damaged[20:60] = bytes(b ^ 0xFF for b in damaged[20:60])
    (tmp_path / "damaged.csv.gz").write_bytes(bytes(damaged))
    for name, needle in (("latin1.csv", "is not UTF-8 text: row 3 (byte 0xe9)"),
                         ("cut.csv.gz", "truncated gzip"), ("damaged.csv.gz", "corrupt gzip")):
        with pytest.raises(DataError) as err:
            load_dataset(str(tmp_path / name), cache_dir=tmp_path / "c")
        assert needle in str(err.value) and "\n" not in str(err.value), str(err.value)
