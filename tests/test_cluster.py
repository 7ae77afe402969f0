"""The SLURM launcher on a real single-node cluster (scripts/slurm_cluster.sh): a sweep as a job
array, and a job preempted mid-training that is requeued and resumes from its checkpoint."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.recipe_helpers import REPO, SMALL_CORPUS

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

SCRIPT = REPO / "scripts" / "slurm_cluster.sh"
STATE = Path(os.environ.get("RNNLIB_SLURM_DIR", "/tmp/rnnlib-slurm"))
LAUNCHER = [
    "hydra/launcher=slurm",
    "hydra.launcher.cpus_per_task=1",
    "hydra.launcher.mem_gb=2",
    "hydra.launcher.timeout_min=15",
]
TINY = [*SMALL_CORPUS, "rnn.hidden_size=32", "rnn.num_layers=1"]


@pytest.fixture(scope="session")
def slurm_env() -> dict:
    """Start the cluster (installing slurm when missing); skip only if that is impossible."""
    done = subprocess.run(["bash", str(SCRIPT), "start"], capture_output=True, text=True)
    if done.returncode != 0:
        if "not installed" in done.stderr or "no apt-get" in done.stderr:
            pytest.skip(f"slurm cannot be installed here: {done.stderr.strip()}")
        raise AssertionError(f"slurm_cluster.sh start failed:\n{done.stdout}\n{done.stderr}")
    yield dict(os.environ, SLURM_CONF=str(STATE / "slurm.conf"))
    subprocess.run(["bash", str(SCRIPT), "stop"], check=False)


def _sweep(args: list[str], env: dict, tmp_path: Path, entry: str = "train") -> subprocess.Popen:
    env = dict(env, RNNLIB_DATA_DIR=str(tmp_path / "data"), RNNLIB_LOG_DIR=str(tmp_path / "logs"))
    command = [sys.executable, "-m", f"recipes.timit.{entry}", "-m", *LAUNCHER, *args]
    log = open(tmp_path / "launcher.log", "w")  # noqa: SIM115 - closed with the process
    return subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)


def _finish(
    proc: subprocess.Popen, tmp_path: Path, timeout: float = 600, task: str = "timit_ctc"
) -> Path:
    assert proc.wait(timeout=timeout) == 0, (tmp_path / "launcher.log").read_text()[-5000:]
    sweeps = list((tmp_path / "logs" / task / "multiruns").iterdir())
    assert len(sweeps) == 1, sweeps
    return sweeps[0]


@pytest.mark.parametrize(
    "entry, task", [("train", "timit_ctc"), ("train_framewise", "timit_framewise")]
)
def test_sweep_runs_as_a_job_array(entry, task, slurm_env, tmp_path):
    proc = _sweep([*TINY, "trainer.max_epochs=1", "seed=1,2"], slurm_env, tmp_path, entry)
    sweep = _finish(proc, tmp_path, task=task)
    for job in ("0", "1"):
        results = json.loads((sweep / job / "results.json").read_text())
        assert results["eval"]["dev"]["phones"] > 0
    seeds = [(sweep / j / ".hydra" / "overrides.yaml").read_text() for j in ("0", "1")]
    assert "seed=1" in seeds[0] and "seed=2" in seeds[1]
    assert not (tmp_path / "logs" / task / "runs").exists()


def _job_id(env: dict) -> str:
    out = subprocess.run(["squeue", "-h", "-o", "%i %T"], env=env, capture_output=True, text=True)
    running = [line.split()[0] for line in out.stdout.splitlines() if line.endswith("RUNNING")]
    assert len(running) == 1, out.stdout
    return running[0]


def test_preempted_job_checkpoints_requeues_and_resumes(slurm_env, tmp_path):
    proc = _sweep([*TINY, "trainer.max_epochs=25", "seed=3"], slurm_env, tmp_path)
    deadline = time.time() + 300
    last = None
    while time.time() < deadline and proc.poll() is None:
        found = list((tmp_path / "logs").glob("timit_ctc/multiruns/*/0/checkpoints/last.ckpt"))
        if found:
            last = found[0]
            break
        time.sleep(0.2)
    assert last is not None, (tmp_path / "launcher.log").read_text()[-3000:]
    job = _job_id(slurm_env)
    # what SLURM sends `signal_delay_s` before a time limit, or on preemption
    subprocess.run(["scancel", "--signal=USR2", job], env=slurm_env, check=True)
    run_dir = _finish(proc, tmp_path) / "0"
    assert (run_dir / "hpc_ckpt_1.ckpt").exists()
    train_log = (run_dir / "train.log").read_text()
    assert f"resuming from {run_dir / 'hpc_ckpt_1.ckpt'}" in train_log
    shown = subprocess.run(
        ["scontrol", "show", "job", job], env=slurm_env, capture_output=True, text=True
    )
    assert "Restarts=1" in shown.stdout, shown.stdout
    results = json.loads((run_dir / "results.json").read_text())
    assert results["epochs"] == 25 and results["eval"]["dev"]["phones"] > 0
