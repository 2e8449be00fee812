"""A file-only run folder read as untrusted input (it may come from another machine, or another user):
what `imports` reads it through. No MLflow here.

Every name is opened relative to the descriptor of the folder above it with O_NOFOLLOW, so a symlink
anywhere below the run folder (a file, `artifacts/` itself, `run.json`, the marker) is refused, never
followed, whatever it points at; a FIFO or device is refused before it is read (it could block); each
file is read up to a stated limit, and the marker is created with O_EXCL | O_NOFOLLOW.
"""
from __future__ import annotations

import json
import os
import stat
from pathlib import Path

from ..errors import UserError

MAX_JSON_BYTES = 1 << 20  # run.json, params.json, model.json, dataset.json, the marker
MAX_FILES = 100_000
MARKER = "imported.json"  # written by import-run: the run id it made, whether it finished


class ImportError_(UserError):
    """The folder is not a file-only run, was imported already, or holds something it must not."""


def parse_json(data: bytes, where: str):
    try:
        return json.loads(data)
    except ValueError as exc:
        raise ImportError_(f"'{where}' is not valid JSON ({exc}): it is no file train --run-folder wrote") from None


class RunFolder:
    """The run folder, read through its directory descriptor: each name is opened relative to the folder
    above it with O_NOFOLLOW, so a symlink anywhere below the folder is refused, never followed, and a
    FIFO or device is refused before it is read."""

    def __init__(self, path: Path):
        self.path, self.count = path, 0
        try:
            self.fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)  # the folder the user named may be a link
        except OSError:
            raise ImportError_(f"'{path}' is not a file-only run folder (no such folder): pass the folder a run "
                               f"trained with --run-folder wrote, e.g. runs-offline/<run id>") from None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        os.close(self.fd)

    def name(self, rel: str) -> str:
        return str(self.path / rel)

    def _open(self, rel: str, *, directory: bool = False) -> int | None:
        """A descriptor for `rel` ("/"-separated names from this module or a listing), None if absent."""
        parts = rel.split("/") if rel else []
        fd = os.dup(self.fd)
        try:
            for i, part in enumerate(parts):
                here, want_dir = "/".join(parts[:i + 1]), directory or i < len(parts) - 1
                try:
                    mode = os.stat(part, dir_fd=fd, follow_symlinks=False).st_mode
                except FileNotFoundError:
                    return None
                if stat.S_ISLNK(mode):
                    raise ImportError_(f"'{self.name(here)}' is a symlink: import-run takes only the run folder's own "
                                       f"files, put the file itself there or remove the link")
                if not (stat.S_ISDIR(mode) if want_dir else stat.S_ISREG(mode)):
                    raise ImportError_(f"'{self.name(here)}' is not a {'folder' if want_dir else 'regular file'} as in "
                                       f"a run folder: remove it")
                try:  # O_NOFOLLOW: a symlink swapped in since the stat fails here (ELOOP, ENOTDIR)
                    nxt = os.open(part, os.O_RDONLY | os.O_NOFOLLOW | (os.O_DIRECTORY if want_dir else os.O_NONBLOCK),
                                  dir_fd=fd)
                except OSError as exc:
                    raise ImportError_(f"'{self.name(here)}' changed while import-run read it ({exc.strerror}): "
                                       f"import it when nothing writes to it") from None
                os.close(fd)
                fd = nxt
            fd, opened = -1, fd
            return opened
        finally:
            if fd >= 0:
                os.close(fd)

    def lstat(self, rel: str) -> os.stat_result | None:
        parent, _, base = rel.rpartition("/")
        fd = self._open(parent, directory=True)
        if fd is None:
            return None
        try:
            return os.stat(base, dir_fd=fd, follow_symlinks=False)
        except FileNotFoundError:
            return None
        finally:
            os.close(fd)

    def read(self, rel: str, limit: int) -> bytes | None:
        fd = self._open(rel)
        if fd is None:
            return None
        with os.fdopen(fd, "rb") as f:
            data = f.read(limit + 1) if self._fits(rel, f, limit) else b""
        if len(data) > limit:  # it grew since fstat
            self._fits(rel, None, limit)
        return data

    def _fits(self, rel: str, f, limit: int) -> bool:
        if f is None or not stat.S_ISREG((st := os.fstat(f.fileno())).st_mode) or st.st_size > limit:
            raise ImportError_(f"'{self.name(rel)}' is not a regular file of at most {limit >> 20} MiB, the limit "
                               f"import-run sets for it: remove or shorten it")
        return True

    def json(self, rel: str, default=None):
        data = self.read(rel, MAX_JSON_BYTES)
        if data is None and default is None:
            raise ImportError_(f"'{self.name(rel)}' is missing: it is no run folder train --run-folder wrote")
        record = default if data is None else parse_json(data, self.name(rel))
        if not isinstance(record, dict):
            raise ImportError_(f"'{self.name(rel)}' holds no JSON object: it is no file train --run-folder wrote")
        return record

    def copy(self, rel: str, dest: Path, limit: int) -> Path:
        self.count += 1
        if self.count > MAX_FILES:
            raise ImportError_(f"'{self.path}' holds over {MAX_FILES} files, more than import-run takes: remove some")
        fd = self._open(rel)
        if fd is None:
            raise ImportError_(f"'{self.name(rel)}' is missing: it is no run folder train --run-folder wrote")
        dest.parent.mkdir(parents=True, exist_ok=True)
        with os.fdopen(fd, "rb") as f, open(dest, "xb") as out:
            self._fits(rel, f, limit)
            while chunk := f.read(min(1 << 20, limit + 1 - out.tell())):
                out.write(chunk)
            if out.tell() > limit:
                self._fits(rel, None, limit)
        return dest

    def run_folders(self) -> list[str]:
        """The folders right below this one that hold a run.json (symlinks left aside): a folder of runs."""
        with os.scandir(self.fd) as entries:
            names = sorted(e.name for e in entries if e.is_dir(follow_symlinks=False))
        return [name for name in names if self.lstat(f"{name}/run.json")]

    def walk(self, rel: str) -> list[str]:
        """Every file under folder `rel`; a symlink there, whatever its name, is refused."""
        fd = self._open(rel, directory=True)
        if fd is None:
            return []
        try:
            with os.scandir(fd) as entries:  # scandir works on its own duplicate of fd
                found = sorted((e.name, e.is_symlink(), e.is_dir(follow_symlinks=False)) for e in entries)
        finally:
            os.close(fd)
        out = []
        for name, link, is_dir in found:
            if link:
                self._open(f"{rel}/{name}")  # refuses it, naming it
            out += self.walk(f"{rel}/{name}") if is_dir else [f"{rel}/{name}"]
            if len(out) > MAX_FILES:
                raise ImportError_(f"'{self.name(rel)}' holds over {MAX_FILES} files, more than import-run takes")
        return out

    def check_unmarked(self) -> None:
        """Refuses a folder imported already or being imported (its marker), or a marker that is a link."""
        where, st = self.name(MARKER), self.lstat(MARKER)
        if st is None:
            return
        if stat.S_ISLNK(st.st_mode):
            raise ImportError_(f"'{where}' is a symlink: import-run writes its marker there itself, remove the link")
        try:
            done = self.json(MARKER)
        except ImportError_:  # unreadable: it still says the folder was (being) imported
            done = {}
        if not done.get("complete", "run_id" in done):  # markers before 'complete' were written when done
            left = f"run {done['run_id']} in {done.get('tracking_uri')}" if done.get("run_id") else "any run it left"
            raise ImportError_(f"'{where}' says an import of it began and did not finish (killed?): if none is "
                               f"running, delete {left} and {where}, then import again")
        raise ImportError_(f"'{self.path}' was imported already as run {done.get('run_id')} "
                           f"({done.get('tracking_uri')}): delete {where} to import it again")

    def claim(self, rel: str) -> int:
        """`rel` created for writing, never through a symlink and never if anything is there already."""
        try:
            return os.open(rel, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644, dir_fd=self.fd)
        except FileExistsError:
            raise ImportError_(f"'{self.name(rel)}' appeared while import-run checked the folder: another import "
                               f"of it is under way") from None
        except OSError as exc:
            raise ImportError_(f"'{self.name(rel)}' cannot be written ({exc.strerror}): import-run marks the folder "
                               f"it imports, make it writable") from None
