"""Run a function in a forked child process and hand its result back to this one.

Reading a corpus makes millions of short-lived Python objects (a few per line of every
transcription) and keeps a few thousand. Python's allocator gives memory back to the system only
in whole arenas, and each object that stays pins the arena it landed in among the freed ones:
reading a 7504-utterance corpus left 66 more arenas (about 70 MiB) resident for about 1,300 live
objects. Run in a child, the reading's garbage dies with the child; this process receives only
the pickled result (packed arrays, and memory-mapped feature stores, which pickle as their
file's path), so its memory no longer grows with the corpus.

What the child logs is sent back and handled by this process's loggers, so a run's log file and
pytest's ``caplog`` see it as if it ran here; an exception raised in the child is raised here,
with the child's traceback added as a note. The child dies with this process (a run killed with
``SIGKILL`` leaves no orphan behind holding the feature cache's lock), and runs torch on one
thread: OpenMP's thread team does not survive a fork, and the first parallel region would wait
for it forever (the reader's work is light; feature workers are processes of their own).
Where no child can be forked (not Linux, or inside a daemonic process, which may not have
children) the function runs in this process.
"""

from __future__ import annotations

import ctypes
import logging
import multiprocessing
import os
import pickle
import signal
import sys
import traceback
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import TypeVar

import torch

T = TypeVar("T")


def can_fork() -> bool:
    """Whether :func:`in_child_process` forks a child here."""
    return sys.platform.startswith("linux") and not multiprocessing.current_process().daemon


def in_child_process(fn: Callable[..., T], *args: object, **kwargs: object) -> T:
    """``fn(*args, **kwargs)``, run in a forked child (``fn`` and its arguments need not pickle;
    the result must).

    >>> in_child_process(sum, [1, 2, 3])
    6
    """
    if not can_fork():
        return fn(*args, **kwargs)
    name = getattr(fn, "__name__", type(fn).__name__)
    context = multiprocessing.get_context("fork")
    receiver, sender = context.Pipe(duplex=False)
    run = (os.getpid(), sender, fn, args, kwargs)
    child = context.Process(target=_child_main, args=run, name=name)
    child.start()
    sender.close()
    outcome = None
    try:
        while outcome is None:
            try:
                kind, value = pickle.loads(receiver.recv_bytes())
            except EOFError:  # the child ended without a result
                break
            if kind == "log":
                logging.getLogger(value.name).handle(value)
            else:
                outcome = kind, value
    except BaseException:  # interrupted here: the child must not outlive the call
        child.terminate()
        raise
    finally:
        receiver.close()
        child.join()
    if outcome is None:
        raise RuntimeError(
            f"{name} ended in its child process (exit code {child.exitcode}) without a result"
        )
    kind, value = outcome
    if kind == "error":
        raise value
    return value


class _PipeHandler(logging.Handler):
    """Sends each record, its message formatted, to the parent (as ``QueueHandler`` does)."""

    def __init__(self, sender: Connection):
        super().__init__()
        self.sender = sender

    def emit(self, record: logging.LogRecord) -> None:
        try:
            record.msg = self.format(record)  # message, arguments and traceback as one text
            record.args = record.exc_info = record.exc_text = record.stack_info = None
            self.sender.send_bytes(pickle.dumps(("log", record)))
        except Exception:
            self.handleError(record)


def _die_with_parent(parent: int) -> None:
    """Have the kernel send ``SIGKILL`` here when the parent dies (Linux's ``PR_SET_PDEATHSIG``)."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(1, signal.SIGKILL, 0, 0, 0) != 0:  # 1: PR_SET_PDEATHSIG
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != parent:  # the parent died before the call
        os._exit(1)


def _child_main(parent: int, sender: Connection, fn: Callable, args: tuple, kwargs: dict) -> None:
    _die_with_parent(parent)
    torch.set_num_threads(1)  # no OpenMP region: the parent's thread team is not here
    logging.getLogger().handlers = [_PipeHandler(sender)]
    try:
        message = ("result", fn(*args, **kwargs))
    except BaseException as error:  # carried to the parent and raised there
        error.add_note("raised in a child process:\n" + "".join(traceback.format_exception(error)))
        message = ("error", error)
    try:
        payload = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as unpicklable:
        what = "".join(traceback.format_exception(message[1])) if message[0] == "error" else ""
        failure = RuntimeError(f"the child's {message[0]} cannot be sent back: {unpicklable}")
        failure.add_note(what)
        payload = pickle.dumps(("error", failure))
    sender.send_bytes(payload)
    sender.close()
