"""The journal-file study storage, made to survive crashes: a lease per running trial (the heartbeat
Optuna's journal storage lacks), and a journal whose last line a crash cut short is repaired, not
made worse.

Leases. `LeasedJournalStorage` is Optuna's `JournalStorage` with Optuna's own heartbeat interface
(`BaseHeartbeat`, which RDB storages implement) on trial leases written into the journal (`leases`).

Cut lines. A crash (SIGKILL, power loss, a full disk) while a worker appends leaves a last line with
no newline. Optuna's reader skips such a line, but the next append would land on it, making a line
no reader can parse and the journal unreadable from then on. `RepairingFileBackend` therefore cuts
an incomplete last line off before it appends (under the journal's lock, a copy of the whole file
kept first in `<journal>.bak`, or .bak1, .bak2 … beside an earlier one) and says so in one line:
no reader ever applied that line, so every worker's view of the study stays what it was. A
malformed line anywhere else is a one-line `JournalCorrupt` naming the file and line.
"""
from __future__ import annotations

import json
import os
import shutil
import sys

from optuna.storages.journal import JournalFileBackend, JournalStorage
from optuna.storages.journal._file import get_lock_file

from ..config import ConfigError
from .leases import LEASE, Leases, recover_or_wait, worker_identity  # noqa: F401  (the names journal users import)


class JournalCorrupt(ConfigError):
    """A line of the study journal that is not a journal record (one line: the file, the line, the fix)."""

class RepairingFileBackend(JournalFileBackend):
    """Optuna's `JournalFileBackend` that cuts an incomplete last line off before appending, and
    reports a malformed line as one line naming the file and line number."""

    def read_logs(self, log_number_from: int):
        try:
            yield from super().read_logs(log_number_from)
        except ValueError:  # json.JSONDecodeError, or Optuna's "Invalid log format."
            raise JournalCorrupt(self._corruption()) from None

    def append_logs(self, logs: list[dict]) -> None:
        # Optuna's append_logs, with the repair first: it must happen under the same lock as the write.
        with get_lock_file(self._lock):
            self._cut_incomplete_last_line()
            text = "\n".join(json.dumps(log, separators=(",", ":")) for log in logs) + "\n"
            with open(self._file_path, "ab") as f:
                f.write(text.encode("utf-8"))
                f.flush()
                os.fsync(f.fileno())

    def _cut_incomplete_last_line(self) -> None:
        size = os.path.getsize(self._file_path)
        if not size:
            return
        with open(self._file_path, "rb+") as f:
            f.seek(size - 1)
            if f.read(1) == b"\n":
                return
            keep, end = 0, size
            while end > 0 and not keep:  # the byte after the last newline, read backwards in blocks
                start = max(0, end - 65536)
                f.seek(start)
                cut = f.read(end - start).rfind(b"\n")
                keep, end = (start + cut + 1, 0) if cut >= 0 else (0, start)
            backup, n = self._file_path + ".bak", 0
            while os.path.exists(backup):  # an earlier repair's copy is kept too
                n += 1
                backup = f"{self._file_path}.bak{n}"
            shutil.copyfile(self._file_path, backup)
            f.truncate(keep)
            f.flush()
            os.fsync(f.fileno())
        print(f"warning: study journal {self._file_path} ended in a line cut short (a crash while writing it): "
              f"removed its {size - keep} bytes, which no worker had read; the file as it was is in {backup}",
              file=sys.stderr)

    def _corruption(self) -> str:
        number = 0
        with open(self._file_path, "rb") as f:
            for line in f:
                number += 1
                try:
                    json.loads(line)
                except ValueError:
                    break
        return (f"study journal {self._file_path} is corrupt at line {number} (not a journal record): restore the "
                f"file from a backup, or keep its first {number - 1} lines (head -n {number - 1} FILE > FIXED; what "
                f"was recorded after is lost) and pass --storage journal:FIXED")


class LeasedJournalStorage(JournalStorage, Leases):
    """A journal storage whose running trials hold a lease (see the module docstring and `leases`)."""

    def __init__(self, backend, *, interval: int, grace: float, on_stale):
        self._init_leases(interval=interval, grace=grace, on_stale=on_stale)
        JournalStorage.__init__(self, backend)
