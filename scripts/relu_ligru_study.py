"""Where a ReLU Light GRU diverges in the recipe: learning rate, hidden size, clipping, norm.

Each cell trains the recipe's default CTC model (recipes/timit/conf/train.yaml, its data
module, optimizer and gradient clipping, as scripts/bench_recipe.py steps it; CTC alone,
``frame_loss_weight=0``) with ``rnn.nonlinearity=relu`` and the cell's overrides for ``--steps``
optimizer steps over the built-in corpus's training batches (epochs of the recipe's own
order), and records per step the loss, the largest |h| any layer's output reaches and the
largest spectral norm of a recurrent matrix ``U`` (the candidate's and the gate's blocks
together). A cell diverges when
the recipe would stop it: ``max_bad_steps`` non-finite losses in a row. Printed: one row per
cell (steps trained, first non-finite step, final loss, max |h|, max ||U||_2).

    python scripts/relu_ligru_study.py --steps 81 --json relu_study.json
    python scripts/relu_ligru_study.py --cells "optim.lr=0.002" "optim.lr=0.0005" --steps 30
"""

import argparse
import json
import math
import os
import sys
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_recipe import REPO, Runner, compose_config  # noqa: E402

from recipes.timit.data import timit_datamodule  # noqa: E402
from recipes.toolkit.data.datamodule import SpeechDataModule  # noqa: E402

DEFAULT_CELLS = (
    "rnn.nonlinearity=tanh",  # the default: the control
    "optim.lr=0.002",
    "optim.lr=0.001",
    "optim.lr=0.0005",
    "optim.lr=0.002 trainer.gradient_clip_val=1.0",
    "optim.lr=0.002 rnn.hidden_size=128",
    "optim.lr=0.002 rnn.normalization=layernorm",
)


def record_layer_outputs(encoder: torch.nn.Module, sink: list[float]) -> None:
    """Append each layer's largest |output| to ``sink`` at every forward of the Light GRU."""
    inner = encoder._layer_forward

    def layer_forward(*args, **kwargs):
        out, h_n = inner(*args, **kwargs)
        sink.append(float(out.detach().abs().max()))
        return out, h_n

    encoder._layer_forward = layer_forward


def recurrent_norm(encoder: torch.nn.Module) -> float:
    """The largest spectral norm of any layer's and direction's recurrent matrix ``U``."""
    norms = [torch.linalg.matrix_norm(p.detach(), 2) for n, p in encoder.named_parameters()
             if n.endswith("weight_hh")]  # fmt: skip
    return float(max(norms))


def run_cell(cell: str, steps: int, data_dir: Path, base: list[str]) -> dict:
    # CTC alone, as the README's table was measured (a cell may turn the frame loss on)
    overrides = ["rnn.nonlinearity=relu", "frame_loss_weight=0", *base, *cell.split()]
    cfg = compose_config("ligru", overrides, data_dir)
    datamodule = timit_datamodule(cfg.data, cfg.features, cfg.seed, cfg.prepare_workers,
                                  None, kind=SpeechDataModule)  # fmt: skip
    datamodule.load()
    runner = Runner("ligru", cfg, datamodule)
    outputs: list[float] = []
    record_layer_outputs(runner.module.model.encoder, outputs)
    limit = int(cfg.max_bad_steps)
    losses, max_h, norms, first_bad, in_a_row, step = [], [], [], None, 0, 0
    epoch = 0
    while step < steps and in_a_row < limit:
        loader = datamodule.train_dataloader()
        loader.batch_sampler.set_epoch(epoch)  # the recipe's order of this epoch
        for batch in loader:
            if step >= steps or in_a_row >= limit:
                break
            batch = datamodule.on_after_batch_transfer(batch, 0)
            outputs.clear()
            skipped = runner.skipped
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*self.log.*")
                try:
                    loss = runner.step(batch, step)  # the recipe's step: loss, clipping, Adam
                except RuntimeError as exc:  # the recipe's own stop on non-finite losses
                    if "non-finite" not in str(exc):
                        raise
                    in_a_row, first_bad = limit, step if first_bad is None else first_bad
                    break
                if loss is not None:
                    losses.append(loss)
            bad = runner.skipped > skipped
            in_a_row = in_a_row + 1 if bad else 0
            if bad and first_bad is None:
                first_bad = step
            max_h.append(max(outputs) if outputs else math.nan)
            norms.append(recurrent_norm(runner.module.model.encoder))
            step += 1
            last = losses[-1] if losses else math.nan
            print(f"{cell}: step {step} loss {last:.3f} max|h| {max_h[-1]:.3g} "
                  f"||U|| {norms[-1]:.3f}", file=sys.stderr, flush=True)  # fmt: skip
        epoch += 1
    return {
        "cell": cell,
        "steps": step,
        "diverged": in_a_row >= limit,
        "first_nonfinite_step": first_bad,
        "final_loss": losses[-1] if losses else None,
        "max_h": max((h for h in max_h if not math.isnan(h)), default=None),
        "max_h_per_step": max_h,
        "max_recurrent_norm": max(norms, default=recurrent_norm(runner.module.model.encoder)),
        "recurrent_norm_per_step": norms,
        "losses": losses,
    }


def format_table(rows: list[dict]) -> str:
    lines = [f"{'cell (with rnn.nonlinearity=relu)':48} {'steps':>5} {'diverged':>8} "
             f"{'1st bad':>7} {'loss':>7} {'max|h|':>9} {'max||U||':>8}"]  # fmt: skip
    for row in rows:
        loss = "-" if row["final_loss"] is None else f"{row['final_loss']:.3f}"
        bad = "-" if row["first_nonfinite_step"] is None else str(row["first_nonfinite_step"])
        lines.append(
            f"{row['cell']:48} {row['steps']:5d} {str(row['diverged']):>8} {bad:>7} "
            f"{loss:>7} {row['max_h'] or 0:9.3g} {row['max_recurrent_norm']:8.3f}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", nargs="+", default=list(DEFAULT_CELLS),
                        help="overrides per cell (space-separated within a cell)")  # fmt: skip
    parser.add_argument("--steps", type=int, default=81, help="optimizer steps per cell")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--overrides", nargs="*", default=[], help="for every cell")
    parser.add_argument("--data-dir", default=os.environ.get("RNNLIB_DATA_DIR", str(REPO / "data")))
    parser.add_argument("--json", help="also write the rows (with per-step traces) here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows = [run_cell(c, args.steps, Path(args.data_dir), args.overrides) for c in args.cells]
    print(format_table(rows), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return rows


if __name__ == "__main__":
    main()
