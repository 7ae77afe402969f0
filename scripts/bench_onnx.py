"""Real-time factor of the acoustic model in PyTorch and in onnxruntime, side by side.

The same normalised features (the built-in corpus's test utterances, or synthetic audio of
``--seconds`` each) go through the PyTorch model and its ONNX graph
(:mod:`recipes.toolkit.package.onnx_export`) in one process, utterance by utterance
(``--batch-size`` per call, as ``PhoneRecognizer.posteriors_batch`` runs them), the two
alternating so that load on a shared machine hits both alike. Real-time factor:
acoustic-model seconds per second of audio (features and decoding are the runtime's own in both
and are left out). Single-threaded by default: ``torch.set_num_threads(1)`` and onnxruntime's
``intra_op_num_threads=1`` (``--threads`` changes both).

    python scripts/bench_onnx.py                          # every rnn type, default sizes (3 x 256)
    python scripts/bench_onnx.py --rnn ligru gru --quantize none int8 --json bench_onnx.json
    python scripts/bench_onnx.py --package model          # a packaged model (its model.onnx)
    python scripts/bench_onnx.py --checkpoint outputs/timit_ctc/runs/<run>/checkpoints/best.ckpt

Models without ``--package`` / ``--checkpoint`` have fresh weights (speed does not depend on them)
and the recipe's default topology: ``--layers`` x ``--hidden`` bidirectional, 40 filterbanks, the
Light GRU with tanh and batch norm as ``conf/rnn/ligru.yaml``, SLi-GRU with relu.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import onnxruntime
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from recipes.toolkit.model import AcousticModel  # noqa: E402
from recipes.toolkit.package.onnx_backend import ONNX_FILE, OnnxAcousticModel  # noqa: E402
from recipes.toolkit.package.onnx_export import export_onnx  # noqa: E402
from recipes.toolkit.package.quantize import quantize_int8  # noqa: E402
from recipes.toolkit.package.runtime import PhoneRecognizer, random_config  # noqa: E402

RNN_TYPES = ("rnn", "lstm", "gru", "ligru", "sligru")
DEFAULT_CORPUS = Path(__file__).resolve().parents[1] / "data" / "builtin_timit"


def preset(rnn: str, hidden: int, layers: int, quantize: str) -> tuple[PhoneRecognizer, str]:
    """A recogniser of 48 phones with fresh weights and the recipe's default topology."""
    torch.manual_seed(0)
    config = random_config([f"p{i}" for i in range(48)])
    config["rnn"] = {"name": rnn, "hidden_size": hidden, "num_layers": layers,
                     "bidirectional": True}  # fmt: skip
    if rnn in ("ligru", "sligru"):
        config["rnn"]["nonlinearity"] = "tanh" if rnn == "ligru" else "relu"
    model = AcousticModel(config["feature_dim"], config["num_outputs"], config["rnn"]).eval()
    if quantize == "int8":
        model = quantize_int8(model)
    name = f"{rnn} {layers}x{hidden} bi" + (" int8" if quantize == "int8" else "")
    return PhoneRecognizer(config, model), name


def onnx_model(recognizer: PhoneRecognizer, folder: Path, threads: int,
               package: Path | None = None) -> OnnxAcousticModel:  # fmt: skip
    """The package's ``model.onnx``, else a graph exported (and checked) from the model."""
    path = package / ONNX_FILE if package is not None else None
    if path is None or not path.is_file():
        path = export_onnx(recognizer.model, folder / f"{id(recognizer)}.onnx")
    return OnnxAcousticModel(path, threads=threads)


def utterance_features(recognizer: PhoneRecognizer, args) -> tuple[list[torch.Tensor], float]:
    """Normalised features of the inputs, and their audio seconds."""
    if args.seconds is None and args.corpus.is_dir():
        from recipes.timit.corpus import read_timit

        utterances = read_timit(args.corpus)["test"][: args.limit]
        waves = [recognizer.waveform(u.wav) for u in utterances]
    else:
        generator = torch.Generator().manual_seed(0)
        samples = int(16000 * (args.seconds or 3.0))
        waves = [torch.randn(1, samples, generator=generator) * 2000 for _ in range(args.limit)]
    from recipes.toolkit.package.features import compute_fbank, normalise

    settings = recognizer.feature_settings
    feats = [normalise(compute_fbank(w, settings), settings, recognizer.feature_mean,
                       recognizer.feature_std) for w in waves]  # fmt: skip
    return feats, sum(w.shape[-1] for w in waves) / 16000


def measure(recognizer: PhoneRecognizer, onnx: OnnxAcousticModel, feats, batch: int,
            repeats: int) -> dict:  # fmt: skip
    """Seconds of the acoustic model over ``feats`` for each backend (the best of ``repeats``
    passes) and the largest difference of their log-posteriors."""
    runtimes = {"torch": recognizer.model, "onnx": onnx}
    chunks = [feats[i : i + batch] for i in range(0, len(feats), batch)]
    saved = recognizer.model
    try:
        for model in runtimes.values():  # warm-up
            recognizer.model = model
            recognizer.forward(chunks[0])
        best = {name: float("inf") for name in runtimes}
        worst = 0.0
        for _ in range(repeats):
            seconds = dict.fromkeys(runtimes, 0.0)
            for index, chunk in enumerate(chunks):
                order = list(runtimes) if index % 2 == 0 else list(runtimes)[::-1]
                outputs = {}
                for name in order:
                    recognizer.model = runtimes[name]
                    start = time.perf_counter()
                    outputs[name] = recognizer.forward(chunk)
                    seconds[name] += time.perf_counter() - start
                for a, b in zip(outputs["torch"], outputs["onnx"], strict=True):
                    worst = max(worst, float((a - b).abs().max()))
            best = {name: min(best[name], seconds[name]) for name in runtimes}
    finally:
        recognizer.model = saved
    return {"seconds": best, "max_abs_diff": worst}


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--package", type=Path, help="a packaged model's folder")
    source.add_argument("--checkpoint", type=Path, help="a training checkpoint")
    parser.add_argument("--rnn", nargs="+", default=list(RNN_TYPES), choices=RNN_TYPES)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=3)
    parser.add_argument("--quantize", nargs="+", default=["none"], choices=["none", "int8"])
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS,
                        help="TIMIT-format corpus whose test utterances are read (default: the "
                             "built-in one; synthetic audio where it is missing)")  # fmt: skip
    parser.add_argument(
        "--seconds",
        type=float,
        default=None,
        help="synthetic utterances of this many seconds instead of the corpus",
    )
    parser.add_argument("--limit", type=int, default=64, help="utterances (default 64)")
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.package is not None:
        recognizers = [(PhoneRecognizer.from_directory(args.package), str(args.package))]
    elif args.checkpoint is not None:
        from recipes.toolkit.inference import Recognizer

        recognizers = [(Recognizer.from_checkpoint(args.checkpoint), str(args.checkpoint))]
    else:
        recognizers = [preset(rnn, args.hidden, args.layers, q)
                       for rnn in args.rnn for q in args.quantize]  # fmt: skip
    rows = []
    header = (f"{'model':<26} {'utts':>5} {'audio s':>8} {'torch RTF':>10} {'onnx RTF':>9} "
              f"{'torch/onnx':>10} {'max |diff|':>10}")  # fmt: skip
    print(f"threads: torch {args.threads}, onnxruntime {args.threads}; batch {args.batch_size}")
    print(header)
    with tempfile.TemporaryDirectory() as folder:
        for recognizer, name in recognizers:
            onnx = onnx_model(recognizer, Path(folder), args.threads, args.package)
            feats, audio = utterance_features(recognizer, args)
            result = measure(recognizer, onnx, feats, args.batch_size, args.repeats)
            rtf = {k: v / audio for k, v in result["seconds"].items()}
            row = {"model": name, "utterances": len(feats), "audio_seconds": audio,
                   "torch_rtf": rtf["torch"], "onnx_rtf": rtf["onnx"],
                   "speedup": rtf["torch"] / rtf["onnx"],
                   "max_abs_diff": result["max_abs_diff"]}  # fmt: skip
            rows.append(row)
            print(
                f"{name:<26} {len(feats):>5} {audio:>8.1f} {rtf['torch']:>10.4f} "
                f"{rtf['onnx']:>9.4f} {row['speedup']:>9.2f}x {row['max_abs_diff']:>10.1e}"
            )
    if args.json is not None:
        info = {"threads": args.threads, "batch_size": args.batch_size, "repeats": args.repeats,
                "torch": torch.__version__, "onnxruntime": onnxruntime.__version__,
                "machine": platform.processor() or platform.machine()}  # fmt: skip
        args.json.write_text(json.dumps({"settings": info, "rows": rows}, indent=1) + "\n")
    return rows


if __name__ == "__main__":
    main()
