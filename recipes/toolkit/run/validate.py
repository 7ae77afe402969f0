"""Check a run's configuration before any data work: one clear message naming the key.

>>> validate_run_config({"rnn": {"name": "ligru", "hidden_size": 0}})
Traceback (most recent call last):
...
ValueError: rnn.hidden_size must be a positive integer, got 0 (e.g. rnn.hidden_size=256)
"""

from __future__ import annotations

from collections.abc import Mapping

from rnnlib import RNN_TYPES, build_rnn
from rnnlib.sequence import is_positive_int


def validate_run_config(cfg: Mapping, decoding_methods: tuple[str, ...] | None = None) -> None:
    """Raise ``ValueError`` for a ``rnn``, ``trainer`` or ``decoding`` setting that cannot train;
    ``decoding_methods``: the methods the task decodes with (unchecked when ``None``)."""
    method = (cfg.get("decoding") or {}).get("method")
    if decoding_methods is not None and method not in decoding_methods:
        raise ValueError(
            f"decoding.method must be one of {list(decoding_methods)} for this task, got "
            f"{method!r} (choose decoding=<option> accordingly)"
        )
    rnn = dict(cfg.get("rnn") or {})
    name = rnn.pop("name", None)
    if name not in RNN_TYPES:
        raise ValueError(f"rnn.name must be one of {sorted(RNN_TYPES)}, got {name!r}")
    for key, example in (("hidden_size", 256), ("num_layers", 3)):
        if key in rnn and not is_positive_int(rnn[key]):
            raise ValueError(
                f"rnn.{key} must be a positive integer, got {rnn[key]!r} (e.g. rnn.{key}={example})"
            )
    try:  # the layer's own checks (nonlinearity, dropout, ...) on a one-feature stack
        build_rnn(name, input_size=1, **rnn)
    except (TypeError, ValueError) as error:
        raise ValueError(f"rnn ({name}): {error}") from error
    trainer = cfg.get("trainer") or {}
    epochs = trainer.get("max_epochs")
    if epochs is not None and not (is_positive_int(epochs) or trainer.get("fast_dev_run")):
        raise ValueError(
            f"trainer.max_epochs must be a positive integer, got {epochs!r} (Lightning reads -1 "
            "as 'train forever'; give a number of epochs, e.g. trainer.max_epochs=20)"
        )
