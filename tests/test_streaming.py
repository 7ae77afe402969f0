"""Streaming a causal CTC model: chunks of any size give the whole utterance's phones, times
and greedy path; a model that needs later frames is refused with the reason."""

import pytest
import torch

from recipes.toolkit.data.feature_config import FeatureConfig, compute_fbank
from recipes.toolkit.model import AcousticModel
from recipes.toolkit.package.runtime import PhoneRecognizer, random_config
from recipes.toolkit.package.streaming import StreamingRecognizer

PHONES = ["sil", "aa", "b", "q", "ix"]
SCORE_MAP = {"sil": "sil", "aa": "aa", "b": "b", "q": "", "ix": "ih"}


def recognizer(name: str, **changes) -> PhoneRecognizer:
    torch.manual_seed(3)
    config = random_config(PHONES, hidden_size=24)
    config["rnn"] = {"name": name, "hidden_size": 24, "num_layers": 2, "bidirectional": False}
    config["score_map"] = SCORE_MAP
    raw = compute_fbank(waveform(2.0, seed=99).unsqueeze(0), FeatureConfig())
    config["normalization"] = {"mean": raw.mean(0).tolist(), "std": raw.std(0).tolist()}
    for key, value in changes.items():
        config[key] = value
    model = AcousticModel(config["feature_dim"], config["num_outputs"], config["rnn"],
                          **config["model"])  # fmt: skip
    with torch.no_grad():  # outputs far from ties, so that the argmax does not hang on rounding
        model.output.weight.mul_(30)
        model.output.bias.zero_()
    return PhoneRecognizer(config, model)


def waveform(seconds: float, seed: int = 0) -> torch.Tensor:
    """Tones, noise bursts and near-silence, 70-130 ms each: features that keep changing."""
    generator = torch.Generator().manual_seed(seed)
    pieces, total = [], 0
    while total < int(16000 * seconds):
        n = int(torch.randint(1120, 2080, (1,), generator=generator))
        kind = int(torch.randint(0, 3, (1,), generator=generator))
        t = torch.arange(n) / 16000
        if kind == 0:
            frequency = float(torch.randint(200, 6000, (1,), generator=generator))
            piece = 4000 * torch.sin(2 * torch.pi * frequency * t)
        elif kind == 1:
            piece = 3000 * torch.randn(n, generator=generator)
        else:
            piece = 20 * torch.randn(n, generator=generator)
        pieces.append(piece)
        total += n
    return torch.cat(pieces)[: int(16000 * seconds)]


@pytest.mark.parametrize("name", ["rnn", "lstm", "gru", "ligru", "sligru"])
@pytest.mark.parametrize("chunk", [160, 1000, 2731, 16000])
def test_chunks_give_the_whole_utterances_phones_and_times(name, chunk):
    rec = recognizer(name)
    wave = waveform(1.3)
    whole = rec.transcribe(wave)
    stream = StreamingRecognizer(rec)
    emitted = [p for piece in wave.split(chunk) for p in stream.accept(piece)]
    frames = stream.frames
    assert frames == len(rec.posteriors(wave))
    path = rec.posteriors(wave).argmax(-1).tolist()
    assert stream._path == path  # the greedy path, frame for frame
    timed = stream.finish()
    assert timed == whole and len(whole) >= 3
    assert emitted == [p.phone for p in whole]
    assert stream.frames == 0  # finish starts a new utterance
    again = [p for piece in wave.split(chunk) for p in stream.accept(piece)]
    assert again == emitted


def test_phones_are_emitted_as_soon_as_their_first_frame_is_computed():
    rec = recognizer("ligru")
    wave = waveform(1.0, seed=5)
    stream = StreamingRecognizer(rec, score=False)
    seen_at = []  # (frames computed when emitted, phone)
    for piece in wave.split(480):  # 30 ms chunks
        for phone in stream.accept(piece):
            seen_at.append((stream.frames, phone))
    timed = stream.finish()
    starts = [round(p.start, 4) for p in timed]
    assert [phone for _, phone in seen_at] == [p.phone for p in timed]
    for (frames, _), start in zip(seen_at, starts, strict=True):
        # emitted with the chunk holding its first frame: at most 3 frames (30 ms) later
        first_frame = max(0, round((start - 0.0075) / 0.01))
        assert first_frame < frames <= first_frame + 4


def test_a_chunk_shorter_than_a_window_waits_for_the_next():
    stream = StreamingRecognizer(recognizer("gru"))
    assert stream.accept(torch.randn(399) * 1000) == [] and stream.frames == 0
    stream.accept(torch.randn(1) * 1000)
    assert stream.frames == 1


@pytest.mark.parametrize(
    "changes,reason",
    [
        ({"rnn": {"name": "gru", "hidden_size": 8, "bidirectional": True}}, "bidirectional"),
        ({"model": {"frontend_channels": [8]}}, "front end"),
        ({"decoding": {"method": "beam"}}, "greedy"),
    ],
)
def test_a_model_that_needs_later_frames_is_refused(changes, reason):
    config = random_config(PHONES)
    config["rnn"]["bidirectional"] = False
    config.update(changes)
    model = AcousticModel(config["feature_dim"], config["num_outputs"], config["rnn"],
                          **config["model"])  # fmt: skip
    with pytest.raises(ValueError, match=reason):
        StreamingRecognizer(PhoneRecognizer(config, model))


def test_speaker_normalisation_and_deltas_are_refused():
    config = random_config(PHONES)
    config["rnn"]["bidirectional"] = False
    config["features"] = {**config["features"], "normalization": "speaker", "deltas": 1}
    config["feature_dim"] = 80
    config["normalization"] = {"mean": [0.0] * 80, "std": [1.0] * 80}
    model = AcousticModel(80, config["num_outputs"], config["rnn"])
    with pytest.raises(ValueError, match="delta.*speaker normalisation"):
        StreamingRecognizer(PhoneRecognizer(config, model))
    framewise = random_config(PHONES, task="framewise")
    framewise["rnn"]["bidirectional"] = False
    model = AcousticModel(40, framewise["num_outputs"], framewise["rnn"])
    with pytest.raises(ValueError, match="Viterbi"):
        StreamingRecognizer(PhoneRecognizer(framewise, model))
