"""`fer-exp bundle`: one folder that installs and trains on a machine with no network (a cluster's GPU
node): the data packed once (`data.pack`, a compressed `.npz`, not the JPEG tree), this package as a
wheel, the wheels it needs for a stated target, the presets, and a `run.sh` that makes a virtualenv from them with
`pip --no-index` and trains a preset on the JAX backend into a run folder (`--run-folder`), which
`fer-exp import-run` brings into MLflow afterwards.

The node needs neither TensorFlow nor MLflow nor Optuna: training on JAX with a run folder imports
none of them, so the bundle's requirements are the package's own less those three (and the database
driver), plus `jax[<accelerator>]`. Wheels are fetched here, where the package index is reachable,
with `pip download` for the target's Python version and platform (default: this machine's).
"""
from __future__ import annotations

import importlib.metadata as md
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from .errors import UserError

NOT_ON_THE_NODE = ("tensorflow", "tensorflow-cpu", "mlflow", "optuna", "psycopg")
ACCELERATORS = ("cpu", "cuda12", "cuda13")
PACKAGE = "fer_experiments"


def node_requirements(accelerator: str) -> list[str]:
    """The installed package's requirements that training on JAX with a run folder needs, and JAX."""
    reqs = [Requirement(r) for r in md.requires(PACKAGE) or []]
    base = [r for r in reqs if not (r.marker and "extra" in str(r.marker))]  # no extra's lines
    kept = [_bare(r) for r in base if _name(r) not in NOT_ON_THE_NODE]
    # The version range of any of the package's jax lines; its extras are the accelerator's to choose
    # (the `gpu` extra's line is jax[cuda12], which a CPU bundle must not inherit: 3 GB of CUDA wheels).
    jax = next((r for r in reqs if _name(r) == "jax"), None)
    extra = "" if accelerator == "cpu" else f"[{accelerator}]"
    return [*kept, f"jax{extra}{jax.specifier if jax else ''}"]


def _name(requirement: str | Requirement) -> str:
    req = requirement if isinstance(requirement, Requirement) else Requirement(requirement)
    return canonicalize_name(req.name)


def _bare(req: Requirement) -> str:
    """The requirement without its environment marker (the node's platform is the bundle's target)."""
    bare = Requirement(str(req))
    bare.marker = None
    return str(bare)


def make(data: str, out: str | os.PathLike, *, preset: str, accelerator: str = "cpu",
         python_version: str | None = None, platform: str | None = None, echo=print) -> Path:
    """Write the bundle into `out` (new or empty); returns it."""
    from . import config as cfgmod
    from .data.dataset import pack

    if accelerator not in ACCELERATORS:
        raise UserError(f"accelerator '{accelerator}' is not one of {', '.join(ACCELERATORS)}")
    cfgmod.build_config(preset)  # an unknown preset fails here, not on the node
    out = Path(out).expanduser().resolve()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError(f"bundle folder {out} exists and is not empty: pass a new --out folder")
    (out / "wheels").mkdir(parents=True, exist_ok=True)
    packed = pack(data, out / "data" / "data.npz")
    echo(f"data: {packed} ({packed.stat().st_size / 1e6:.1f} MB)")
    (out / "experiments").mkdir()
    for preset_file in cfgmod.EXPERIMENTS_DIR.glob("*.yaml"):  # every preset, since one may be another's base
        shutil.copy2(preset_file, out / "experiments" / preset_file.name)
    requirements = node_requirements(accelerator)
    (out / "requirements.txt").write_text("\n".join(requirements) + "\n")
    _pip("wheel", "--no-deps", "--no-build-isolation", "-w", str(out / "wheels"), str(_source_tree()))
    target = [*(["--python-version", python_version] if python_version else []),
              *(["--platform", platform] if platform else []),
              *(["--implementation", "cp", "--abi", f"cp{python_version.replace('.', '')}"]
                if python_version else [])]
    _pip("download", "--only-binary=:all:", "-d", str(out / "wheels"), *target, "-r", str(out / "requirements.txt"))
    wheels = sorted(p.name for p in (out / "wheels").glob("*.whl"))
    echo(f"wheels: {len(wheels)} in {out / 'wheels'} "
         f"({sum(p.stat().st_size for p in (out / 'wheels').iterdir()) / 1e6:.0f} MB; "
         f"Python {python_version or '.'.join(map(str, sys.version_info[:2]))}, jax {accelerator})")
    run_sh = out / "run.sh"
    run_sh.write_text(RUN_SH.replace("@PRESET@", shlex.quote(preset)))
    run_sh.chmod(0o755)
    echo(f"bundle: {out} — copy it to the node and run `bash {out.name}/run.sh` (extra fer-exp train options "
         f"after it); then `fer-exp import-run <its run folder>` where MLflow is")
    return out


def _source_tree() -> Path:
    root = Path(__file__).resolve().parents[1]
    if not (root / "setup.cfg").is_file():
        raise UserError(f"`fer-exp bundle` builds the package from its source tree, and {root} is not one: "
                        f"run it from a checkout (pip install -e .)")
    return root


def _pip(*args: str) -> None:
    proc = subprocess.run([sys.executable, "-m", "pip", *args, "--disable-pip-version-check", "-q"],
                          capture_output=True, text=True)
    if proc.returncode:
        said = [line for line in proc.stderr.splitlines() if line.strip()][-1:] or ["(nothing)"]
        raise UserError(f"pip {args[0]} failed ({said[0].strip()[:300]}): make the bundle where the package index "
                        f"is reachable, with a --python-version/--platform that has wheels")


RUN_SH = r"""#!/usr/bin/env bash
# Train on this machine with no network: a virtualenv from ./wheels (pip --no-index), the JAX backend,
# the packed data, and a run folder. Options after run.sh go to `fer-exp train` (e.g. --epochs 5).
#   bash run.sh [fer-exp train options]      # RUNS=<folder> to record elsewhere [./runs]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="${VENV:-$here/.venv}"
runs="${RUNS:-$here/runs}"
if [ ! -x "$venv/bin/fer-exp" ]; then
  "${PYTHON:-python3}" -m venv "$venv"
  "$venv/bin/pip" install -q --no-index --find-links "$here/wheels" -r "$here/requirements.txt"
  "$venv/bin/pip" install -q --no-index --no-deps "$here"/wheels/fer_experiments-*.whl
fi
export KERAS_BACKEND=jax FER_EXPERIMENTS_DIR="$here/experiments"
"$venv/bin/fer-exp" train --preset @PRESET@ --data "$here/data/data.npz" --run-folder "$runs" "$@"
run="$(ls -td "$runs"/*/ | head -1)"
echo "run folder: ${run%/} (bring it back where MLflow is: fer-exp import-run <it>)"
"""
