"""Where the shared Hydra configs live, for a task's primary configs to find them.

A task keeps its own primary configs and groups beside its code; the groups every task shares
(``rnn``, ``trainer``, ``optim``, ``logger``, ``hydra``, ...) are in the repository's top-level
``conf/``. A primary config adds them with::

    hydra:
      searchpath:
        - file://${shared_conf:}

which resolves once :func:`register_resolvers` has run (each entry point calls it on import).

>>> register_resolvers()
>>> from omegaconf import OmegaConf
>>> OmegaConf.create({"path": "${shared_conf:}"}).path == str(SHARED_CONF)
True
"""

from pathlib import Path

from omegaconf import OmegaConf

from recipes.toolkit.run.run_dir import claim_run_dir

SHARED_CONF = Path(__file__).resolve().parents[2] / "conf"


def register_resolvers() -> None:
    """Register ``${shared_conf:}`` (the absolute path of the shared ``conf/``) and
    ``${new_run_dir:<parent>}`` (:func:`recipes.toolkit.run.run_dir.claim_run_dir`); idempotent."""
    OmegaConf.register_new_resolver("shared_conf", lambda: str(SHARED_CONF), replace=True)
    OmegaConf.register_new_resolver("new_run_dir", claim_run_dir, replace=True)
