"""Checkpoints written atomically (:mod:`recipes.toolkit.run.atomic`).

Lightning's own ``_atomic_save`` stages the file in the system temp folder and moves it, which is a
copy (not atomic) when that folder is on another filesystem; a kill then leaves a torn checkpoint.

>>> import tempfile
>>> folder = Path(tempfile.mkdtemp())
>>> AtomicCheckpointIO().save_checkpoint({"epoch": 3}, folder / "a" / "last.ckpt")
>>> sorted(p.name for p in (folder / "a").iterdir())
['last.ckpt']
"""

from __future__ import annotations

from pathlib import Path  # noqa: F401 (the doctest uses it)
from typing import Any

from lightning.pytorch.plugins.io import TorchCheckpointIO

from recipes.toolkit.run.atomic import atomic_torch_save


class AtomicCheckpointIO(TorchCheckpointIO):
    """``TorchCheckpointIO`` whose saves are atomic on local filesystems (see module doc)."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None
    ) -> None:
        if storage_options is not None:
            raise TypeError("AtomicCheckpointIO takes no storage_options")
        atomic_torch_save(checkpoint, path)
