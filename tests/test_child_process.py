"""Corpus preparation in a forked child: results, errors and logs come back; garbage does not."""

import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from recipes.timit.corpus import CorpusError
from recipes.toolkit.data.child_process import can_fork, in_child_process
from recipes.toolkit.data.packed import PackedStrings

pytestmark = pytest.mark.skipif(not can_fork(), reason="forks a child only on Linux")
ran_here: list[int] = []


def test_runs_in_a_child_and_returns_the_result():
    scale = 3

    def work(values):  # a closure: nothing is pickled on the way in
        ran_here.append(1)
        return [scale * v for v in values], os.getpid()

    result, pid = in_child_process(work, [1, 2])
    assert result == [3, 6]
    assert pid != os.getpid() and not ran_here  # it ran, but not in this process


def test_an_error_keeps_its_type_message_fields_and_the_childs_traceback():
    def fail():
        raise CorpusError("2 problem(s) in the corpus", ["a.PHN: bad", "b.WAV: short"])

    with pytest.raises(CorpusError, match="2 problem") as caught:
        in_child_process(fail)
    assert caught.value.problems == ["a.PHN: bad", "b.WAV: short"]
    (note,) = caught.value.__notes__
    assert "raised in a child process" in note and "in fail" in note


def test_interruptions_come_back_as_interruptions():
    def interrupted():
        raise KeyboardInterrupt("stopped")

    with pytest.raises(KeyboardInterrupt):
        in_child_process(interrupted)


def test_log_records_reach_this_processs_handlers(caplog):
    log = logging.getLogger("recipes.test_child")

    def chatty():
        log.debug("not at this level")
        log.info("read %d utterances", 7)
        try:
            raise ValueError("inner")
        except ValueError:
            log.exception("with a traceback")
        return 1

    with caplog.at_level(logging.INFO, logger="recipes"):
        assert in_child_process(chatty) == 1
    messages = [(r.name, r.levelno, r.getMessage()) for r in caplog.records]
    assert messages[0] == ("recipes.test_child", logging.INFO, "read 7 utterances")
    assert messages[1][2].startswith("with a traceback") and "ValueError: inner" in messages[1][2]
    assert len(messages) == 2


def test_a_child_that_dies_is_reported_with_its_exit_code():
    with pytest.raises(RuntimeError, match=r"_exit ended in its child process \(exit code 3\)"):
        in_child_process(os._exit, 3)


def test_an_unpicklable_result_is_a_clear_error():
    with pytest.raises(RuntimeError, match="the child's result cannot be sent back"):
        in_child_process(lambda: lambda: None)


FRAGMENT = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    from recipes.toolkit.data.child_process import in_child_process

    def anon():
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024

    def read_like_a_corpus():
        # many short-lived objects per kept one, as a transcription reader makes them
        kept, garbage = [], []
        for i in range(400_000):
            garbage.append((i, i + 1, f"phone{i % 61}", [i]))
            if i % 100 == 0:
                kept.append(f"utterance_{i:08d}")
        del garbage
        return kept

    before = anon()
    run = in_child_process if sys.argv[1] == "child" else (lambda fn: fn())
    kept = run(read_like_a_corpus)
    print(json.dumps({"growth": anon() - before, "kept": len(kept)}))
    """
)


@pytest.mark.parametrize("where", ["child", "here"])
def test_the_work_leaves_no_garbage_resident_here(where):
    done = subprocess.run(
        [sys.executable, "-c", FRAGMENT, where], capture_output=True, text=True, check=True
    )
    result = json.loads(done.stdout)
    assert result["kept"] == 4000
    if where == "child":
        assert result["growth"] < 4 * 2**20, result  # the 4000 strings and the pickle buffer
    else:  # in this process the kept strings pin the arenas of the freed garbage
        assert result["growth"] > 40 * 2**20, result


def test_prepared_corpus_comes_back_packed(tiny_data_cfg):
    from recipes.timit.prepare import prepare_corpus

    corpus = prepare_corpus(tiny_data_cfg, {"num_mel_bins": 40, "dither": 0.0})
    train = corpus.splits["train"]
    assert isinstance(train.utt_ids, PackedStrings) and isinstance(train.wavs, PackedStrings)
    assert len(train.utt_ids) == len(train.feats) == len(train.speakers) == 12
    assert train.feats.memory_mapped  # the store came back as its file, not as its rows
    assert all(os.path.exists(w) for w in train.wavs)


ORPHAN = textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path
    from recipes.toolkit.data.child_process import in_child_process

    def wait_forever(marker):
        Path(marker).write_text(str(os.getpid()))
        while True:
            time.sleep(1)

    in_child_process(wait_forever, sys.argv[1])
    """
)


def _alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return status.split(")")[-1].split()[0] != "Z"  # a zombie has ended


def test_the_child_dies_with_a_killed_parent(tmp_path):
    marker = tmp_path / "child.pid"
    parent = subprocess.Popen([sys.executable, "-c", ORPHAN, str(marker)])
    try:
        deadline = time.monotonic() + 60
        while not marker.exists() or not marker.read_text():
            assert parent.poll() is None and time.monotonic() < deadline, "no child started"
            time.sleep(0.05)
        child = int(marker.read_text())
        assert _alive(child)
    finally:
        parent.send_signal(signal.SIGKILL)
        parent.wait()
    deadline = time.monotonic() + 10
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(child), "the child outlived its SIGKILLed parent"


OPENMP = textwrap.dedent(
    """
    import torch
    from recipes.toolkit.data.child_process import in_child_process

    torch.set_num_threads(2)
    big = torch.arange(4_000_000, dtype=torch.float64)
    print(float(big.sin().sum()))  # this process's OpenMP team now exists

    def parallel_work():
        return float(big.sin().sum()), int(torch.searchsorted(big, big[::7].contiguous()).sum())

    print(in_child_process(parallel_work))
    """
)


def test_torch_in_the_child_after_the_parent_ran_openmp():
    """Without one thread in the child, its first parallel region waits for a team that the
    fork did not copy (measured: a hang in ``gomp_team_barrier_wait_end``)."""
    env = dict(os.environ, OMP_NUM_THREADS="2")
    done = subprocess.run([sys.executable, "-c", OPENMP], capture_output=True, text=True,
                          env=env, timeout=120, check=True)  # fmt: skip
    here, child = done.stdout.splitlines()
    child_sum, found = eval(child)  # a tuple of two numbers
    assert child_sum == pytest.approx(float(here), rel=1e-9)  # one thread sums in another order
    assert found == sum(range(0, 4_000_000, 7))
