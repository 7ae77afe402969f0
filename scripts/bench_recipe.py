"""Time the recipe's own training step per ``rnn=`` type side by side, as ratios to ``rnn=gru``.

The TIMIT CTC recipe's default configuration (recipes/timit/conf/train.yaml) on the built-in
corpus: its data module (features, frame-budget batches) and, per type, its recogniser
(``build_recognizer``), optimizer (``configure_optimizers``) and gradient clipping
(``trainer.gradient_clip_val``). One step is what Lightning runs per training batch: the
recogniser's ``training_step`` (forward and CTC loss, with the frame loss when the configuration
has it), backward, clipping, optimizer step and
zeroing of the gradients. Every type steps through the same first ``--steps`` training batches
of the first epoch, the types interleaved batch by batch so that load on a shared machine hits
them alike, after one warm-up step each. Beside each step the type's bare layer stack (the
recogniser's own encoder) takes ``scripts/bench_rnn.py``'s training step (forward and backward
of the output's sum, no lengths) on a random batch of the same shape: ``x layer`` is the recipe
step over that (target <= 1.5: the recipe adds features, CTC, clipping and the optimizer, not
another multiple of the layer).

A type ``<name>@packed`` (``lstm@packed``, ``gru@packed``, ``rnn@packed``) runs that recogniser
with its encoder routed through the packed path rnnlib took before (``pack_padded_sequence``
through its ``torch.nn`` module): before and after in one process. ``ligru@torch`` and
``ligru@cpp`` (any Light GRU type) force the loops over time to the Python or the C++ loops
(``rnnlib.ligru.loop_route``; a plain type takes the rule's). A ``+bf16`` suffix
(``ligru+bf16``, ``lstm@packed+bf16``) steps as ``trainer.precision=bf16-mixed`` does: the
forward pass and the loss under ``torch.autocast("cpu", torch.bfloat16)``, backward and the
optimizer outside it (its bare-layer step under the same autocast). ``--baseline`` names the
type every ratio is to (default ``gru``, in float32); the CRDNN presets need another, since
their ``rnn`` keys (``nonlinearity``, ``normalization``) do not fit a GRU.

    python scripts/bench_recipe.py --threads 2 --steps 10 --json bench_recipe.json
    python scripts/bench_recipe.py --types lstm lstm@packed --corpus-overrides data.max_frames=2000
    python scripts/bench_recipe.py --baseline ligru --types ligru+bf16 --steps 4 \
        --corpus-overrides experiment=speechbrain_crdnn_ligru   # the CRDNN preset, both precisions

The corpus is generated (once) under ``--data-dir`` (default: ``$RNNLIB_DATA_DIR``, else the
repository's ``data/``), as the recipe does.
"""

import argparse
import contextlib
import itertools
import json
import os
import statistics
import sys
import time
import warnings
from pathlib import Path

import lightning as L
import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_rnn import BF16  # noqa: E402
from bench_rnn import precision as autocast_for  # noqa: E402
from bench_rnn import training_step as bare_layer_step  # noqa: E402

from recipes.timit.data import timit_datamodule
from recipes.timit.phones import scoring_map
from recipes.timit.train import ctc_task
from recipes.toolkit.config import register_resolvers
from recipes.toolkit.ctc.module import CTCRecognizer
from recipes.toolkit.data.datamodule import SpeechDataModule
from recipes.toolkit.run.validate import validate_run_config
from recipes.toolkit.workflow import build_recognizer
from rnnlib.ligru.loop_route import LOOP_ROUTES, force_loop_route

REPO = Path(__file__).resolve().parents[1]
TASK_CONF = REPO / "recipes" / "timit" / "conf"
BASELINE = "gru"  # the default --baseline
TYPES = ("gru", "rnn", "lstm", "ligru", "sligru")
PACKED = "packed"  # the suffix of a type run through the packed route


def split_type(name: str) -> tuple[str, bool]:
    """``"lstm@packed"`` -> ``("lstm", True)``; ``"lstm"`` -> ``("lstm", False)``; a ``+bf16``
    suffix is part of neither (``"lstm@packed+bf16"`` -> ``("lstm", True)``), nor a Light GRU
    loop route (``"ligru@torch"`` -> ``("ligru", False)``, see :func:`loop_route_of`)."""
    base, _, route = name.removesuffix(BF16).partition("@")
    if route not in ("", PACKED, *LOOP_ROUTES):
        raise ValueError(
            f"unknown route {route!r} in {name!r} (@{PACKED}, or a Light GRU loop route: "
            f"{', '.join('@' + r for r in LOOP_ROUTES)})"
        )
    return base, route == PACKED


def loop_route_of(name: str) -> str | None:
    """The Light GRU loop route a type names (``"sligru@torch"`` -> ``"torch"``), or None."""
    route = name.removesuffix(BF16).partition("@")[2]
    return route if route in LOOP_ROUTES else None


def compose_config(rnn: str, overrides: list[str], data_dir: Path) -> DictConfig:
    """The training configuration of ``rnn=<rnn>`` with ``overrides`` and the data directory."""
    register_resolvers()
    with initialize_config_dir(config_dir=str(TASK_CONF), version_base="1.3"):
        return compose("train", overrides=[f"rnn={rnn}", *overrides, f"paths.data_dir={data_dir}"])


def use_packed_route(encoder: torch.nn.Module) -> None:
    """Route an rnnlib ``RNN``/``LSTM``/``GRU`` through packing, as rnnlib did before."""
    module = getattr(encoder, "rnn", None)
    if not isinstance(module, torch.nn.RNNBase):
        raise ValueError(f"@{PACKED} applies to rnn, lstm and gru, not {type(encoder).__name__}")

    def forward(x, lengths=None, hx=None):
        if lengths is None:
            return module(x, hx)
        packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, h_n = module(packed, hx)
        return pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])[0], h_n

    encoder.forward = forward


class Runner:
    """One type's recogniser, optimizer and clipping, stepping as Lightning would."""

    def __init__(self, name: str, cfg: DictConfig, datamodule: SpeechDataModule):
        corpus = datamodule.load()
        validate_run_config(cfg, CTCRecognizer.decoding_methods)
        L.seed_everything(cfg.seed, workers=True, verbose=False)
        score_map = scoring_map(int(cfg.data.train_phones), int(cfg.data.score_phones))
        self.module = build_recognizer(
            cfg, datamodule.phones, corpus.feature_dim, score_map, corpus.identity, corpus.stats,
            options=ctc_task(cfg)[1],
        )  # fmt: skip
        if split_type(name)[1]:
            use_packed_route(self.module.model.encoder)
        self.module.train()
        optimizers = self.module.configure_optimizers()
        self.optimizer = optimizers["optimizer"] if isinstance(optimizers, dict) else optimizers
        self.clip = cfg.trainer.get("gradient_clip_val")
        self.parameters = sum(p.numel() for p in self.module.parameters())
        self.skipped = 0
        self.name = name

    def layer_input(self, batch: dict) -> torch.Tensor:
        """A random ``[batch, time, encoder inputs]`` of the batch's shape (no lengths, as
        bench_rnn's); the encoder's inputs are the features, or a front end's outputs."""
        size, time_steps = batch["feats"].shape[:2]
        return torch.randn(size, time_steps, self.module.model.encoder.input_size)

    def forward_context(self) -> contextlib.ExitStack:
        """What a forward runs under: CPU bfloat16 autocast for a ``+bf16`` type (as Lightning's
        ``bf16-mixed``: bench_rnn's, whose ``+bf16`` suffix this is) and the Light GRU loop route
        a ``@torch`` / ``@cpp`` type names (a backward follows its forward's route)."""
        stack = contextlib.ExitStack()
        stack.enter_context(autocast_for(self.name, "cpu"))
        stack.enter_context(force_loop_route(loop_route_of(self.name)))
        return stack

    def step(self, batch: dict, index: int) -> float | None:
        """One step; the loss, or ``None`` for a skipped step (non-finite loss)."""
        with self.forward_context():  # forward and loss only, as Lightning's mixed precision
            loss = self.module.training_step(batch, index)
        if loss is None:  # a non-finite loss: the recipe skips the step
            self.skipped += 1
            return None
        loss.backward()
        if self.clip:
            torch.nn.utils.clip_grad_norm_(self.module.parameters(), float(self.clip))
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return float(loss.detach())


def recipe_datamodule(cfg: DictConfig) -> SpeechDataModule:
    """The data module the recipe builds for ``cfg`` (frame targets when its frame loss is on)."""
    return timit_datamodule(cfg.data, cfg.features, cfg.seed, cfg.prepare_workers,
                            cfg.get("augment"), kind=ctc_task(cfg)[0])  # fmt: skip


def training_batches(datamodule: SpeechDataModule, count: int) -> list[dict]:
    """The first ``count`` training batches of the first epoch (after the transfer hook)."""
    batches = itertools.islice(datamodule.train_dataloader(), count)
    return [datamodule.on_after_batch_transfer(batch, 0) for batch in batches]


def bench(args: argparse.Namespace) -> dict:
    """Seconds per step of every type on the same batches, and what the batches hold."""
    types = [args.baseline] + [t for t in args.types if t != args.baseline]
    for name in types:
        split_type(name)
    data_dir = Path(args.data_dir).resolve()
    configs = {n: compose_config(split_type(n)[0], args.corpus_overrides, data_dir) for n in types}
    first = configs[args.baseline]
    datamodule = recipe_datamodule(first)
    datamodule.load()
    batches = training_batches(datamodule, args.steps)
    if len(batches) < args.steps:
        raise ValueError(
            f"an epoch has {len(batches)} training batches, fewer than --steps {args.steps} "
            "(lower data.max_frames or the steps)"
        )
    runners = {name: Runner(name, configs[name], datamodule) for name in types}
    seconds: dict[str, list[float]] = {name: [] for name in types}
    bare: dict[str, list[float]] = {name: [] for name in types}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*self.log.*")  # no Trainer to log to
        for runner in runners.values():  # warm-up: allocations, kernel set-up
            runner.step(batches[0], 0)
            with runner.forward_context():
                bare_layer_step(runner.module.model.encoder, runner.layer_input(batches[0]))
        for index, batch in enumerate(batches):
            for name, runner in runners.items():
                torch.manual_seed(index)  # the same random layer input for every type
                x = runner.layer_input(batch)
                start = time.perf_counter()
                runner.step(batch, index)
                seconds[name].append(time.perf_counter() - start)
                start = time.perf_counter()
                with runner.forward_context():
                    bare_layer_step(runner.module.model.encoder, x)
                bare[name].append(time.perf_counter() - start)
            done = ", ".join(f"{name} {seconds[name][-1] * 1e3:.0f}" for name in types)
            print(f"batch {index + 1}/{len(batches)} ms: {done}", file=sys.stderr, flush=True)
    frames = sum(int(batch["lengths"].sum()) for batch in batches)
    padded = sum(batch["feats"].shape[0] * batch["feats"].shape[1] for batch in batches)
    base = sum(seconds[args.baseline])
    results = {}
    for name in types:
        total = sum(seconds[name])
        results[name] = {
            "ms_per_step": total / len(batches) * 1e3,
            "median_ms": statistics.median(seconds[name]) * 1e3,
            "frames_per_s": frames / total,
            "x_baseline": total / base,
            "bare_layer_ms": sum(bare[name]) / len(batches) * 1e3,
            "x_bare_layer": total / sum(bare[name]),
            "step_ms": [s * 1e3 for s in seconds[name]],
            "parameters": runners[name].parameters,
            "skipped_steps": runners[name].skipped,
        }
    return {
        "baseline": args.baseline,
        "threads": args.threads,
        "steps": len(batches),
        "overrides": list(args.corpus_overrides),
        "batches": {
            "sizes": [int(batch["feats"].shape[0]) for batch in batches],
            "frames": frames,
            "padded_frames": padded,
        },
        "results": results,
    }


def format_table(table: dict) -> str:
    batches = table["batches"]
    lines = [
        f"{table['steps']} training batches ({batches['frames']} frames, "
        f"{batches['padded_frames']} with padding; sizes {batches['sizes']}), "
        f"{table['threads']} threads",
        f"{'rnn=':14} {'ms/step':>9} {'median':>9} {'x ' + table['baseline']:>8} "
        f"{'frames/s':>9} {'params':>9} {'layer ms':>9} {'x layer':>8}",
    ]
    for name, row in table["results"].items():
        lines.append(
            f"{name:14} {row['ms_per_step']:9.1f} {row['median_ms']:9.1f} {row['x_baseline']:8.2f} "
            f"{row['frames_per_s']:9.0f} {row['parameters']:9d} {row['bare_layer_ms']:9.1f} "
            f"{row['x_bare_layer']:8.2f}"
        )
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--types", nargs="+", default=list(TYPES), help="the baseline is added")
    parser.add_argument(
        "--baseline",
        default=BASELINE,
        help="the type every ratio is to (ligru where the overrides do not fit a gru)",
    )
    parser.add_argument("--steps", type=int, default=10, help="timed batches per type")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--corpus-overrides",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="Hydra overrides for every type (data.generator.num_train_speakers=2, ...)",
    )
    parser.add_argument(
        "--data-dir",
        default=os.environ.get("RNNLIB_DATA_DIR", str(REPO / "data")),
        help="corpus and feature cache (default: $RNNLIB_DATA_DIR, else data/)",
    )
    parser.add_argument("--json", metavar="PATH", help="also write the table as JSON")
    args = parser.parse_args(argv)
    if args.steps < 1:
        parser.error("--steps must be at least 1")
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    table = bench(args)
    print(format_table(table), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(table, indent=2))
    return table


if __name__ == "__main__":
    main()
