"""A throwaway PostgreSQL server from Debian's `postgresql` package on 127.0.0.1, for the tests'
`postgres` fixture and the study-scaling benchmark: initdb in a temp folder, start, databases, stop."""
from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bindir() -> str | None:
    """The newest installed PostgreSQL's bin folder, or None where the package is not installed."""
    bins = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
    return bins[-1] if bins else None


class Postgres:
    """`with Postgres() as pg: url = pg.database()`; as root the server runs as the postgres user."""

    def __init__(self, *, max_connections: int = 200, hba_first: str = ""):
        self.bin = bindir()
        if not self.bin:
            raise RuntimeError("PostgreSQL is not installed: apt-get install postgresql")
        self.max_connections, self.hba_first = max_connections, hba_first
        self.port = free_port()
        self._as = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 and shutil.which("runuser") else []
        self._names = iter(range(10_000))

    def run(self, tool: str, *args: str) -> str:
        done = subprocess.run([*self._as, f"{self.bin}/{tool}", *args], capture_output=True, text=True)
        if done.returncode:
            raise RuntimeError(f"{tool} failed: {done.stderr.strip()[-1500:]}")
        return done.stdout

    def __enter__(self) -> Postgres:
        # Not under a private temp dir: the server runs as the postgres user.
        self.root = Path(tempfile.mkdtemp(prefix="fer-pg-"))
        os.chmod(self.root, 0o777)
        self.data = self.root / "data"
        self.run("initdb", "-D", str(self.data), "-A", "trust", "-U", "fer", "--no-sync")
        if self.hba_first:  # first match wins
            hba = self.data / "pg_hba.conf"
            hba.write_text(self.hba_first + hba.read_text())
        self.run("pg_ctl", "-D", str(self.data), "-l", str(self.root / "log"), "-w", "start", "-o",
                 f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off "
                 f"-c max_connections={self.max_connections}")
        return self

    def sql(self, statement: str, db: str = "postgres") -> str:
        return self.run("psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", "fer", "-d", db, "-At", "-c", statement)

    def database(self, owner: str = "fer", name: str | None = None) -> str:
        """A fresh database and its URL (no password: PGPASSWORD carries one where a role needs it)."""
        name = name or f"optuna{next(self._names)}"
        self.run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "fer", "-O", owner, name)
        return f"postgresql://{owner}@127.0.0.1:{self.port}/{name}"

    def __exit__(self, *exc) -> None:
        subprocess.run([*self._as, f"{self.bin}/pg_ctl", "-D", str(self.data), "-m", "immediate", "stop"],
                       capture_output=True)
        shutil.rmtree(self.root, ignore_errors=True)
