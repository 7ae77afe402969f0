"""The Lightning names the recipes use that are not public API, in one place.

Lightning keeps these behind a leading underscore; the recipes need them for three things
Lightning has no public hook for: replaying a Hydra job's overrides in the DDP children it starts,
recognising its own SLURM signal handler (to put a checkpoint in front of submitit's), and saving
and restoring the process's RNG states in checkpoints. Every use goes through this module, and
:func:`missing_names` (run by ``tests/test_private_api.py``) names what an upgrade removed.

>>> missing_names()
[]
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

import lightning as L

# "module:attribute.path" -> why the recipes need it
REQUIRED = {
    "lightning.fabric.strategies.launchers.subprocess_script:_hydra_subprocess_cmd": (
        "DDP children of a Hydra job replay its overrides (recipes.toolkit.run.ddp_launch)"
    ),
    "lightning.pytorch.strategies.launchers.subprocess_script:_hydra_subprocess_cmd": (
        "the same for the Trainer's launcher"
    ),
    "lightning.pytorch.trainer.connectors.signal_connector:_HandlersCompose": (
        "recognise Lightning's own SLURM handler (recipes.toolkit.run.preemption)"
    ),
    "lightning.pytorch.trainer.connectors.checkpoint_connector"
    ":_CheckpointConnector.hpc_save_path": (
        "where a preemption checkpoint goes (recipes.toolkit.run.preemption)"
    ),
    "lightning.pytorch.trainer.trainer:Trainer._checkpoint_connector": (
        "the Trainer's checkpoint connector (set in Trainer.__init__)"
    ),
    "lightning.fabric.loggers.csv_logs:_ExperimentWriter._check_log_dir_exists": (
        "a restarted run keeps its metrics.csv rows (recipes.toolkit.run.resume)"
    ),
    "lightning.fabric.utilities.seed:_collect_rng_states": "RNG states into checkpoints",
    "lightning.fabric.utilities.seed:_set_rng_states": "RNG states back from checkpoints",
}


def _resolve(target: str) -> bool:
    module_name, _, path = target.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError:
        return False
    parts = path.split(".")
    if parts[:2] == ["Trainer", "_checkpoint_connector"]:  # an instance attribute
        return hasattr(L.Trainer(logger=False, enable_progress_bar=False), parts[1])
    for part in parts:
        if not hasattr(obj, part):
            return False
        obj = getattr(obj, part)
    return True


def missing_names() -> list[str]:
    """``"name (why)"`` for each private name the recipes use that this Lightning lacks."""
    return [f"{name} ({why})" for name, why in REQUIRED.items() if not _resolve(name)]


def set_ddp_child_command(command: Callable[[int], tuple[Any, str]]) -> None:
    """Make Lightning's subprocess launchers start local rank ``r`` with ``command(r)``."""
    from lightning.fabric.strategies.launchers import subprocess_script as fabric_launcher
    from lightning.pytorch.strategies.launchers import subprocess_script as pytorch_launcher

    fabric_launcher._hydra_subprocess_cmd = command
    pytorch_launcher._hydra_subprocess_cmd = command


def is_lightning_signal_handler(handler: object) -> bool:
    """Whether ``handler`` is the one Lightning installs for SLURM signals."""
    from lightning.pytorch.trainer.connectors.signal_connector import _HandlersCompose

    return isinstance(handler, _HandlersCompose)


def hpc_save_path(trainer: L.Trainer) -> str:
    """The path Lightning gives the next ``hpc_ckpt_<n>.ckpt`` of ``trainer``'s run."""
    return trainer._checkpoint_connector.hpc_save_path(trainer.default_root_dir)


def collect_rng_states(include_cuda: bool) -> dict[str, Any]:
    """The process's torch, numpy, random (and CUDA) RNG states."""
    from lightning.fabric.utilities.seed import _collect_rng_states

    return _collect_rng_states(include_cuda=include_cuda)


def set_rng_states(states: dict[str, Any]) -> None:
    """Restore RNG states made by :func:`collect_rng_states`."""
    from lightning.fabric.utilities.seed import _set_rng_states

    _set_rng_states(states)
