"""Parameter counts of the tutorial comparison (4 bidirectional layers of 512, 80 inputs).

python scripts/param_table.py
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from torch import nn  # noqa: E402

from rnnlib import build_rnn  # noqa: E402

TOPOLOGY = {"input_size": 80, "hidden_size": 512, "num_layers": 4, "bidirectional": True}
# (label, rnn type, extra options)
VARIANTS: list[tuple[str, str, dict]] = [
    ("rnn", "rnn", {}),
    ("lstm", "lstm", {}),
    ("gru", "gru", {}),
    ("ligru", "ligru", {}),
    ("sligru", "sligru", {}),
    ("ligru (share_directions)", "ligru", {"share_directions": True}),
]


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def param_rows(topology: dict | None = None, device: str = "meta") -> list[tuple[str, int]]:
    """``(label, parameters)`` for each variant, built with :func:`rnnlib.build_rnn`.

    The default ``meta`` device allocates and initialises nothing: the counts are the same, and
    building the full-size stacks takes milliseconds instead of most of a minute on a small CPU.
    """
    topology = topology or TOPOLOGY
    rows = []
    for label, name, options in VARIANTS:
        with torch.device(device):
            rows.append((label, count_parameters(build_rnn(name, **topology, **options))))
    return rows


def to_markdown(rows: list[tuple[str, int]]) -> str:
    lstm = dict(rows)["lstm"]
    lines = ["| rnn | parameters | vs LSTM |", "| --- | ---: | ---: |"]
    lines += [f"| {label} | {n:,} | {n / lstm:.2f} |" for label, n in rows]
    return "\n".join(lines)


def main() -> None:
    t = TOPOLOGY
    print(
        f"{t['num_layers']} bidirectional layers of {t['hidden_size']}, "
        f"{t['input_size']} input features (encoder only):\n"
    )
    print(to_markdown(param_rows()))


if __name__ == "__main__":
    main()
