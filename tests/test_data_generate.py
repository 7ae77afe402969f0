"""The built-in corpus generator: layout, formats, determinism, reuse, acoustics."""

import logging
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from recipes.timit.builtin.generate import (
    MARKER,
    CorpusSettingsMismatch,
    GeneratorParams,
    ensure_builtin_corpus,
    generate_corpus,
)
from recipes.timit.phones import phone_set
from recipes.timit.speakers import CORE_TEST_LIST, DEV_LIST
from recipes.toolkit.data.feature_config import FeatureConfig, compute_fbank
from recipes.toolkit.data.features import load_waveform
from recipes.toolkit.data.segments import frame_segments
from tests.data_fixtures import TINY_PARAMS

ONE = GeneratorParams(
    seed=3, num_train_speakers=1, num_dev_speakers=1, num_test_speakers=1, sentences_per_speaker=1
)


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def test_layout_and_speakers(tiny_corpus):
    assert (tiny_corpus / "TRAIN").is_dir() and (tiny_corpus / "TEST").is_dir()
    spk_dirs = sorted(tiny_corpus.glob("*/DR*/*"))
    assert len(spk_dirs) == 8
    train = [d.name for d in spk_dirs if d.parts[-3] == "TRAIN"]
    test = [d.name.lower() for d in spk_dirs if d.parts[-3] == "TEST"]
    assert all(re.fullmatch(r"[FM][A-Z]{3}[0-9]", s) for s in train)
    assert not {s.lower() for s in train} & (set(DEV_LIST) | set(CORE_TEST_LIST))
    assert len([s for s in test if s in DEV_LIST]) == 2
    assert len([s for s in test if s in CORE_TEST_LIST]) == 2
    for d in spk_dirs:
        assert re.fullmatch(r"DR[1-8]", d.parent.name)
        names = sorted(p.name for p in d.iterdir())
        stems = {n.rsplit(".", 1)[0] for n in names}
        assert {"SA1", "SA2"} <= stems and len(stems) == 5  # SA1, SA2 + 3 SX/SI
        assert any(s.startswith("SX") for s in stems) and any(s.startswith("SI") for s in stems)
        for s in stems:
            assert {f"{s}.{e}" for e in ("WAV", "PHN", "WRD", "TXT")} <= set(names)


def test_sphere_and_transcriptions(tiny_corpus):
    phones61 = set(phone_set(61))
    for wav in sorted(tiny_corpus.glob("TRAIN/*/*/*.WAV"))[:6]:
        assert wav.read_bytes()[:16] == b"NIST_1A\n   1024\n"
        info = sf.info(str(wav))
        assert (info.format, info.subtype, info.samplerate, info.channels) == (
            "NIST", "PCM_16", 16000, 1,
        )  # fmt: skip
        segs = [ln.split() for ln in wav.with_suffix(".PHN").read_text().splitlines()]
        segs = [(int(a), int(b), p) for a, b, p in segs]
        assert segs[0][:1] == (0,) and segs[0][2] == "h#" and segs[-1][2] == "h#"
        assert segs[-1][1] == info.frames
        assert all(a[1] == b[0] for a, b in zip(segs, segs[1:], strict=False))  # contiguous, sorted
        assert all(p in phones61 for _, _, p in segs)
        labels = [p for _, _, p in segs]
        for i, p in enumerate(labels):  # every release follows its closure
            if p in ("b", "d", "g", "p", "t", "k"):
                assert labels[i - 1] == {"b": "bcl", "d": "dcl", "g": "gcl"}.get(p, p + "cl")
        txt = wav.with_suffix(".TXT").read_text().split(maxsplit=2)
        assert txt[:2] == ["0", str(info.frames)] and txt[2].strip().endswith(".")
        words = [ln.split() for ln in wav.with_suffix(".WRD").read_text().splitlines()]
        bounds = {a for a, _, _ in segs} | {segs[-1][1]}
        assert words and all(int(a) in bounds and int(b) in bounds for a, b, _ in words)
        assert len(words) == len(txt[2].split())


def test_deterministic_for_a_seed(tmp_path):
    generate_corpus(tmp_path / "a", ONE)
    generate_corpus(tmp_path / "b", ONE)
    generate_corpus(tmp_path / "c", GeneratorParams(**{**ONE.__dict__, "seed": 4}))
    a, b, c = (_files(tmp_path / x) for x in "abc")
    assert a == b
    assert a != c
    wavs = [k for k in a if k.endswith(".WAV") and k in c]
    assert any(a[k] != c[k] for k in wavs)


def test_ensure_reuses_and_refuses_other_settings(tmp_path, caplog):
    root = tmp_path / "builtin_timit"
    params = {k: getattr(ONE, k) for k in ONE.__dataclass_fields__}
    with caplog.at_level(logging.INFO, logger="recipes"):
        ensure_builtin_corpus(root, **params)
        assert (root / MARKER).is_file()
        mtime = (root / MARKER).stat().st_mtime_ns
        caplog.clear()
        ensure_builtin_corpus(root, **params)
        assert "reusing built-in TIMIT corpus" in caplog.text
        assert (root / MARKER).stat().st_mtime_ns == mtime
        with pytest.raises(CorpusSettingsMismatch, match="seed"):  # never overwritten
            ensure_builtin_corpus(root, **{**params, "seed": 9})
        assert f'"seed": {params["seed"]}' in (root / MARKER).read_text()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".builtin_timit.")] == [
        ".builtin_timit.lock"
    ]  # no temporary or stale folders left
    foreign = tmp_path / "foreign"
    (foreign / "TRAIN").mkdir(parents=True)
    with pytest.raises(RuntimeError, match="not a built-in corpus"):
        ensure_builtin_corpus(foreign, **params)


def test_interrupted_generation_leaves_nothing(tmp_path, monkeypatch):
    import recipes.timit.builtin.generate as gen

    def boom(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(gen, "synthesize", boom)
    with pytest.raises(KeyboardInterrupt):
        ensure_builtin_corpus(tmp_path / "c", seed=1, num_train_speakers=1, num_dev_speakers=1,
                              num_test_speakers=1, sentences_per_speaker=1)  # fmt: skip
    assert not (tmp_path / "c").exists()
    assert [p.name for p in tmp_path.iterdir()] == [".c.lock"]


def _frames_by_phone(root: Path) -> dict[str, list[torch.Tensor]]:
    """Mean log-mel vector of each phone token in the tiny corpus (middle frames)."""
    cfg = FeatureConfig(num_mel_bins=40)
    out: dict[str, list[torch.Tensor]] = {}
    for wav in sorted(root.glob("*/*/*/*.WAV")):
        feats = compute_fbank(load_waveform(wav), cfg)
        segs = [ln.split() for ln in wav.with_suffix(".PHN").read_text().splitlines()]
        fsegs = frame_segments(
            [(int(a), int(b), p) for a, b, p in segs],
            feats.shape[0], cfg.length_samples, cfg.shift_samples,
        )  # fmt: skip
        for a, b, p in fsegs:
            if b - a >= 3:
                out.setdefault(p, []).append(feats[a + 1 : b - 1].mean(0))
    return out


def test_phone_classes_are_acoustically_distinct(tiny_corpus):
    tokens = _frames_by_phone(tiny_corpus)
    mean = {p: torch.stack(v).mean(0) for p, v in tokens.items()}
    high = slice(30, 40)  # upper mel bins (~4.5-8 kHz)
    low = slice(0, 15)
    tilt = {p: float(m[high].mean() - m[low].mean()) for p, m in mean.items()}
    for fric in ("s", "sh", "z"):
        for vowel in ("iy", "aa", "ae", "ow"):
            if fric in tilt and vowel in tilt:
                assert tilt[fric] > tilt[vowel] + 3.0, (fric, vowel)
    assert float(mean["aa"][low].mean()) > float(mean["h#"][low].mean()) + 3  # vowel vs silence
    assert float(mean["s"][high].mean()) > float(mean["h#"][high].mean()) + 3  # s vs silence
    # class separation: tokens of a phone are closer to their own mean than to other classes'
    classes = [
        p for p in ("iy", "aa", "s", "sh", "m", "n", "h#", "w") if len(tokens.get(p, [])) >= 4
    ]
    assert len(classes) >= 6
    within, across = [], []
    for p in classes:
        t = torch.stack(tokens[p])
        within.append(float((t - mean[p]).norm(dim=1).mean()))
        across += [float((t - mean[q]).norm(dim=1).mean()) for q in classes if q != p]
    assert np.mean(across) > 1.5 * np.mean(within)


def test_tiny_params_are_valid():
    GeneratorParams(**TINY_PARAMS)
    with pytest.raises(ValueError):
        GeneratorParams(num_dev_speakers=51)
