"""Time and measure every recurrent layer type side by side, as ratios to ``torch.nn.GRU``.

For each configuration: one training step (forward + backward of ``output.sum()``) and one
inference forward (eval, no_grad), median over repeats after a warm-up, the layer types interleaved
so that load on a shared machine hits them alike; and the peak memory of a training step, each type
in a fresh subprocess (CPU: RSS high-water mark minus the RSS after building model and inputs;
CUDA: peak allocated minus allocated).

On CPU the memory children pin glibc's mmap threshold (``MALLOC_MMAP_THRESHOLD_``, 64 KiB) so
that every tensor buffer is its own mapping and the RSS peak is the peak of live tensors, the
figure CUDA's allocator statistics give. With glibc's default (a threshold that rises to 32 MiB
after the first large free) the RSS also counts freed memory the heap keeps, which depends on the
order of allocations more than on the layer: ``--allocator default`` measures that instead.

    python scripts/bench_rnn.py --config both --threads 2 --json bench.json

A type may name a route of the Light GRU: its CPU products, ``ligru@onednn`` and ``ligru@blas``,
show what the fixed rule of ``rnnlib.ligru.products`` picks between (``--types torch.nn.LSTM
ligru@onednn ligru@blas``); its loops over time, ``ligru@torch``, ``ligru@cpp`` and
``ligru@triton``, what the rule of ``rnnlib.ligru.loop_route`` picks between (Python or C++ loops
on CPU, Triton on CUDA). A plain ``ligru`` takes the rules' routes.

On CUDA every float32 product is IEEE float32 unless ``--tf32``: PyTorch lets cuDNN's GRU and LSTM
use TF32 by default, so the baseline turns that off too (``torch.backends.cudnn.allow_tf32``,
``torch.backends.cuda.matmul.allow_tf32``); ``--tf32`` turns TF32 on for all of them, the Light
GRU's Triton products included (``rnnlib.ligru.loop_route.TF32``).

``--bf16`` adds a row ``<type>+bf16`` per type, timed under ``torch.autocast("cpu",
torch.bfloat16)`` beside the float32 rows (ratios stay to float32 ``torch.nn.GRU``), and prints
each row's largest and mean output difference from its float32 run (column ``bf16 err``). The
Light GRU then runs its products in bfloat16 with float32 states; ``torch.nn.LSTM`` runs oneDNN's
bfloat16 LSTM; CPU autocast leaves ``torch.nn.GRU`` in float32, so its bf16 row converts the layer
and its input to bfloat16 instead.

Configurations: S: batch 8, 300 frames, 40 features, hidden 512, 1 layer, unidirectional (time);
M: batch 16, 500 frames, 4 bidirectional layers (time and memory).
"""

import argparse
import contextlib
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

import torch
from torch import nn

from rnnlib import build_rnn
from rnnlib.ligru import loop_route
from rnnlib.ligru.loop_route import force_loop_route
from rnnlib.ligru.products import force_route

CONFIGS = {
    "S": dict(batch=8, frames=300, features=40, hidden=512, layers=1, bidirectional=False),
    "M": dict(batch=16, frames=500, features=40, hidden=512, layers=4, bidirectional=True),
}
MEMORY_CONFIGS = ("M",)
TYPES = ("torch.nn.GRU", "torch.nn.LSTM", "rnn", "lstm", "gru", "ligru", "sligru")
DEFAULT_REPEATS = {"S": 20, "M": 5}  # medians steady enough on a shared machine
LIVE_TENSORS_MMAP_THRESHOLD = str(64 * 1024)  # bytes: every larger buffer is its own mapping


BF16 = "+bf16"


def split_route(name: str) -> tuple[str, str | None]:
    """``"ligru@blas"`` -> ``("ligru", "blas")``; ``"ligru"`` -> ``("ligru", None)`` (the rule).

    A ``+bf16`` suffix is not part of either: ``"ligru@blas+bf16"`` -> ``("ligru", "blas")``.
    """
    base, _, route = name.removesuffix(BF16).partition("@")
    return base, route or None


def forced_routes(name: str) -> contextlib.AbstractContextManager:
    """The route a type's name asks for: a loop route (``torch``, ``triton``) or a product route
    (``onednn``, ``blas``); none: the rules'."""
    route = split_route(name)[1]
    if route in loop_route.LOOP_ROUTES:
        return force_loop_route(route)
    return force_route(route)


def set_tf32(enabled: bool) -> None:
    """TF32 products for cuDNN, cuBLAS and the Light GRU's Triton steps, or IEEE float32."""
    torch.backends.cudnn.allow_tf32 = enabled
    torch.backends.cuda.matmul.allow_tf32 = enabled
    loop_route.TF32 = enabled


def is_bf16(name: str) -> bool:
    return name.endswith(BF16)


def whole_model_bf16(name: str) -> bool:
    """Whether a bf16 row converts the layer itself (autocast does not cover ``torch.nn.GRU``)."""
    return is_bf16(name) and split_route(name)[0] == "torch.nn.GRU"


def precision(name: str, device: str) -> contextlib.AbstractContextManager:
    """The autocast of a ``+bf16`` row, or nothing."""
    if is_bf16(name) and not whole_model_bf16(name):
        return torch.autocast(device, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def input_for(name: str, x: torch.Tensor) -> torch.Tensor:
    return x.to(torch.bfloat16) if whole_model_bf16(name) else x


def build(name: str, config: dict, device: str) -> nn.Module:
    """A layer stack of type ``name`` (``torch.nn.GRU``/``torch.nn.LSTM`` or an rnnlib name)."""
    base = split_route(name)[0]
    sizes = dict(hidden_size=config["hidden"], num_layers=config["layers"])
    sizes["bidirectional"] = config["bidirectional"]
    if base.startswith("torch.nn."):
        cls = getattr(nn, base.removeprefix("torch.nn."))
        model = cls(config["features"], batch_first=True, **sizes)
    else:
        model = build_rnn(base, input_size=config["features"], **sizes)
    return model.to(device, torch.bfloat16 if whole_model_bf16(name) else torch.float32)


def make_input(config: dict, device: str) -> torch.Tensor:
    shape = (config["batch"], config["frames"], config["features"])
    return torch.randn(shape, generator=torch.Generator().manual_seed(0)).to(device)


def training_step(model: nn.Module, x: torch.Tensor) -> None:
    model.train()
    out = model(x)[0]
    out.sum().backward()
    model.zero_grad(set_to_none=True)


def inference_step(model: nn.Module, x: torch.Tensor) -> None:
    model.eval()
    with torch.no_grad():
        model(x)


def timed(step: Callable[[], None], device: str) -> float:
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    step()
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def time_config(config: dict, types: list[str], device: str, repeats: int) -> dict:
    """Median seconds of a training step and an inference forward per type (interleaved)."""
    x = make_input(config, device)
    models = {name: build(name, config, device) for name in types}
    samples: dict[str, dict[str, list[float]]] = {n: {"train": [], "infer": []} for n in types}
    for repeat in range(repeats + 1):  # the first round is the warm-up
        for name, model in models.items():
            with forced_routes(name), precision(name, device):
                inputs = input_for(name, x)
                train = timed(lambda m=model, x=inputs: training_step(m, x), device)
                infer = timed(lambda m=model, x=inputs: inference_step(m, x), device)
            if repeat > 0:
                samples[name]["train"].append(train)
                samples[name]["infer"].append(infer)
    return {n: {k: statistics.median(v) for k, v in s.items()} for n, s in samples.items()}


def bf16_errors(config: dict, name: str, device: str) -> dict[str, float]:
    """Largest and mean absolute difference of the ``+bf16`` row's inference output from the
    same layer's float32 output (same weights, same input)."""
    x = make_input(config, device)
    torch.manual_seed(0)
    reference = build(name.removesuffix(BF16), config, device).eval()
    model = build(name, config, device).eval()
    model.load_state_dict(reference.state_dict())
    with torch.no_grad(), forced_routes(name):
        expected = reference(x)[0]
        with precision(name, device):
            got = model(input_for(name, x))[0].float()
    error = (got - expected).abs()
    return {"max": error.max().item(), "mean": error.mean().item()}


def current_rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * resource.getpagesize()
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def reset_peak_rss() -> None:
    """Start the peak RSS afresh (Linux >= 4.0); elsewhere the peak since start stays."""
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
    except OSError:
        pass


def peak_rss_bytes() -> int:
    """This address space's RSS high-water mark.

    Not ``ru_maxrss``: Linux carries the parent's peak into a child started by vfork + exec (as
    :mod:`subprocess` does), so a child measured after the timing rounds would report those.
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def measure_memory_here(name: str, config: dict, device: str) -> float:
    """Peak bytes of two training steps above the state after building model and inputs."""
    model = build(name, config, device)
    x = input_for(name, make_input(config, device))
    with forced_routes(name), precision(name, device):
        if device == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
            for _ in range(2):
                training_step(model, x)
            torch.cuda.synchronize()
            return float(torch.cuda.max_memory_allocated() - base)
        reset_peak_rss()
        base = current_rss_bytes()
        for _ in range(2):
            training_step(model, x)
        return float(peak_rss_bytes() - base)


def measure_memory(name: str, config_name: str, args: argparse.Namespace) -> float:
    """Run :func:`measure_memory_here` in a fresh interpreter and return its bytes."""
    command = [sys.executable, __file__, "--memory-child", name, "--config", config_name]
    command += ["--threads", str(args.threads), "--device", args.device]
    command += overrides_as_flags(args) + (["--tf32"] if args.tf32 else [])
    env = dict(os.environ)
    if args.allocator == "live":
        env["MALLOC_MMAP_THRESHOLD_"] = LIVE_TENSORS_MMAP_THRESHOLD
    result = subprocess.run(command, capture_output=True, text=True, check=True, env=env)
    return float(result.stdout.strip().splitlines()[-1])


def overrides_as_flags(args: argparse.Namespace) -> list[str]:
    flags = []
    for key in ("batch", "frames", "features", "hidden", "layers"):
        if getattr(args, key) is not None:
            flags += [f"--{key}", str(getattr(args, key))]
    return flags


def resolve_config(name: str, args: argparse.Namespace) -> dict:
    config = dict(CONFIGS[name])
    for key in ("batch", "frames", "features", "hidden", "layers"):
        if getattr(args, key) is not None:
            config[key] = getattr(args, key)
    return config


def format_table(results: dict, configs: dict) -> str:
    """One row per type: each figure and its ratio to torch.nn.GRU, per configuration."""
    lines = []
    for config_name, rows in results.items():
        base = rows["torch.nn.GRU"]
        lines.append(f"config {config_name}: {json.dumps(configs[config_name])}")
        width = max(14, *(len(name) for name in rows))
        header = f"{'type':{width}} {'train ms':>9} {'x GRU':>6} {'infer ms':>9} {'x GRU':>6}"
        has_memory = "peak_mb" in base
        has_errors = any("bf16_error" in row for row in rows.values())
        if has_memory:
            header += f" {'peak MB':>8} {'x GRU':>6}"
        if has_errors:
            header += f" {'bf16 err max / mean':>20}"
        lines.append(header)
        for name, row in rows.items():
            line = f"{name:{width}} {row['train_ms']:9.1f}"
            line += f" {row['train_ms'] / base['train_ms']:6.2f}"
            line += f" {row['infer_ms']:9.1f} {row['infer_ms'] / base['infer_ms']:6.2f}"
            if has_memory:
                line += f" {row['peak_mb']:8.0f} {row['peak_mb'] / base['peak_mb']:6.2f}"
            if "bf16_error" in row:
                error = row["bf16_error"]
                line += f" {error['max']:11.4f} / {error['mean']:.5f}"
            lines.append(line)
        lines.append("")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", choices=["S", "M", "both"], default="both")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--repeats", type=int, default=None, help="default: S 20, M 5")
    parser.add_argument("--types", nargs="+", default=list(TYPES), help="torch.nn.GRU is added")
    parser.add_argument("--no-memory", action="store_true", help="skip the memory subprocesses")
    parser.add_argument(
        "--bf16", action="store_true", help="add a bfloat16 autocast row per type (see above)"
    )
    parser.add_argument(
        "--tf32", action="store_true", help="CUDA: TF32 products for every type (see above)"
    )
    parser.add_argument(
        "--allocator",
        choices=["live", "default"],
        default="live",
        help="CPU memory: peak of live tensors (pinned mmap threshold) or glibc's default RSS",
    )
    parser.add_argument("--json", metavar="PATH", help="also write the table as JSON")
    for key in ("batch", "frames", "features", "hidden", "layers"):
        parser.add_argument(f"--{key}", type=int, default=None, help="override the config")
    parser.add_argument("--memory-child", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.device == "cuda" or args.tf32:
        set_tf32(args.tf32)
    if args.memory_child:
        config = resolve_config(args.config, args)
        print(measure_memory_here(args.memory_child, config, args.device))
        return
    types = ["torch.nn.GRU"] + [t for t in args.types if t != "torch.nn.GRU"]
    if args.bf16:
        types += [t + BF16 for t in types if not is_bf16(t)]
    names = ["S", "M"] if args.config == "both" else [args.config]
    results, configs = {}, {}
    for config_name in names:
        config = configs[config_name] = resolve_config(config_name, args)
        repeats = args.repeats or DEFAULT_REPEATS[config_name]
        times = time_config(config, types, args.device, repeats)
        rows = {}
        for name in types:
            rows[name] = {
                "train_ms": times[name]["train"] * 1e3,
                "infer_ms": times[name]["infer"] * 1e3,
            }
            if config_name in MEMORY_CONFIGS and not args.no_memory:
                rows[name]["peak_mb"] = measure_memory(name, config_name, args) / 2**20
            if is_bf16(name):
                rows[name]["bf16_error"] = bf16_errors(config, name, args.device)
        results[config_name] = rows
        print(format_table({config_name: rows}, configs), flush=True)
    if args.json:
        table = {"threads": args.threads, "device": args.device, "configs": configs}
        table["allocator"], table["tf32"] = args.allocator, args.tf32
        if args.device == "cuda":
            table["device_name"] = torch.cuda.get_device_name()
        table["results"] = results
        with open(args.json, "w") as handle:
            json.dump(table, handle, indent=2)


if __name__ == "__main__":
    main()
