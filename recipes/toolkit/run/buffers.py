"""Rank 0's module buffers (batch-norm statistics) on every rank before evaluation.

Evaluation batches are dealt out without repetition, so ranks may run different numbers of
batches; DDP's per-forward buffer broadcast would then deadlock, hence ``broadcast_buffers:
false`` in the DDP trainer configs. Training uses batch statistics, so only evaluation needs the
running statistics to agree: this callback broadcasts them once per evaluation, from rank 0 (whose
buffers are the ones checkpoints hold).
"""

from __future__ import annotations

import lightning as L
import torch.distributed as dist


def broadcast_buffers(module: L.LightningModule) -> None:
    """Copy rank 0's buffers to all ranks (no-op outside a process group)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return
    for buffer in module.buffers():
        dist.broadcast(buffer.data, src=0)


class SyncBuffers(L.Callback):
    """Call :func:`broadcast_buffers` at the start of every validation and test epoch."""

    def on_validation_epoch_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        broadcast_buffers(module)

    def on_test_epoch_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        broadcast_buffers(module)
