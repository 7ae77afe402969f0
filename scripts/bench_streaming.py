"""Real-time factor and latency of streaming recognition against whole-utterance recognition.

A unidirectional CTC model of the default size (3 x 256 Light GRU, 40 filterbanks; fresh weights:
speed does not depend on them) recognises the same audio whole and fed in chunks of each
``--chunks-ms`` size. Real-time factor: processing seconds per second of audio. Latency of a
phone: it is emitted when the chunk holding its first frame has been processed, so at most the
chunk's duration plus the 15 ms of window after the frame's centre plus that chunk's processing
time; printed as the chunk duration plus the median and the largest processing time per chunk.

    python scripts/bench_streaming.py --threads 1 --seconds 30
"""

import argparse
import statistics
import time

import torch

from recipes.toolkit.model import AcousticModel
from recipes.toolkit.package.runtime import PhoneRecognizer, random_config
from recipes.toolkit.package.streaming import StreamingRecognizer


def build(rnn: str, hidden: int, layers: int) -> PhoneRecognizer:
    config = random_config([f"p{i}" for i in range(48)])
    config["rnn"] = {"name": rnn, "hidden_size": hidden, "num_layers": layers,
                     "bidirectional": False}  # fmt: skip
    model = AcousticModel(config["feature_dim"], config["num_outputs"], config["rnn"])
    return PhoneRecognizer(config, model)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rnn", default="ligru")
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--chunks-ms", type=int, nargs="+", default=[100, 200, 400])
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    recognizer = build(args.rnn, args.hidden, args.layers)
    wave = torch.randn(int(16000 * args.seconds), generator=torch.Generator().manual_seed(0))
    wave = wave * 2000
    recognizer.transcribe(wave[:16000])  # warm-up
    start = time.perf_counter()
    whole = recognizer.transcribe(wave)
    rows = {"whole": {"rtf": (time.perf_counter() - start) / args.seconds}}
    print(f"{'mode':>12} {'RTF':>7} {'median chunk ms':>16} {'max chunk ms':>13} {'latency':>8}")
    print(f"{'whole':>12} {rows['whole']['rtf']:7.4f}")
    for chunk_ms in args.chunks_ms:
        stream = StreamingRecognizer(recognizer)
        seconds = []
        for piece in wave.split(16 * chunk_ms):
            start = time.perf_counter()
            stream.accept(piece)
            seconds.append(time.perf_counter() - start)
        same = stream.finish() == whole
        median, worst = statistics.median(seconds) * 1e3, max(seconds) * 1e3
        rows[f"{chunk_ms} ms"] = {"rtf": sum(seconds) / args.seconds, "median_chunk_ms": median,
                                  "max_chunk_ms": worst, "latency_ms": chunk_ms + 15 + worst,
                                  "same_as_whole": same}  # fmt: skip
        r = rows[f"{chunk_ms} ms"]
        print(f"{chunk_ms:>9} ms {r['rtf']:7.4f} {median:16.1f} {worst:13.1f} "
              f"{r['latency_ms']:11.0f}  same phones as whole: {same}")  # fmt: skip
    return rows


if __name__ == "__main__":
    main()
