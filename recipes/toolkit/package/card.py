"""``MODEL_CARD.md`` of a packaged model: what it is, how it was trained, what it reached.

It reads the recogniser's hyperparameters and, where the checkpoint sits in a run directory
(``<run>/checkpoints/<name>.ckpt``), the run's ``results.json`` (PER), ``run_info.json`` (code
commit, training packages) and ``.hydra/overrides.yaml``.

>>> run_directory(Path("outputs/timit_ctc/runs/r1/checkpoints/best.ckpt"))
PosixPath('outputs/timit_ctc/runs/r1')
>>> run_directory(Path("elsewhere/model.ckpt")) is None
True
"""

from __future__ import annotations

import json
import platform
from datetime import datetime
from pathlib import Path

import torch
import torchaudio

from recipes.toolkit.package.vendor import RUNTIME_PACKAGE
from recipes.toolkit.recognizer import SpeechRecognizer, plain
from recipes.toolkit.run.atomic import file_sha256

TRAINING_KEYS = ("rnn", "model", "optim", "scheduler", "features", "decoding", "max_bad_steps",
                 "max_bad_fraction")  # fmt: skip


def run_directory(checkpoint: Path | None) -> Path | None:
    """The run directory of a checkpoint saved by a training run, else None."""
    if checkpoint is None or checkpoint.parent.name != "checkpoints":
        return None
    return checkpoint.parent.parent


def _json_file(path: Path | None) -> dict | None:
    if path is None or not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _code(text: str, language: str = "") -> str:
    return f"```{language}\n{text.rstrip()}\n```\n"


def model_card(
    module: SpeechRecognizer, config: dict, checkpoint: Path | None, exported: datetime
) -> str:
    """The card's Markdown text (``config``: the package's ``config.json``)."""
    hparams = plain(module.hparams)
    rnn = hparams["rnn"]
    direction = "bidirectional" if rnn.get("bidirectional") else "unidirectional"
    layers = f"{rnn.get('num_layers', 1)} x {rnn.get('hidden_size')} {direction}"
    title = f"{config['task']} phone recogniser: {rnn['name']} {layers}"
    run = run_directory(checkpoint)
    parts = [f"# {title}\n"]
    source = "a recogniser in memory"
    if checkpoint is not None:
        saved = torch.load(checkpoint, map_location="cpu", weights_only=False, mmap=True)
        source = (
            f"`{checkpoint.resolve()}` (sha256 `{file_sha256(checkpoint)}`, "
            f"epoch {saved.get('epoch')}, step {saved.get('global_step')})"
        )
    parts.append(f"Exported {exported:%Y-%m-%d %H:%M %Z} from {source}.\n")
    parts.append("## Use\n")
    parts.append(
        _code(
            "import sys\n"
            'sys.path.insert(0, "/path/to/this/folder")\n'
            f"import {RUNTIME_PACKAGE}\n\n"
            f"recognizer = {RUNTIME_PACKAGE}.load()  # the model of this folder\n"
            'recognizer.transcribe("a.wav")  # [TimedPhone(phone, start, end), ...] in seconds\n'
            'recognizer.posteriors("a.wav")  # [frames, outputs] log-posteriors\n'
            'recognizer.transcribe_batch(["a.wav", "b.flac"])',
            "python",
        )
    )
    parts.append(
        "Needs torch and torchaudio (and numpy); soundfile to read SPHERE, FLAC and other "
        "formats (without it, PCM WAV files). Waveforms: 16 kHz, int16 scale, or pass "
        "`sample_rate=`.\n"
    )
    parts.append("## Model\n")
    score_map = config.get("score_map")
    scoring = (
        "the training labels"
        if score_map is None
        else (f"{len({v for v in score_map.values() if v})} labels (`score_map` in config.json)")
    )
    features = config["features"]
    rows = [
        ("task", f"{config['task']} ({config['recognizer']})"),
        ("encoder", f"`{json.dumps(rnn)}`"),
        ("front end and output", f"`{json.dumps(hparams['model'])}`"),
        ("outputs", f"{config['num_outputs']} ({len(config['phones'])} phones"
                    f"{' + blank' if config['task'] == 'ctc' else ''})"),
        ("scored on", scoring),
        ("parameters", f"{sum(p.numel() for p in module.model.parameters()):,}"),
        ("features", f"{features['num_mel_bins']} mel filterbanks, "
                     f"{features['frame_length_ms']:g} / {features['frame_shift_ms']:g} ms, "
                     f"deltas {features['deltas']}, {features['normalization']} normalisation"),
        ("decoding", f"`{json.dumps(config['decoding'])}`"),
    ]  # fmt: skip
    parts.append("| | |\n| --- | --- |\n" + "".join(f"| {k} | {v} |\n" for k, v in rows))
    parts.append("## Training\n")
    corpus = hparams.get("corpus")
    if corpus:
        parts.append(
            f"Corpus: {corpus.get('name')} at `{corpus.get('root')}` "
            f"(training list {corpus.get('train_list')}).\n"
        )
    else:
        parts.append("Corpus: not recorded in the checkpoint (a checkpoint of an older release).\n")
    training = {key: hparams[key] for key in TRAINING_KEYS if key in hparams}
    parts.append("Configuration (the checkpoint's hyperparameters):\n")
    parts.append(_code(json.dumps(training, indent=1), "json"))
    overrides = None if run is None else run / ".hydra" / "overrides.yaml"
    if overrides is not None and overrides.is_file():
        parts.append("Command-line overrides of the run (`.hydra/overrides.yaml`):\n")
        parts.append(_code(overrides.read_text(), "yaml"))
    run_info = _json_file(None if run is None else run / "run_info.json")
    if run_info and run_info.get("git"):
        git = run_info["git"]
        parts.append(f"Code: git commit `{git.get('commit')}` (dirty: {git.get('dirty')}).\n")
    parts.append("## Results\n")
    parts.append(_results(_json_file(None if run is None else run / "results.json")))
    parts.append("## Software\n")
    parts.append(
        f"Exported with torch {torch.__version__}, torchaudio {torchaudio.__version__}, "
        f"Python {platform.python_version()}.\n"
    )
    if run_info and run_info.get("packages"):
        packages = ", ".join(f"{k} {v}" for k, v in run_info["packages"].items())
        parts.append(f"Trained with {packages}.\n")
    parts.append("## Files\n")
    parts.append(
        "`config.json` (topology, features, normalisation, phones, scoring map, decoding and "
        "its bigram or phone loop; `null` stands for -inf), `weights.pt` (the acoustic model's "
        f"state_dict), `{RUNTIME_PACKAGE}/` (the inference code), `rnnlib/` (its layers).\n"
    )
    return "\n".join(part.rstrip("\n") + "\n" for part in parts)


def _results(results: dict | None) -> str:
    if not results or not results.get("eval"):
        return "No `results.json` with PER beside the checkpoint's run.\n"
    rows = [
        f"| {split} | {r['per']:.2f} | {r.get('utterances', '')} | {r.get('phones', '')} |\n"
        for split, r in results["eval"].items()
        if isinstance(r, dict) and "per" in r
    ]
    text = "| split | PER % | utterances | phones |\n| --- | --- | --- | --- |\n" + "".join(rows)
    if results.get("best_dev_per") is not None:
        text += f"\nBest dev PER during training: {results['best_dev_per']:.2f} %.\n"
    best = results.get("best_checkpoint")
    where = f" of `{best}`" if best else ""
    return text + f"\nFrom the run's `results.json`: the evaluation{where} after training.\n"
