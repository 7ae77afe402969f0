"""Run every rnnlib layer type on a random padded batch and print shapes and parameter counts.

python scripts/demo_layers.py
"""

import torch

from rnnlib import RNN_TYPES, build_rnn


def main() -> None:
    torch.manual_seed(0)
    x = torch.randn(4, 100, 40)
    lengths = torch.tensor([100, 80, 63, 20])
    print(f"{'type':8} {'output':>16} {'h_n':>14} {'parameters':>11}")
    for name in RNN_TYPES:
        rnn = build_rnn(name, input_size=40, hidden_size=64, num_layers=2, bidirectional=True)
        out, h_n = rnn(x, lengths=lengths)
        h = h_n[0] if isinstance(h_n, tuple) else h_n
        params = sum(p.numel() for p in rnn.parameters())
        print(f"{name:8} {str(list(out.shape)):>16} {str(list(h.shape)):>14} {params:>11,}")


if __name__ == "__main__":
    main()
