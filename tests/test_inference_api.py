"""The Python API of a trained recogniser: it decodes as the training module does, with times."""

import itertools
import math
from pathlib import Path

import pytest
import soundfile as sf
import torch

from recipes.toolkit.data.feature_config import FeatureConfig, compute_fbank
from recipes.toolkit.data.feature_store import moments
from recipes.toolkit.evaluation.scoring import apply_score_map
from recipes.toolkit.framewise.alignment import read_ctm
from recipes.toolkit.inference import Recognizer, TimedPhone
from recipes.toolkit.package.audio import read_audio, read_pcm_wav
from recipes.toolkit.package.timing import ctc_align, ctc_segments, map_segments
from recipes.toolkit.transcription import transcribe, write_transcription_ctm
from recipes.toolkit.workflow import load_recognizer
from tests.inference_helpers import build, save_checkpoint, write_audio
from tests.recipe_helpers import run_entry

FRAME = 0.01  # s, the frame shift
OFFSET = 0.0075  # s: the boundary before frame t, midway between centres, is t * FRAME + OFFSET


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("checkpoints")
    return {
        task: save_checkpoint(build(task), folder / f"{task}.ckpt") for task in ("ctc", "framewise")
    }


@pytest.fixture(scope="module")
def audio(tmp_path_factory) -> list[Path]:
    return write_audio(tmp_path_factory.mktemp("audio"))


def random_log_probs(frames: int, outputs: int, seed: int, peaky: float = 4.0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(frames, outputs, generator=generator) * peaky
    return logits.log_softmax(dim=-1)


# ----- the same decisions as the training modules ----------------------------------------------


@pytest.mark.parametrize(
    ("task", "decoding"),
    [
        ("ctc", {"method": "greedy"}),
        ("ctc", {"method": "beam", "beam_width": 4, "lm_weight": 0.5, "insertion_bonus": 0.3}),
        ("framewise", {"method": "viterbi"}),
        ("framewise", {"method": "greedy"}),
        ("framewise", {"method": "viterbi", "prior_scale": 0.0, "self_loop_prob": 0.5}),
    ],
)
def test_phones_are_the_training_modules_hypotheses(checkpoints, task, decoding):
    """On the same posteriors, the API's phones are what evaluation scores (``hypotheses``)."""
    recognizer = Recognizer.from_checkpoint(checkpoints[task], decoding)
    module = load_recognizer(checkpoints[task], decoding)
    outputs = len(recognizer.labels)
    for seed in range(6):
        log_probs = random_log_probs(40, outputs, seed, peaky=2.0 + seed)
        expected = module.hypotheses(log_probs[None], torch.tensor([40]))[0]
        timed = recognizer.timed_phones(log_probs)
        assert [p.phone for p in timed] == expected
        unscored = recognizer.timed_phones(log_probs, score=False)
        assert [p.phone for p in unscored] == module.decode(log_probs[None], torch.tensor([40]))[0]
        assert all(a.end <= b.start + 1e-12 for a, b in itertools.pairwise(timed))


@pytest.mark.parametrize("task", ["ctc", "framewise"])
def test_posteriors_are_the_modules_on_the_training_features(checkpoints, audio, task):
    """Features as the training cache computes them, normalised as the data module does, and
    the module's own forward pass."""
    module = load_recognizer(checkpoints[task])
    recognizer = Recognizer.from_checkpoint(checkpoints[task])
    cfg = FeatureConfig.from_mapping(module.hparams.features)
    for path in audio:
        raw = compute_fbank(read_audio(path), cfg)
        if cfg.normalization == "global":
            mean, std = module.feature_mean, module.feature_std
        else:
            mean, std = moments([raw])
        feats = ((raw.double() - mean) / std).float()
        assert torch.equal(recognizer.features(path), feats)
        with torch.no_grad():
            expected = module(feats[None], torch.tensor([len(feats)]))[0]
        assert torch.equal(recognizer.posteriors(path), expected)
        assert recognizer.posteriors(path).shape[1] == len(recognizer.labels)


def test_batches_give_what_single_files_give(checkpoints, audio):
    recognizer = Recognizer.from_checkpoint(checkpoints["ctc"])
    batch = recognizer.posteriors_batch(audio, batch_size=3)
    for path, log_probs in zip(audio, batch, strict=True):
        torch.testing.assert_close(log_probs, recognizer.posteriors(path), atol=1e-5, rtol=0)
    phones = recognizer.transcribe_batch(audio, batch_size=2)
    assert phones == [recognizer.transcribe(path) for path in audio]
    assert [len(p) for p in phones] == [len(p) for p in recognizer.transcribe_batch(audio)]


def test_waveforms_at_any_rate_are_resampled_like_files(checkpoints, audio):
    recognizer = Recognizer.from_checkpoint(checkpoints["ctc"])
    data, rate = sf.read(audio[1], dtype="int16")  # the 8 kHz FLAC
    assert rate == 8000
    from_tensor = recognizer.posteriors(torch.tensor(data, dtype=torch.float32), sample_rate=rate)
    assert torch.equal(from_tensor, recognizer.posteriors(audio[1]))
    with pytest.raises(ValueError, match=r"^waveform: too short to transcribe: 12\.5 ms"):
        recognizer.transcribe(torch.zeros(200))


@pytest.mark.parametrize("subtype", ["PCM_16", "PCM_24", "PCM_32", "PCM_U8"])
def test_standard_library_wav_reader_reads_as_soundfile(tmp_path, subtype):
    """What a package reads WAV files with when soundfile is not installed."""
    path = tmp_path / "x.wav"
    samples = torch.linspace(-0.99, 0.99, 801)[:, None].repeat(1, 2).numpy()
    sf.write(path, samples, 11025, subtype=subtype)
    data, rate = read_pcm_wav(path)
    expected, expected_rate = sf.read(str(path), dtype="float32", always_2d=True)
    assert rate == expected_rate and data.shape == expected.shape == (801, 2)
    assert (abs(data - expected) < 1e-7).all()


# ----- times -----------------------------------------------------------------------------------


def test_ctc_phone_starts_at_its_first_emission_and_ends_where_the_next_starts(checkpoints):
    """blank a a blank b blank blank a | a: the second `a` needs no blank before it to be a
    phone of its own, it follows `b`; blanks go to the phone before them."""
    recognizer = Recognizer.from_checkpoint(checkpoints["ctc"])
    a, b = recognizer.labels.index("aa"), recognizer.labels.index("b")
    path = [0, a, a, 0, b, 0, 0, a, 0, 0]
    log_probs = torch.full((len(path), len(recognizer.labels)), -10.0)
    log_probs[torch.arange(len(path)), torch.tensor(path)] = -0.01
    phones = recognizer.timed_phones(log_probs)
    boundary = [t * FRAME + OFFSET for t in range(len(path))]
    assert phones == [
        TimedPhone("aa", pytest.approx(boundary[1]), pytest.approx(boundary[4])),
        TimedPhone("b", pytest.approx(boundary[4]), pytest.approx(boundary[7])),
        TimedPhone("aa", pytest.approx(boundary[7]), pytest.approx(boundary[8])),
    ]
    assert ctc_segments(path) == [(1, 4, a), (4, 7, b), (7, 8, a)]
    log_probs[9] = log_probs[7]  # an emission in the last frame ends at the last frame's end
    assert recognizer.timed_phones(log_probs)[-1].end == pytest.approx((9 * 160 + 400) / 16000)


def test_framewise_times_are_the_viterbi_paths_runs(checkpoints):
    recognizer = Recognizer.from_checkpoint(checkpoints["framewise"], {"method": "greedy"})
    s, aa = recognizer.labels.index("s"), recognizer.labels.index("aa")
    path = [s] * 3 + [aa] * 5
    log_probs = torch.full((8, len(recognizer.labels)), -10.0)
    log_probs[torch.arange(8), torch.tensor(path)] = -0.01
    assert recognizer.timed_phones(log_probs) == [
        TimedPhone("s", 0.0, pytest.approx(3 * FRAME + OFFSET)),
        TimedPhone("aa", pytest.approx(3 * FRAME + OFFSET), pytest.approx((7 * 160 + 400) / 16000)),
    ]


def brute_force_alignment(log_probs: torch.Tensor, labels: list[int]) -> tuple[int, ...]:
    best, best_score = None, -math.inf
    for path in itertools.product(range(log_probs.shape[1]), repeat=log_probs.shape[0]):
        collapsed = [s for t, s in enumerate(path) if s != 0 and (t == 0 or path[t - 1] != s)]
        if collapsed != labels:
            continue
        score = float(log_probs[torch.arange(len(path)), torch.tensor(path)].sum())
        if score > best_score:
            best, best_score = path, score
    return best


@pytest.mark.parametrize("seed", range(8))
def test_ctc_forced_alignment_is_the_best_path_of_the_labels(seed):
    log_probs = random_log_probs(6, 3, seed, peaky=1.5)
    for labels in ([1], [2, 1], [1, 1], [1, 2, 1], [2, 2, 1]):
        assert tuple(ctc_align(log_probs, labels)) == brute_force_alignment(log_probs, labels)
    greedy = log_probs.argmax(dim=-1).tolist()
    collapsed = [s for t, s in enumerate(greedy) if s != 0 and (t == 0 or greedy[t - 1] != s)]
    assert ctc_align(log_probs, collapsed) == greedy  # the greedy path is its labels' best


def test_ctc_alignment_refuses_what_does_not_fit():
    with pytest.raises(ValueError, match="3 labels cannot be aligned to 4 frames"):
        ctc_align(random_log_probs(4, 3, 0), [1, 1, 1])  # needs 5 frames: blanks between
    assert ctc_align(random_log_probs(3, 3, 0), []) == [0, 0, 0]


def test_scoring_map_deletes_like_the_scorer_and_keeps_the_time():
    score_map = {"q": "", "vcl": "sil", "sil": "sil", "b": "b", "ix": "ih"}
    spans = [("q", 0.0, 0.1), ("vcl", 0.1, 0.2), ("sil", 0.2, 0.3), ("q", 0.3, 0.4),
             ("ix", 0.4, 0.5), ("q", 0.5, 0.6)]  # fmt: skip
    phones = [TimedPhone(*span) for span in spans]
    mapped = map_segments(phones, score_map)
    assert [p.phone for p in mapped] == apply_score_map([p.phone for p in phones], score_map)
    assert mapped == [TimedPhone("sil", 0.0, 0.2), TimedPhone("sil", 0.2, 0.3),
                      TimedPhone("ih", 0.3, 0.6)]  # fmt: skip
    with pytest.raises(KeyError, match="'zz' is not in the score map"):
        map_segments([TimedPhone("zz", 0.0, 0.1)], score_map)


# ----- transcription and the command line ------------------------------------------------------


def test_transcriptions_carry_times_and_a_ctm_file_holds_them(checkpoints, audio, tmp_path):
    recognizer = Recognizer.from_checkpoint(checkpoints["ctc"])
    results = transcribe(recognizer, [audio[0], tmp_path / "missing.wav", audio[3]])
    assert [r.ok for r in results] == [True, False, True]
    assert results[0].labels == [p.phone for p in results[0].phones] != []
    assert results[0].phones == recognizer.transcribe(audio[0])
    ctm = write_transcription_ctm(tmp_path / "out.ctm", results)
    records = read_ctm(ctm)
    expected = [(str(r.path), p) for r in (results[0], results[2]) for p in r.phones]
    assert len(records) == len(expected)
    for (utt, start, duration, phone), (path, timed) in zip(records, expected, strict=True):
        assert (utt, phone) == (path, timed.phone)
        assert start == pytest.approx(timed.start, abs=5.1e-4)  # written in whole ms
        assert duration == pytest.approx(timed.end - timed.start, abs=1.1e-3)


def test_command_line_writes_timestamps_as_ctm(checkpoints, audio, data_dir, tmp_path):
    ctm = tmp_path / "phones.ctm"
    files = ",".join(str(p) for p in audio[:2])
    overrides = [f"ckpt_path={checkpoints['framewise']}", f"audio=[{files}]", "timestamps=true",
                 f"ctm={ctm}"]  # fmt: skip
    done = run_entry("transcribe", overrides, data_dir, tmp_path / "run")
    recognizer = Recognizer.from_checkpoint(checkpoints["framewise"])
    lines = [line.split("\t") for line in done.stdout.splitlines() if "\t" in line]
    expected = [recognizer.transcribe(path) for path in audio[:2]]
    pairs = list(zip(audio[:2], expected, strict=True))
    assert lines == [[str(path), " ".join(t.phone for t in e)] for path, e in pairs]
    records = read_ctm(ctm)
    assert [(u, p) for u, _, _, p in records] == [
        (str(path), t.phone) for path, e in pairs for t in e
    ]
    assert f"phone timestamps (CTM): {ctm}" in done.stderr
