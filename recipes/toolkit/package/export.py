"""Export a trained recogniser as a self-contained folder that needs only torch and torchaudio.

The folder holds::

    config.json           topology, features, normalisation, phones, scoring map, decoding
    weights.pt            the acoustic model's state_dict (torch.save)
    MODEL_CARD.md         training configuration, corpus, PER, versions, date
    recognizer_runtime/   the inference code (imports made relative, see vendor)
    rnnlib/               the layers it is built from
    model.onnx            with ``onnx=True`` only: the acoustic model as an ONNX graph

and is used with ``sys.path.insert(0, folder); import recognizer_runtime;
recognizer_runtime.load()``. It is written into a temporary sibling folder and renamed into
place, so an interrupted export leaves no half-written package under ``out``.

``model.onnx`` (:mod:`recipes.toolkit.package.onnx_export`; needs the onnx package, and
onnxruntime to check it against PyTorch before it is written) takes normalised features
``[batch, time, dim]`` and lengths ``[batch]`` and gives the log-posteriors of the model in
``weights.pt`` (the int8 one with ``quantize="int8"``); ``recognizer_runtime.load(
backend="onnx")`` runs it with onnxruntime, or any ONNX runtime can.
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
from recipes.toolkit.package.onnx_backend import ONNX_FILE
from recipes.toolkit.package.quantize import QUANTIZATIONS, quantize_int8
from recipes.toolkit.package.runtime import CONFIG_FILE, WEIGHTS_FILE
from recipes.toolkit.package.vendor import RUNTIME_PACKAGE, write_runtime
from recipes.toolkit.recognizer import SpeechRecognizer
from recipes.toolkit.run.atomic import fsync_dir, fsync_tree

CARD_FILE = "MODEL_CARD.md"
ONNX_CARD = """
## ONNX

`{file}`: the acoustic model as an ONNX graph (opset 17), checked against PyTorch at export.
Inputs `features` float32 `[batch, time, dim]` (normalised as `config.json` says) and
`lengths` int64 `[batch]` (valid frames, any order); output `log_probs` float32
`[batch, time, outputs]`. `{runtime}.load(backend="onnx")` runs it with onnxruntime.
"""


def export_package(
    module: SpeechRecognizer,
    out: str | os.PathLike,
    checkpoint: str | os.PathLike | None = None,
    overwrite: bool = False,
    quantize: str = "none",
    onnx: bool = False,
) -> Path:
    """Write the package of ``module`` (loaded from ``checkpoint``, which the card describes)
    to the folder ``out``; an existing non-empty ``out`` is replaced only with ``overwrite``.
    ``quantize="int8"`` stores the acoustic model dynamically quantised
    (:mod:`recipes.toolkit.package.quantize`); ``onnx`` also writes ``model.onnx``, checked
    against the PyTorch model first."""
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
        if onnx:
            from recipes.toolkit.package.onnx_export import export_onnx

            export_onnx(model, staging / ONNX_FILE)
            card += ONNX_CARD.format(file=ONNX_FILE, runtime=RUNTIME_PACKAGE)
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
