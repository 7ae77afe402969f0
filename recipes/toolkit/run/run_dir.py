"""A fresh dated run directory per process, never shared with a run started in the same second.

The default run directory was ``runs/${now:%Y-%m-%d_%H-%M-%S}``: two runs of one task started
within the same second (a shell loop with ``&``, two terminals) resolved the same directory,
wrote each other's ``.hydra`` and ``run_info.json``, and the second's CSV logger stopped on the
first's metrics file. ``${new_run_dir:<parent>}`` (the default ``hydra.run.dir``) instead claims
the directory with an atomic ``mkdir``: the first process of a second gets ``<stamp>``, the next
``<stamp>_2``, and so on. An explicit ``hydra.run.dir=...`` (a resume, a sweep's run, a DDP
child) never calls it.

>>> import tempfile
>>> parent = tempfile.mkdtemp()
>>> first = claim_run_dir(parent, "run")
>>> first == claim_run_dir(parent, "run")  # the same for every call in a process
True
>>> _claimed.clear()  # as if another process asked now
>>> Path(claim_run_dir(parent, "run")).name
'run_2'
"""

from __future__ import annotations

import itertools
from datetime import datetime
from pathlib import Path

RUN_STAMP = "%Y-%m-%d_%H-%M-%S"

_claimed: dict[tuple[str, str], str] = {}  # (parent, pattern) -> this process's directory


def claim_run_dir(parent: str, pattern: str = RUN_STAMP) -> str:
    """Create and return ``parent/<now formatted by pattern>``, with ``_2``, ``_3``, ... appended
    where another process holds that name; later calls in this process return the same path."""
    key = (str(parent), pattern)
    if key not in _claimed:
        stamp = datetime.now().strftime(pattern)
        Path(parent).mkdir(parents=True, exist_ok=True)
        for number in itertools.count(1):
            path = Path(parent) / (stamp if number == 1 else f"{stamp}_{number}")
            try:
                path.mkdir()  # atomic: exactly one process creates it
            except FileExistsError:
                continue
            _claimed[key] = str(path)
            break
    return _claimed[key]
