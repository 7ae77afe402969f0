"""Export a trained recogniser as a self-contained folder that needs only torch and torchaudio.

The folder holds::

    config.json           topology, features, normalisation, phones, scoring map, decoding
    weights.pt            the acoustic model's state_dict (torch.save)
    MODEL_CARD.md         training configuration, corpus, PER, versions, date
    recognizer_runtime/   the inference code (imports made relative, see vendor)
    rnnlib/               the layers it is built from

and is used with ``sys.path.insert(0, folder); import recognizer_runtime;
recognizer_runtime.load()``. It is written into a temporary sibling folder and renamed into
place, so an interrupted export leaves no half-written package under ``out``.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import torch

from recipes.toolkit.package.card import model_card
from recipes.toolkit.package.convert import runtime_config
from recipes.toolkit.package.quantize import QUANTIZATIONS, quantize_int8
from recipes.toolkit.package.runtime import CONFIG_FILE, WEIGHTS_FILE
from recipes.toolkit.package.vendor import write_runtime
from recipes.toolkit.recognizer import SpeechRecognizer
from recipes.toolkit.run.atomic import fsync_dir, fsync_tree

CARD_FILE = "MODEL_CARD.md"


def export_package(
    module: SpeechRecognizer,
    out: str | os.PathLike,
    checkpoint: str | os.PathLike | None = None,
    overwrite: bool = False,
    quantize: str = "none",
) -> Path:
    """Write the package of ``module`` (loaded from ``checkpoint``, which the card describes)
    to the folder ``out``; an existing non-empty ``out`` is replaced only with ``overwrite``.
    ``quantize="int8"`` stores the acoustic model dynamically quantised
    (:mod:`recipes.toolkit.package.quantize`)."""
    if quantize not in QUANTIZATIONS:
        raise ValueError(f"quantize must be one of {QUANTIZATIONS}, got {quantize!r}")
    out = Path(out).expanduser().absolute()
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out} exists and is not a folder: choose another out=")
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(f"{out} exists and is not empty: pass overwrite=true or another out=")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        umask = os.umask(0)
        os.umask(umask)
        staging.chmod(0o777 & ~umask)  # mkdtemp's folder is private
        config = runtime_config(module)
        if quantize != "none":
            config["quantization"] = quantize
        text = json.dumps(config, indent=1, allow_nan=False)
        (staging / CONFIG_FILE).write_text(text + "\n", encoding="utf-8")
        model = quantize_int8(module.model) if quantize == "int8" else module.model
        saved = model.state_dict()
        state = type(saved)(
            (key, value.detach().cpu().clone() if isinstance(value, torch.Tensor) else value)
            for key, value in saved.items()
        )
        state._metadata = getattr(saved, "_metadata", None)  # module versions: how to load them
        torch.save(state, staging / WEIGHTS_FILE)
        write_runtime(staging)
        source = None if checkpoint is None else Path(checkpoint).expanduser()
        card = model_card(module, config, source, datetime.now(UTC))
        (staging / CARD_FILE).write_text(card, encoding="utf-8")
        fsync_tree(staging)
        if out.exists():
            shutil.rmtree(out)
        staging.rename(out)
        fsync_dir(out.parent)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out
