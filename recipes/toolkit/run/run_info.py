"""What a run directory records about how it was made: git, packages, the CPU, its threads and
its product routes (the CPU model and the thread count both change float rounding).

Call :func:`write_run_info` after the Trainer exists: ``deterministic: true`` changes the routes.
"""

import json
import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import torch

from rnnlib.ligru.products import cpu_identity, describe_routes

PACKAGES = (
    "torch",
    "torchaudio",
    "lightning",
    "hydra-core",
    "omegaconf",
    "torchmetrics",
    "soundfile",
)


def git_state(repo: Path) -> dict:
    """Commit and dirtiness of the repository holding ``repo`` (``None`` outside git)."""

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(
                ["git", *args], cwd=repo, capture_output=True, text=True, timeout=10, check=True
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip()

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": bool(status) if status is not None else None}


def package_versions() -> dict:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def write_run_info(run_dir: Path) -> dict:
    """Write ``run_info.json`` (command, git state, versions, platform, CPU) and return it."""
    info = {
        "command": sys.argv,
        "git": git_state(Path(__file__).resolve().parent),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": package_versions(),
        "cpu": cpu_identity(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),  # OMP_NUM_THREADS, else the cores
        "product_routes": describe_routes(),  # which library ran the Light GRU's CPU products
    }
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "run_info.json").write_text(json.dumps(info, indent=2) + "\n")
    return info
