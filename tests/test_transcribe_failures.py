"""transcribe with bad files among good ones: the good ones are decoded, each bad one is named
with its reason, and the command fails so that scripts notice."""

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from recipes.timit.checkpoints import implied_hparams
from recipes.timit.corpus import read_timit
from recipes.toolkit.data.feature_config import SAMPLE_RATE, FeatureConfig, compute_fbank
from recipes.toolkit.transcription import (
    Transcription,
    check_long_enough,
    failure_summary,
    read_audio,
    transcribe,
)
from recipes.toolkit.workflow import load_recognizer
from tests.recipe_helpers import SMALL_CORPUS, run_entry

TINY = ["rnn.hidden_size=16", "rnn.num_layers=1", "trainer.max_epochs=1", "eval_splits=[dev]"]


def bad_files(folder: Path) -> dict[str, Path]:
    """A missing file, a text file named .wav, an empty file, a valid WAV of 100 samples and
    one of no samples."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {name: folder / f"{name}.wav" for name in ("missing", "text", "empty", "short")}
    files["text"].write_text("this is not audio\n")
    files["empty"].write_bytes(b"")
    sf.write(files["short"], np.zeros(100, dtype=np.int16), SAMPLE_RATE)
    files["nosamples"] = folder / "nosamples.wav"
    sf.write(files["nosamples"], np.zeros(0, dtype=np.int16), SAMPLE_RATE)
    return files


SHORT_MESSAGE = (
    "{}: too short to transcribe: 6.25 ms (100 samples at 16 kHz), "
    "less than one analysis frame (25 ms, 400 samples)"
)


def test_too_short_check_names_the_file_its_duration_and_the_minimum():
    with pytest.raises(ValueError) as caught:
        check_long_enough(Path("x/short.wav"), 100, FeatureConfig())
    assert str(caught.value) == SHORT_MESSAGE.format("x/short.wav")
    check_long_enough("ok.wav", 400, FeatureConfig())  # exactly one frame: fine
    with pytest.raises(ValueError, match=r"^a\.wav: empty audio \(no samples\)$"):
        check_long_enough("a.wav", 0, FeatureConfig())


@pytest.mark.parametrize("frame_length_ms", [25.0, 20.0, 32.0, 50.0])
def test_too_short_check_is_the_filterbank_limit_of_the_feature_config(frame_length_ms):
    """The check follows the checkpoint's window, and lets through exactly what has a frame."""
    cfg = FeatureConfig(frame_length_ms=frame_length_ms, deltas=2)
    need = int(SAMPLE_RATE * frame_length_ms / 1000)
    check_long_enough("a.wav", need, cfg)
    assert compute_fbank(torch.randn(1, need) * 1000, cfg).shape == (1, cfg.dim)
    with pytest.raises((AssertionError, RuntimeError, ValueError)):  # what the check spares
        compute_fbank(torch.randn(1, need - 1) * 1000, cfg)
    frame = rf"less than one analysis frame \({need / 16:g} ms, {need} samples\)$"
    with pytest.raises(ValueError, match=frame):
        check_long_enough("a.wav", need - 1, cfg)


def test_read_audio_names_each_bad_file_with_its_reason(tmp_path):
    files = bad_files(tmp_path)
    reasons = {
        "missing": f"{files['missing']}: audio file not found",
        "text": f"{files['text']}: not a readable audio file (",
        "empty": f"{files['empty']}: empty file (0 bytes), not an audio file",
        "nosamples": f"{files['nosamples']}: empty audio (no samples)",
    }
    for name, reason in reasons.items():
        with pytest.raises((OSError, ValueError)) as caught:
            read_audio(files[name])
        assert str(caught.value).startswith(reason), (name, str(caught.value))
    assert read_audio(files["short"]).shape == (1, 100)  # readable: too short is checked later
    with pytest.raises(ValueError, match="a directory, not an audio file"):
        read_audio(tmp_path)


def test_failure_summary_counts_and_names_every_failure():
    results = [
        Transcription(Path("a.wav"), ["sil", "aa"]),
        Transcription(Path("b.wav"), None, "b.wav: audio file not found"),
        Transcription(Path("c.wav"), None, "c.wav: empty audio (no samples)"),
    ]
    assert failure_summary(results) == (
        "2 of 3 files could not be transcribed: b.wav: audio file not found; "
        "c.wav: empty audio (no samples)"
    )
    assert failure_summary(results[:1]) is None


@pytest.fixture(scope="module")
def tiny_checkpoint(data_dir, tmp_path_factory) -> Path:
    """A one-epoch, one-layer, 16-unit recogniser of the small corpus."""
    run_dir = tmp_path_factory.mktemp("tiny_run")
    run_entry("train", [*SMALL_CORPUS, *TINY], data_dir, run_dir)
    return run_dir / "checkpoints" / "last.ckpt"


@pytest.mark.slow
def test_bad_files_are_named_and_good_ones_transcribed(tiny_checkpoint, data_dir, tmp_path):
    """[good, missing, not audio, empty, too short, good]: both good ones printed, each bad one
    named with its reason on stderr and in the summary, exit status 1."""
    test = read_timit(data_dir / "builtin_timit")["test"]
    good, other = test[0].wav, test[1].wav
    bad = bad_files(tmp_path / "audio")
    audio = [good, bad["missing"], bad["text"], bad["empty"], bad["short"], other]
    overrides = [f"ckpt_path={tiny_checkpoint}", f"audio=[{','.join(map(str, audio))}]"]
    done = run_entry("transcribe", overrides, data_dir, tmp_path / "transcribe", check=False)
    assert done.returncode == 1, (done.stdout, done.stderr)
    lines = [x for x in done.stdout.splitlines() if "\t" in x]
    assert [x.split("\t")[0] for x in lines] == [str(good), str(other)], done.stdout
    assert all(x.split("\t")[1].split() for x in lines), lines  # phones, space separated
    reasons = [
        f"{bad['missing']}: audio file not found",
        f"{bad['text']}: not a readable audio file (",
        f"{bad['empty']}: empty file (0 bytes), not an audio file",
        SHORT_MESSAGE.format(bad["short"]),
    ]
    errors = [x for x in done.stderr.splitlines() if x.startswith("could not transcribe: ")]
    assert len(errors) == 4, done.stderr
    for line, reason in zip(errors, reasons, strict=True):
        assert reason in line, (line, reason)
    summary = [x for x in done.stderr.splitlines() if "files could not be transcribed" in x]
    assert len(summary) == 1 and summary[0].startswith("4 of 6 files could not be transcribed: ")
    for reason in reasons:
        assert reason in summary[0], (reason, summary[0])
    assert "Traceback" not in done.stderr


@pytest.mark.slow
def test_transcribe_gives_one_result_per_file_in_order(tiny_checkpoint, data_dir, tmp_path):
    """The Python API: a Transcription per path, labels for the good ones, a reason otherwise;
    a file at another rate is resampled, and one too short after resampling is refused."""
    module = load_recognizer(tiny_checkpoint, fill_missing=implied_hparams)
    good = read_timit(data_dir / "builtin_timit")["test"][0].wav
    bad = bad_files(tmp_path)
    wave, _ = sf.read(good, dtype="int16")
    resampled = tmp_path / "good_8k.flac"
    sf.write(resampled, wave[::2], 8000)
    short_8k = tmp_path / "short_8k.wav"
    sf.write(short_8k, np.zeros(150, dtype=np.int16), 8000)  # 300 samples at 16 kHz
    paths = [bad["nosamples"], good, bad["short"], resampled, short_8k]
    results = transcribe(module, paths)
    assert [r.path for r in results] == paths
    assert [r.ok for r in results] == [False, True, False, True, False]
    assert results[0].error == f"{bad['nosamples']}: empty audio (no samples)"
    assert results[1].labels and results[1].error is None
    assert results[2].labels is None and results[2].error == SHORT_MESSAGE.format(bad["short"])
    assert results[3].labels
    assert results[4].error == (
        f"{short_8k}: too short to transcribe: 18.75 ms (300 samples at 16 kHz), "
        "less than one analysis frame (25 ms, 400 samples)"
    )
