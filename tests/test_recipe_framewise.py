"""The framewise task end to end, as a user runs it: train, evaluate, transcribe, align."""

import itertools

import pytest

from recipes.timit.corpus import read_timit
from recipes.timit.phones import map_phones
from recipes.toolkit.data.segments import relabel_segments
from recipes.toolkit.evaluation.scoring import count_errors
from recipes.toolkit.framewise.alignment import boundaries, boundary_accuracy, read_ctm
from tests.recipe_helpers import OVERFIT, SMALL_CORPUS, results, run_entry

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def overfit_run(data_dir, tmp_path_factory):
    """A framewise Light GRU that learns the training utterances by heart (scored on train)."""
    run_dir = tmp_path_factory.mktemp("framewise")
    overrides = [
        *OVERFIT,
        "trainer.max_epochs=40",
    ]
    done = run_entry("train_framewise", overrides, data_dir, run_dir)
    return run_dir, done


def test_framewise_training_overfits_a_few_utterances(overfit_run):
    run_dir, done = overfit_run
    train = results(run_dir)["eval"]["train"]
    assert train["per"] < 10.0 and train["frame_accuracy"] > 90.0, train
    assert "| train |" in done.stdout
    for name in ("learning_curves.png", "posteriors.png", "eval/train_alignments.ctm"):
        assert (run_dir / name).exists(), name
    header = (run_dir / "csv" / "metrics.csv").read_text().splitlines()[0]
    assert "dev_frame_acc" in header and "dev_per" in header


def test_forced_alignments_find_the_known_boundaries_of_the_builtin_corpus(overfit_run, data_dir):
    """The built-in corpus is synthesised from its .PHN segments: the boundaries are exact."""
    run_dir, _ = overfit_run
    records = read_ctm(run_dir / "eval" / "train_alignments.ctm")
    corpus = read_timit(data_dir / "builtin_timit")["train"]
    found, expected, matched = {}, 0, 0
    for utt_id, start, duration, phone in records:
        found.setdefault(utt_id, []).append((start, start + duration, phone))
    assert sorted(found) == sorted(u.utt_id for u in corpus)

    def fold(phone):
        mapped = map_phones([phone], 48)
        return mapped[0] if mapped else None

    for utterance in corpus:
        segments = found[utterance.utt_id]
        reference = relabel_segments(
            [(a / 16000, b / 16000, p) for a, b, p in utterance.segments], fold
        )
        assert [p for _, _, p in segments] == [p for _, _, p in reference]  # forced: same phones
        assert all(
            abs(a[1] - b[0]) < 1.5e-3 for a, b in itertools.pairwise(segments)
        )  # contiguous (ms)
        expected += len(boundaries(reference))
        matched += boundary_accuracy(boundaries(reference), boundaries(segments))[0.02] * len(
            boundaries(reference)
        )
    assert matched / expected > 0.9, matched / expected
    reported = results(run_dir)["eval"]["train"]["boundary_accuracy"]
    assert reported["20ms"] == pytest.approx(100 * matched / expected, abs=0.01)
    assert reported["10ms"] <= reported["20ms"] <= reported["40ms"]


def test_eval_reads_the_task_from_the_checkpoint(overfit_run, data_dir, tmp_path):
    run_dir, _ = overfit_run
    checkpoint = run_dir / "checkpoints" / "last.ckpt"
    run_entry("eval", [f"ckpt_path={checkpoint}", "split=dev", *SMALL_CORPUS], data_dir, tmp_path)
    assert results(tmp_path)["eval"]["dev"] == results(run_dir)["eval"]["dev"]
    assert results(tmp_path)["decoding"]["method"] == "viterbi"


def test_framewise_transcribe_gives_training_labels_back(overfit_run, data_dir, tmp_path):
    run_dir, _ = overfit_run
    utterance = read_timit(data_dir / "builtin_timit")["train"][0]
    done = run_entry(
        "transcribe",
        [f"ckpt_path={run_dir}/checkpoints/last.ckpt", f"audio=[{utterance.wav}]"],
        data_dir,
        tmp_path,
    )
    line = [x for x in done.stdout.splitlines() if x.startswith(str(utterance.wav))][0]
    hypothesis = line.split("\t")[1].split()
    reference = map_phones([p for _, _, p in utterance.segments], 39)
    assert count_errors(reference, hypothesis).per < 10.0, (reference, hypothesis)


def test_ctc_decoding_is_refused_by_the_framewise_task(data_dir, tmp_path):
    done = run_entry("train_framewise", ["decoding=beam", *SMALL_CORPUS], data_dir, tmp_path,
                     check=False)  # fmt: skip
    assert done.returncode != 0
    assert "decoding.method must be one of ['viterbi', 'greedy']" in done.stderr
