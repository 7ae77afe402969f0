"""DDP children started by Lightning under Hydra: same run directory, no sweep, nothing extra.

Lightning re-runs ``sys.argv`` for every local rank > 0 with ``hydra.run.dir=<run.dir>``. Under
``-m`` that re-runs the whole sweep in each child, and ``run.dir`` re-resolves ``${now:...}``.
:func:`child_command` instead replays the job's own overrides (``hydra.overrides.task``) in run
mode with ``hydra.run.dir`` set to the job's resolved output directory, no ``.hydra`` folder
(``hydra.output_subdir=null``) and logging to the console only (no extra log file).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from recipes.toolkit.run.lightning_internals import set_ddp_child_command

# Hydra overrides of the parent that must not reach a child (they describe the sweep or outputs).
_PARENT_ONLY = (
    "hydra.run.",
    "hydra.sweep.",
    "hydra.mode",
    "hydra.output_subdir",
    "hydra.job.name",
    "hydra/launcher",
    "hydra.launcher",
    "hydra/sweeper",
    "hydra.sweeper",
    "hydra/job_logging",
    "hydra.job_logging",
    "hydra/hydra_logging",
    "hydra.hydra_logging",
)


def child_command(local_rank: int) -> tuple[Sequence[str], str]:
    """``(command, cwd)`` that starts local rank ``local_rank`` of the current Hydra job."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.utils import get_original_cwd, to_absolute_path

    import __main__

    hydra_cfg = HydraConfig.get()
    if __main__.__spec__ is None:
        command = [sys.executable, to_absolute_path(sys.argv[0])]
    else:
        command = [sys.executable, "-m", __main__.__spec__.name]
    command += list(hydra_cfg.overrides.task)
    command += [o for o in hydra_cfg.overrides.hydra if not o.lstrip("+~").startswith(_PARENT_ONLY)]
    command += [
        f'hydra.run.dir="{hydra_cfg.runtime.output_dir}"',
        "hydra.output_subdir=null",
        f"hydra.job.name={hydra_cfg.job.name}_rank{local_rank}",
        "hydra/job_logging=stdout",
        "hydra/hydra_logging=none",
    ]
    return command, get_original_cwd()


def install() -> None:
    """Make Lightning's subprocess launcher use :func:`child_command` (idempotent)."""
    set_ddp_child_command(child_command)
