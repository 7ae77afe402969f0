"""Filterbank features, their on-disk cache, normalisation and labels via prepare_corpus."""

import logging
from pathlib import Path

import pytest
import torch
import torchaudio

import recipes.toolkit.data.features as features
from recipes.timit.prepare import prepare_corpus
from recipes.toolkit.data.fbank import KaldiFbank
from recipes.toolkit.data.feature_config import FeatureConfig, compute_fbank
from recipes.toolkit.data.features import load_waveform

FBANK40 = {"num_mel_bins": 40, "frame_length_ms": 25.0, "frame_shift_ms": 10.0, "dither": 0.0,
           "deltas": 0, "normalization": "global"}  # fmt: skip


def test_matches_torchaudio_kaldi_fbank(tiny_corpus):
    wav = sorted(tiny_corpus.glob("TRAIN/*/*/SX*.WAV"))[0]
    x = load_waveform(wav)
    ours = compute_fbank(x, FeatureConfig(num_mel_bins=23))
    ref = torchaudio.compliance.kaldi.fbank(x, num_mel_bins=23, dither=0.0)
    assert ours.shape == ref.shape == (1 + (x.shape[1] - 400) // 160, 23)
    torch.testing.assert_close(ours, ref)
    with_deltas = compute_fbank(x, FeatureConfig(num_mel_bins=23, deltas=2))
    assert with_deltas.shape == (ref.shape[0], 69)
    torch.testing.assert_close(with_deltas[:, :23], ref)
    d1 = torchaudio.functional.compute_deltas(ref.T.unsqueeze(0))[0].T
    torch.testing.assert_close(with_deltas[:, 23:46], d1)


def test_config_validation():
    with pytest.raises(ValueError):
        FeatureConfig(deltas=3)
    with pytest.raises(ValueError):
        FeatureConfig(normalization="utterance")
    assert FeatureConfig.from_mapping({**FBANK40, "name": "fbank40"}).dim == 40


def test_prepare_labels_and_global_normalisation(tiny_data_cfg):
    c = prepare_corpus(tiny_data_cfg, FBANK40)
    assert (
        c.feature_dim == 40
        and len(c.train_phones) == 48
        and c.train_phones == sorted(c.train_phones)
    )
    assert [len(c.splits[s]) for s in ("train", "dev", "test")] == [12, 6, 6]
    assert "utterances" in c.summary
    train = torch.cat(list(c.splits["train"].feats))
    assert train.dtype == torch.float32
    torch.testing.assert_close(train.mean(0), torch.zeros(40), atol=1e-4, rtol=0)
    torch.testing.assert_close(train.std(0), torch.ones(40), atol=1e-3, rtol=0)
    dev = torch.cat(list(c.splits["dev"].feats))
    assert dev.mean(0).abs().max() > 1e-3  # dev uses the training statistics, not its own
    for split in c.splits.values():
        for f, phones, segs, n in zip(split.feats, split.phones, split.segments, split.num_frames,
                                      strict=True):  # fmt: skip
            assert f.shape == (n, 40)
            assert "q" not in phones and phones[0] == "h#" and phones[-1] == "h#"
            assert segs[0][0] == 0 and segs[-1][1] == n
            assert all(
                a < b and b == c2 for (a, b, _), (c2, _, _) in zip(segs, segs[1:], strict=False)
            )


def test_speaker_and_no_normalisation(tiny_data_cfg):
    spk = prepare_corpus(tiny_data_cfg, {**FBANK40, "normalization": "speaker"})
    none = prepare_corpus(tiny_data_cfg, {**FBANK40, "normalization": "none"})
    split = spk.splits["dev"]
    for s in set(split.speakers):
        x = torch.cat([f for f, k in zip(split.feats, split.speakers, strict=True) if k == s])
        torch.testing.assert_close(x.mean(0), torch.zeros(40), atol=1e-4, rtol=0)
    raw = torch.cat(list(none.splits["train"].feats))
    assert raw.mean() > 5  # raw log-mel energies
    ref = compute_fbank(load_waveform(Path(_wav_of(tiny_data_cfg, none))), FeatureConfig())
    torch.testing.assert_close(none.splits["train"].feats[0], ref)


def _wav_of(cfg: dict, corpus) -> str:
    spk, utt = corpus.splits["train"].utt_ids[0].split("_")
    return str(next(Path(cfg["root"]).glob(f"TRAIN/*/{spk.upper()}/{utt.upper()}.WAV")))


def test_cache_is_reused(tiny_data_cfg, caplog):
    with caplog.at_level(logging.INFO, logger="recipes"):
        a = prepare_corpus(tiny_data_cfg, FBANK40)
        assert "computing features for train" in caplog.text
        files = sorted(Path(tiny_data_cfg["cache_dir"]).glob("*/*.f32"))
        assert [f.name for f in files] == ["dev.f32", "test.f32", "train.f32"]
        mtimes = [f.stat().st_mtime_ns for f in files]
        caplog.clear()
        b = prepare_corpus(tiny_data_cfg, {**FBANK40, "normalization": "speaker"})
    assert "computing features" not in caplog.text
    assert caplog.text.count("reusing cached features") == 3
    assert [f.stat().st_mtime_ns for f in files] == mtimes
    assert a.splits["dev"].utt_ids == b.splits["dev"].utt_ids
    # another feature config gets its own cache folder
    prepare_corpus(tiny_data_cfg, {**FBANK40, "num_mel_bins": 23})
    assert len(list(Path(tiny_data_cfg["cache_dir"]).iterdir())) == 2


def test_interrupted_write_leaves_no_trusted_cache(tiny_data_cfg, monkeypatch, caplog):
    real_fbank, calls = features.compute_fbank, []

    def fbank_until_interrupted(waveform, cfg):
        calls.append(1)
        if len(calls) == 5:  # features of earlier utterances are already in the file
            raise KeyboardInterrupt("interrupted mid-split")
        return real_fbank(waveform, cfg)

    monkeypatch.setattr(features, "compute_fbank", fbank_until_interrupted)
    with pytest.raises(KeyboardInterrupt):
        prepare_corpus(tiny_data_cfg, FBANK40)
    cache = Path(tiny_data_cfg["cache_dir"])
    assert not [p for p in cache.rglob("*") if p.is_file() and p.name not in (".lock",)]
    monkeypatch.setattr(features, "compute_fbank", real_fbank)
    with caplog.at_level(logging.INFO, logger="recipes"):
        c = prepare_corpus(tiny_data_cfg, FBANK40)
    assert "computing features for train" in caplog.text
    assert len(c.splits["train"]) == 12


def test_parallel_preparation_matches_serial(tiny_data_cfg, tmp_path):
    serial = prepare_corpus(tiny_data_cfg, FBANK40, num_workers=1)
    parallel = prepare_corpus({**tiny_data_cfg, "cache_dir": str(tmp_path / "par")}, FBANK40,
                              num_workers=2)  # fmt: skip
    for a, b in zip(serial.splits["test"].feats, parallel.splits["test"].feats, strict=True):
        torch.testing.assert_close(a, b)


def test_missing_root_in_config():
    with pytest.raises(ValueError, match="data.root"):
        prepare_corpus({"name": "timit", "root": "???"}, FBANK40)


@pytest.mark.parametrize("bins,length_ms,shift_ms", [(23, 25.0, 10.0), (40, 25.0, 10.0),
                                                     (80, 20.0, 5.0)])  # fmt: skip
def test_filterbank_equals_torchaudios_kaldi_fbank(bins, length_ms, shift_ms):
    bank = KaldiFbank(bins, length_ms, shift_ms)
    generator = torch.Generator().manual_seed(bins)
    window = bank.length
    for samples in (window, window + 1, window + bank.shift, 16000, 48731):
        wave = (torch.randn(1, samples, generator=generator) * 3000).round()
        wave[:, : samples // 3] *= 0.001  # a quiet stretch: small energies, the floor nearby
        expected = torchaudio.compliance.kaldi.fbank(
            wave, num_mel_bins=bins, frame_length=length_ms, frame_shift=shift_ms, dither=0.0,
            energy_floor=0.0, sample_frequency=16000,
        )  # fmt: skip
        got = bank(wave)
        assert got.shape == expected.shape and got.dtype == torch.float32
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=2e-5)
    assert bank(torch.zeros(1, window - 1)).shape == (0, bins)
