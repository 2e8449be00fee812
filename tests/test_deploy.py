"""The launch examples under deploy/: parsed as their tools would read them, and the `fer-exp` command
each contains run with `--help` (every option it passes exists, and the process count agrees)."""
from __future__ import annotations

import re
import shlex
from pathlib import Path

import yaml
from click.testing import CliRunner

from fer_experiments.cli import main

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"


def _runs_with_help(command: str) -> None:
    words = shlex.split(command)
    assert words[0] == "fer-exp", command
    result = CliRunner().invoke(main, [*words[1:], "--help"])
    assert result.exit_code == 0, result.output
    long_options = {w.split("=")[0] for w in words if w.startswith("--")}
    assert long_options <= set(re.findall(r"--[a-z][a-z-]*", result.output)), (long_options, result.output)


def test_slurm_example_runs_one_task_per_node_and_lets_jax_read_srun():
    text = (DEPLOY / "slurm.sbatch").read_text()
    directives = dict(re.findall(r"^#SBATCH --([a-z-]+)=(\S+)", text, re.M))
    assert int(directives["nodes"]) >= 2 and directives["ntasks-per-node"] == "1"
    (line,) = [line for line in text.splitlines() if line.startswith("srun ")]
    command = line.removeprefix("srun ").replace('"$DATA"', "data")
    assert "--coordinator" not in command and "--process-id" not in command  # srun's variables say it
    assert "KERAS_BACKEND=jax" in text
    _runs_with_help(command)


def test_kubernetes_example_is_an_indexed_job_whose_pod_0_coordinates():
    service, job = yaml.safe_load_all((DEPLOY / "k8s-indexed-job.yaml").read_text())
    assert service["kind"] == "Service" and service["spec"]["clusterIP"] == "None"
    spec = job["spec"]
    assert job["kind"] == "Job" and spec["completionMode"] == "Indexed"
    assert spec["completions"] == spec["parallelism"]
    pod = spec["template"]["spec"]
    assert pod["subdomain"] == service["metadata"]["name"]
    (container,) = pod["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["KERAS_BACKEND"] == "jax"
    shell, flag, command = container["command"]
    assert (shell, flag) == ("bash", "-c")
    words = shlex.split(command)
    value = {w: words[i + 1] for i, w in enumerate(words[:-1]) if w.startswith("--")}
    assert int(value["--num-processes"]) == spec["completions"]
    host, port = value["--coordinator"].rsplit(":", 1)
    assert host == f"{job['metadata']['name']}-0.{service['metadata']['name']}"  # pod 0, by the Service's DNS
    assert int(port) in [p["port"] for p in service["spec"]["ports"]]
    assert value["--process-id"] == "$JOB_COMPLETION_INDEX"
    _runs_with_help(command.replace("$JOB_COMPLETION_INDEX", "0"))
