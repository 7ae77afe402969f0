"""Optimizers and schedules from ``_target_`` configs (any class by its import path).

``optim`` is a partial config of an optimizer class (``_partial_: true``; the parameters are
given here). ``scheduler`` is one of: empty (no schedule); a partial config of a torch
learning-rate scheduler (called with the optimizer; ``monitor`` and ``interval`` go to
Lightning); or a full config of an epoch-end schedule on the dev error rate with
``step(metric, lr) -> lr`` and ``state_dict``/``load_state_dict`` (:class:`NewBob`).
Checkpoints of the release before used ``name:`` keys; those still load.

>>> import torch
>>> opt = build_optimizer({"_target_": "torch.optim.SGD", "_partial_": True, "lr": 0.1},
...                       [torch.nn.Parameter(torch.zeros(2))])
>>> type(opt).__name__, opt.defaults["lr"]
('SGD', 0.1)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch
from hydra.utils import instantiate

_LEGACY_OPTIMIZERS = {
    "adam": "torch.optim.Adam",
    "rmsprop": "torch.optim.RMSprop",
    "adadelta": "torch.optim.Adadelta",
}
_LEGACY_SCHEDULERS = {
    "newbob": {"_target_": "recipes.toolkit.schedulers.NewBob"},
    "plateau": {
        "_target_": "torch.optim.lr_scheduler.ReduceLROnPlateau",
        "_partial_": True,
        "mode": "min",
    },
    "none": {},
}


def optimizer_config(options: Mapping) -> dict:
    """``options`` as a ``_target_`` config (``name: adam`` of older checkpoints converted)."""
    options = dict(options)
    if "_target_" in options or "name" not in options:
        return options
    name = options.pop("name")
    if name not in _LEGACY_OPTIMIZERS:
        raise ValueError(f"optim.name must be one of {sorted(_LEGACY_OPTIMIZERS)}, got {name!r}")
    return {"_target_": _LEGACY_OPTIMIZERS[name], "_partial_": True, **options}


def scheduler_config(options: Mapping | None) -> dict:
    """``options`` as a ``_target_`` config, ``{}`` for none (``name:`` keys converted)."""
    options = dict(options or {})
    if "_target_" in options or "name" not in options:
        return options
    name = options.pop("name")
    if name not in _LEGACY_SCHEDULERS:
        raise ValueError(f"scheduler.name must be newbob, plateau or none, got {name!r}")
    return {**_LEGACY_SCHEDULERS[name], **options} if _LEGACY_SCHEDULERS[name] else {}


def build_optimizer(options: Mapping, params: Iterable[torch.nn.Parameter]):
    """The optimizer of ``options`` over ``params``."""
    config = optimizer_config(options)
    if "_target_" not in config:
        raise ValueError("optim needs a _target_ (an optimizer class, e.g. torch.optim.Adam)")
    config["_partial_"] = True
    return instantiate(config)(params)


def build_epoch_schedule(options: Mapping | None) -> Any | None:
    """The epoch-end schedule of ``options`` (a non-partial scheduler config), else ``None``."""
    config = scheduler_config(options)
    if not config or config.get("_partial_"):
        return None
    return instantiate(config)


def lightning_scheduler(options: Mapping | None, optimizer, monitor: str) -> dict | None:
    """Lightning's ``lr_scheduler`` entry for a partial torch scheduler config, else ``None``."""
    config = scheduler_config(options)
    if not config.get("_partial_"):
        return None
    monitor = config.pop("monitor", monitor)
    interval = config.pop("interval", "epoch")
    return {"scheduler": instantiate(config)(optimizer), "monitor": monitor, "interval": interval}
