"""Training over several processes (hosts): JAX's multi-process runtime under Keras's DataParallel.

Every process runs the same `fer-exp train` command with its own process id (`--coordinator HOST:PORT
--num-processes N --process-id I`, or JAX's `JAX_COORDINATOR_ADDRESS` / `JAX_NUM_PROCESSES` /
`JAX_PROCESS_ID`, or nothing at all under SLURM, whose `srun` variables JAX reads itself). `initialize`
starts the runtime before anything touches a device; `keras.distribution.list_devices()` then lists
every process's devices and one `DataParallel` spans them all (`devices.data_parallel`).

Each process loads the data and feeds only its shard of every global batch (`shard`): all of them
shuffle with the same seed, so the shards partition each epoch exactly as one process with all the
devices would split it. Process 0 is the recorder: it alone records to MLflow (or a run folder) and
writes checkpoints; the others record nothing (`is_recorder`). Keras's weight saving is itself a
collective, so every process keeps its own copy of the checkpoint (`trainer.backup_dir`: process i > 0
in `process-<i>/`), and a resumed run restores each process from its own: resume on the same machines,
or keep `FER_CACHE_DIR` on a filesystem they share; `check_same` refuses, in one line, processes whose
checkpoints disagree.

A process that dies ends the others instead of hanging them: a collective with a dead peer fails
(gloo on CPU: at once), and JAX's coordination service ends every process whose peer has sent no
heartbeat for `timeout_s` seconds (NCCL on GPU waits that long).
"""
from __future__ import annotations

import os

import keras
import numpy as np

from ..errors import UserError

ENV = ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID")
# At exit every process waits for the others (JAX's shutdown barrier): the non-recorders for process 0's
# end-of-run work (evaluation, TTA, logging the model), which takes minutes on a CPU.
SHUTDOWN_S = 3600
_started = False


def slurm_tasks() -> int:
    """Tasks of the SLURM job step this process is one of (1 outside `srun`)."""
    needed = ("SLURM_JOB_ID", "SLURM_STEP_NODELIST", "SLURM_NTASKS", "SLURM_PROCID", "SLURM_LOCALID")
    return int(os.environ["SLURM_NTASKS"]) if all(v in os.environ for v in needed) else 1


def wanted(coordinator: str | None, num_processes: int | None, process_id: int | None) -> bool:
    """Whether this command is one process of several: flags given, or SLURM says so."""
    return coordinator is not None or (num_processes or 1) > 1 or process_id is not None or slurm_tasks() > 1


def initialize(coordinator: str | None, num_processes: int | None, process_id: int | None,
               timeout_s: int = 120) -> None:
    """Start JAX's multi-process runtime (what `keras.distribution.initialize` does, with time-outs:
    joining waits at most `timeout_s`, and a peer silent for `timeout_s` ends this process). Missing
    values come from SLURM's environment (JAX's own cluster detection). Call before any device is used."""
    global _started
    if keras.backend.backend() != "jax":
        raise UserError("training over several processes needs the JAX backend: run with KERAS_BACKEND=jax")
    if slurm_tasks() == 1 and (coordinator is None or num_processes is None or process_id is None):
        raise UserError("training over several processes needs --coordinator HOST:PORT, --num-processes N and "
                        "--process-id I on every process (or JAX_COORDINATOR_ADDRESS / JAX_NUM_PROCESSES / "
                        "JAX_PROCESS_ID, or SLURM's srun)")
    if num_processes is not None and process_id is not None and not 0 <= process_id < num_processes:
        raise UserError(f"--process-id {process_id} is out of range: it must be in 0..{num_processes - 1}")
    import jax

    try:
        jax.distributed.initialize(coordinator, num_processes, process_id, initialization_timeout=timeout_s,
                                   heartbeat_timeout_seconds=timeout_s, shutdown_timeout_seconds=SHUTDOWN_S)
    except Exception as exc:  # the coordinator unreachable, or not every process joined in time
        raise UserError(f"could not join the {num_processes or slurm_tasks()} training processes at "
                        f"{coordinator or 'the SLURM coordinator'} within {timeout_s} s ({_first_line(exc)}): start "
                        f"every process, with the same --coordinator (process 0's host and a free port)") from None
    _started = True


def started() -> bool:
    return _started


def index() -> int:
    """This process's id (0 on one process)."""
    if not _started:
        return 0
    import jax

    return jax.process_index()


def count() -> int:
    if not _started:
        return 1
    import jax

    return jax.process_count()


def is_recorder() -> bool:
    """Process 0 records (MLflow, run folder, checkpoints); the others record nothing."""
    return index() == 0


def broadcast_text(text: str, size: int = 256) -> str:
    """Process 0's `text` on every process (e.g. the run id its tracker started)."""
    if count() == 1:
        return text
    from jax.experimental import multihost_utils

    raw = np.frombuffer(text.encode()[:size].ljust(size, b"\0"), dtype=np.uint8)
    return bytes(np.asarray(multihost_utils.broadcast_one_to_all(raw))).rstrip(b"\0").decode()


def check_same(what: str, value: str, fix: str) -> None:
    """Refuse, in one line on every process, processes whose `value` differs from process 0's."""
    first = broadcast_text(value)
    if count() > 1:
        from jax.experimental import multihost_utils

        agree = np.asarray(multihost_utils.process_allgather(np.array([first == value])))
        if not agree.all():
            odd = [int(i) for i in np.flatnonzero(~agree.reshape(-1))]
            raise UserError(f"process(es) {odd} of {count()} see another {what} than process 0 "
                            f"({value!r} here, {first!r} there): {fix}")


def shard(rows: np.ndarray, batch_size: int) -> np.ndarray:
    """This process's part of every global batch of `rows` (a whole number of batches): process i
    takes the i-th of `count()` equal slices of each."""
    n, local = count(), batch_size // count()
    if n == 1:
        return rows
    batches = rows.reshape(-1, batch_size, *rows.shape[1:])
    return batches[:, index() * local:(index() + 1) * local].reshape(-1, *rows.shape[1:])


class PeerFailed(UserError):
    """Another training process stopped (died, or was killed) mid-training."""


_PEER_WORDS = ("gloo", "nccl", "connection reset", "connection closed", "heartbeat", "coordination service",
               "barrier", "unavailable")


def peer_failure(exc: BaseException) -> str:
    """What the error raised by a collective says, where another process stopping explains it; '' else."""
    if count() == 1:
        return ""
    line = _first_line(exc)
    return (f"a peer of process {index()} of {count()} stopped ({line})"
            if any(word in line.lower() for word in _PEER_WORDS) else "")


def describe() -> dict:
    """Params: how many processes trained, and which of them recorded."""
    return {"process_count": count(), "process_id": index()}


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
