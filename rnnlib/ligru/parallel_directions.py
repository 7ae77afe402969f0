"""Run the independent directions of a recurrence at the same time, one CPU thread group each.

A step of a recurrence is one small product (``[16, 512] x [512, 1024]``) that two threads share
badly: the directions of a bidirectional layer, which never exchange data inside the loop, go
faster as one single-threaded loop per core than as one loop whose products use both cores
(about 0.8x the time for the forward loops of ``scripts/bench_rnn.py``'s M on a 2-core AMD
EPYC). Each loop runs in its own
Python thread; PyTorch releases the GIL inside every operator, so the loops overlap except for
their short Python bookkeeping.

The thread count is process-wide in PyTorch (``torch.set_num_threads``): while the loops run it is
lowered to the share of each group and restored afterwards, so do not run other PyTorch work in
parallel threads of the same process meanwhile. ``ENABLED = False`` turns this off.
"""

import threading
from collections.abc import Callable
from typing import TypeVar

import torch

from rnnlib.ligru.denormals import flush_denormals

ENABLED = True  # tests and benchmarks switch the route here
Result = TypeVar("Result")


def direction_groups(directions: int, device: torch.device) -> int:
    """How many groups the ``directions`` loops run in: one each on a CPU with enough threads.

    >>> direction_groups(2, torch.device("cuda")), direction_groups(1, torch.device("cpu"))
    (1, 1)
    """
    threads = torch.get_num_threads()
    if not ENABLED or device.type != "cpu" or directions < 2 or threads < directions:
        return 1
    return directions


def run_directions(
    body: Callable[[slice], Result], directions: int, device: torch.device
) -> list[Result]:
    """Call ``body(part)`` for slices ``part`` that cover ``range(directions)``, concurrently on
    CPU when :func:`direction_groups` allows it; return the results in order of ``part``.

    ``body`` runs without autograd recording (the caller is an autograd Function's forward or
    backward), in the caller's inference mode and, on CPU, with denormals flushed to zero in its
    thread (:mod:`rnnlib.ligru.denormals`).

    >>> sum(run_directions(lambda part: sum(range(4)[part]), 4, torch.device("cpu")))
    6
    """
    groups = direction_groups(directions, device)
    flush = device.type == "cpu"  # each loop's thread: see rnnlib.ligru.denormals
    if groups == 1:
        with flush_denormals(flush):
            return [body(slice(0, directions))]
    threads = torch.get_num_threads()
    share = threads // groups
    inference = torch.is_inference_mode_enabled()
    results: list = [None] * groups
    errors: list[BaseException] = []

    def work(group: int) -> None:
        torch.set_num_threads(share)
        try:
            # inference_mode(False) would turn grad mode on: enter it only when it is on.
            with (
                flush_denormals(flush),
                torch.inference_mode(inference) if inference else torch.no_grad(),
            ):
                results[group] = body(slice(group, group + 1))
        except BaseException as error:  # re-raised in the caller's thread below
            errors.append(error)

    torch.set_num_threads(share)
    try:
        workers = [threading.Thread(target=work, args=(g,)) for g in range(1, groups)]
        for worker in workers:
            worker.start()
        work(0)
        for worker in workers:
            worker.join()
    finally:
        torch.set_num_threads(threads)
    if errors:
        raise errors[0]
    return results
