"""Studies through Optuna's gRPC storage proxy, for more workers than a database has connections.

`fer-exp study-server --storage postgresql://… --port P` holds the database connections (one pool, in
one process) and serves Optuna's storage API over gRPC (`optuna.storages.run_grpc_proxy_server`);
workers pass `--storage grpc://HOST:P` and open a `LeasedGrpcStorage`. The proxy forwards no
heartbeat — Optuna's `GrpcStorageProxy` is not a heartbeat storage, so a dead worker's trial would stay
RUNNING for ever — so the workers hold leases instead (`leases`: trial system attributes, which the
proxy does forward), and a dead worker's trial is failed and retried as with the journal.
"""
from __future__ import annotations

import warnings

import optuna
from optuna.storages import GrpcStorageProxy, run_grpc_proxy_server

from ..config import ConfigError
from .leases import Leases

READY_S = 10  # how long a worker waits for the proxy before it says it is unreachable


def parse(url: str) -> tuple[str, int]:
    """grpc://HOST:PORT → (host, port), or a one-line ConfigError."""
    rest = url.removeprefix("grpc://").rstrip("/")
    host, _, port = rest.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"storage '{url}' is not grpc://HOST:PORT: pass the address `fer-exp study-server` "
                          f"listens on, e.g. grpc://127.0.0.1:13000")
    return host, int(port)


class LeasedGrpcStorage(GrpcStorageProxy, Leases):
    """Optuna's gRPC storage client whose running trials hold a lease (the heartbeat the proxy lacks)."""

    def __init__(self, url: str, *, interval: int, grace: float, on_stale):
        host, port = parse(url)
        self._init_leases(interval=interval, grace=grace, on_stale=on_stale)
        with warnings.catch_warnings():  # "experimental" in Optuna's wording; documented since Optuna 4.2
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            GrpcStorageProxy.__init__(self, host=host, port=port)
        try:
            self.wait_server_ready(timeout=READY_S)
        except ConnectionError:
            raise ConfigError(f"storage {url} is unreachable (no study server answered within {READY_S} s): start "
                              f"`fer-exp study-server --storage <database URL> --port {port}` there, or fix the "
                              f"address") from None


def serve(storage, host: str, port: int) -> None:
    """Serve `storage` (an RDB storage) over gRPC until interrupted."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        run_grpc_proxy_server(storage, host=host, port=port)
