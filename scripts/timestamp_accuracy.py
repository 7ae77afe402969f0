"""Share of TIMIT's reference phone boundaries that a checkpoint's phone times come close to.

.venv/bin/python scripts/timestamp_accuracy.py CKPT --corpus data/builtin_timit --splits dev test

For each split: the reference boundaries (``.PHN``, 39-phone set), those beside a phone the
hypothesis matches (scored), and the share within 10 / 20 / 40 ms by matched phone (of all
reference boundaries, and of the scored ones), then the alignment-free share (nearest
hypothesis boundary, one to one, whatever its phones) and the PER of the same phones.
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from recipes.timit.checkpoints import implied_hparams  # noqa: E402
from recipes.timit.corpus import read_timit  # noqa: E402
from recipes.timit.timing import measure_split  # noqa: E402
from recipes.toolkit.evaluation.timestamps import TOLERANCES  # noqa: E402
from recipes.toolkit.inference import Recognizer  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--corpus", type=Path, required=True, help="a TIMIT-format corpus root")
    parser.add_argument("--splits", nargs="+", default=["dev", "test"])
    parser.add_argument("--decoding", nargs="*", default=[], help="key=value, e.g. method=beam")
    args = parser.parse_args()
    decoding = {}
    for item in args.decoding:
        key, value = item.split("=", 1)
        decoding[key] = value if key == "method" else float(value)
    recognizer = Recognizer.from_checkpoint(args.checkpoint, decoding, implied_hparams)
    corpus = read_timit(args.corpus)
    ms = [f"{1000 * t:g}" for t in TOLERANCES]
    print(f"checkpoint {args.checkpoint}, decoding {recognizer.config['decoding']}")
    print(
        "| split | utterances | boundaries | scored | by matched phone, within "
        + " / ".join(ms)
        + " ms | of the scored | alignment-free | PER | exact |"
    )
    print("| --- " * 9 + "|")
    for split in args.splits:
        result = measure_split(recognizer, corpus[split])
        counts, free, errors = result["matched"], result["any_boundary"], result["errors"]
        shares = " / ".join(f"{100 * counts.share(t):.1f}" for t in TOLERANCES)
        scored = " / ".join(f"{100 * counts.scored_share(t):.1f}" for t in TOLERANCES)
        aligned = " / ".join(f"{100 * free[t] / counts.reference:.1f}" for t in TOLERANCES)
        print(
            f"| {split} | {counts.utterances} | {counts.reference} | {counts.scored} | {shares} "
            f"| {scored} | {aligned} | {errors.per:.2f} | {result['exact']} |"
        )


if __name__ == "__main__":
    main()
