"""Data that cannot be trained on is found before training, and bad steps cannot pass unnoticed."""

import logging
from pathlib import Path

import pytest
import torch

from recipes.timit.corpus import CorpusError, Utterance
from recipes.timit.data import label_maps
from recipes.timit.prepare import drop_too_short
from recipes.toolkit.ctc.module import CTCRecognizer
from recipes.toolkit.data.datamodule import SpeechDataModule
from recipes.toolkit.data.feature_config import FeatureConfig
from recipes.toolkit.data.prepared import PreparedCorpus, PreparedSplit
from recipes.toolkit.framewise.data import FramewiseDataModule


def corpus_of(frames_and_phones: dict[str, tuple[int, list[str]]]) -> PreparedCorpus:
    ids = list(frames_and_phones)
    split = PreparedSplit(
        utt_ids=ids,
        speakers=["spk"] * len(ids),
        feats=[torch.zeros(frames_and_phones[u][0], 2) for u in ids],
        phones=[frames_and_phones[u][1] for u in ids],
        segments=[[] for _ in ids],
    )
    return PreparedCorpus(splits={"train": split}, feature_dim=2, train_phones=[], summary="")


UTTERANCES = {
    "ok": (6, ["h#", "aa", "b", "h#"]),
    "short": (3, ["h#", "aa", "b", "h#"]),  # 4 labels in 3 frames
    "repeats": (4, ["h#", "aa", "aa", "aa", "h#"]),  # needs 5 + 2 blanks between the aa's
}


def test_ctc_infeasible_training_utterances_are_refused_with_the_reason():
    module = SpeechDataModule(lambda: corpus_of(UTTERANCES), label_maps(), max_frames=100)
    with pytest.raises(ValueError, match="2 training utterance") as error:
        module.load()
    message = str(error.value)
    assert "train/short: 3 frames, fewer than the 4 its 4 labels need" in message
    assert "train/repeats: 4 frames, fewer than the 7 its 5 labels need" in message
    assert "train/ok" not in message


def test_skip_bad_leaves_them_out_and_lists_them(caplog):
    module = SpeechDataModule(
        lambda: corpus_of(UTTERANCES), label_maps(), max_frames=100, skip_bad=True
    )
    with caplog.at_level(logging.WARNING, logger="recipes"):
        corpus = module.load()
    assert corpus.splits["train"].utt_ids == ["ok"]
    assert [where for where, _ in corpus.skipped] == ["train/short", "train/repeats"]
    assert "left out 2 untrainable training utterance(s)" in caplog.text


def test_the_framewise_task_trains_on_any_utterance_with_frames():
    module = FramewiseDataModule(lambda: corpus_of(UTTERANCES), label_maps(), max_frames=100)
    assert module.load().splits["train"].utt_ids == ["ok", "short", "repeats"]


def utterance(utt_id: str, num_samples: int) -> Utterance:
    wav = Path(f"/corpus/TRAIN/DR1/SPK/{utt_id}.WAV")
    return Utterance(utt_id, "spk", "dr1", "train", wav, wav.with_suffix(".PHN"),
                     [(0, num_samples, "h#")], num_samples=num_samples)  # fmt: skip


def test_audio_shorter_than_one_window_is_named_at_preparation():
    splits = {"train": [utterance("SX1", 16000), utterance("SX2", 399)], "dev": [], "test": []}
    with pytest.raises(CorpusError) as error:
        drop_too_short(splits, FeatureConfig(), skip_bad=False)
    assert error.value.problems == [
        "/corpus/TRAIN/DR1/SPK/SX2.WAV: 399 samples (0.025 s), shorter than one 25 ms analysis "
        "window (400 samples)"
    ]
    skipped = drop_too_short(splits, FeatureConfig(), skip_bad=True)
    assert [path for path, _ in skipped] == ["/corpus/TRAIN/DR1/SPK/SX2.WAV"]
    assert [u.utt_id for u in splits["train"]] == ["SX1"]


def batch_of(*utt_ids: str) -> dict:
    return {"utt_ids": list(utt_ids), "lengths": torch.ones(len(utt_ids))}


def module(**options) -> CTCRecognizer:
    return CTCRecognizer(["a"], 2, {"name": "gru", "hidden_size": 4}, **options)


GOOD, BAD = torch.tensor(1.0), torch.tensor(float("nan"))


def test_bad_steps_in_a_row_stop_the_run_naming_the_utterances():
    recognizer = module(max_bad_steps=3, max_bad_fraction=1.0)
    assert recognizer.guard_loss(BAD, batch_of("u1")) is None
    assert recognizer.guard_loss(GOOD, batch_of("u2")) is GOOD  # resets the run of bad steps
    recognizer.guard_loss(BAD, batch_of("u3"))
    recognizer.guard_loss(BAD, batch_of("u4", "u5"))
    with pytest.raises(RuntimeError, match=r"4 non-finite losses in 5 steps \(3 in a row\)") as e:
        recognizer.guard_loss(BAD, batch_of("u6"))
    assert "utterances of those batches: u1 u3 u4 u5 u6." in str(e.value)


def test_frequent_bad_steps_stop_the_run_even_when_never_in_a_row():
    recognizer = module(max_bad_steps=3, max_bad_fraction=0.3)
    outcomes = []
    with pytest.raises(RuntimeError, match=r"3 non-finite losses in 5 steps \(1 in a row\)"):
        for step in range(20):  # bad, good, bad, good, ...: 50 % of the steps
            loss = BAD if step % 2 == 0 else GOOD
            outcomes.append(recognizer.guard_loss(loss, batch_of(f"u{step}")))
    assert len(outcomes) == 4  # stopped at the fifth step: 3 bad of 5 > 30 %


def test_rare_bad_steps_are_tolerated():
    recognizer = module(max_bad_steps=3, max_bad_fraction=0.3)
    for step in range(40):  # one bad step in ten
        recognizer.guard_loss(BAD if step % 10 == 0 else GOOD, batch_of(f"u{step}"))
    assert recognizer.bad_total == 4
