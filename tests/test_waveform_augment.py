"""augment=waveform: speed perturbation, frequency and chunk dropping, features computed afresh
from the augmented audio of every training item, seeded from (seed, epoch, index)."""

import math

import pytest
import torch
from lightning.fabric.utilities.data import _set_sampler_epoch

from recipes.timit.data import timit_datamodule
from recipes.toolkit.data.datamodule import UtteranceDataset
from recipes.toolkit.data.feature_config import FeatureConfig, compute_fbank
from recipes.toolkit.data.waveform_augment import WaveformAugment, item_generator
from recipes.toolkit.data.waveform_features import AugmentedFeatures
from recipes.toolkit.framewise.data import FramewiseDataModule
from tests.recipe_helpers import SMALL_CORPUS, load_script, results, run_entry

RATE = 16000
NONE = {"speeds": [100], "drop_freq_prob": 0.0, "drop_chunk_prob": 0.0}  # an identity


def noise(seconds: float = 2.0, seed: int = 0) -> torch.Tensor:
    return torch.randn(1, int(RATE * seconds), generator=torch.Generator().manual_seed(seed)) * 1e3


def band_energy(wave: torch.Tensor, low: float, high: float) -> float:
    spectrum = torch.fft.rfft(wave[0].double()).abs() ** 2
    freqs = torch.fft.rfftfreq(wave.shape[-1], 1 / RATE)
    return float(spectrum[(freqs >= low) & (freqs < high)].sum())


def peak_hz(wave: torch.Tensor) -> float:
    spectrum = torch.fft.rfft(wave[0].double()).abs()
    return float(torch.fft.rfftfreq(wave.shape[-1], 1 / RATE)[spectrum.argmax()])


def test_speed_perturbation_scales_the_frames_and_the_pitch():
    aug, cfg, wave = WaveformAugment(), FeatureConfig(), noise(3.0)
    frames = compute_fbank(wave, cfg).shape[0]
    tone = torch.sin(2 * math.pi * 1000 * torch.arange(3 * RATE) / RATE)[None] * 1e3
    for speed in (95, 105):
        out = aug.perturb_speed(wave, speed)
        assert out.shape[-1] == math.ceil(wave.shape[-1] * speed / 100)
        assert abs(compute_fbank(out, cfg).shape[0] - frames * speed / 100) <= 2
        # the same sound played at another speed: a 1 kHz tone lands at 1000 * 100 / speed Hz
        assert peak_hz(aug.perturb_speed(tone, speed)) == pytest.approx(1e5 / speed, abs=1.0)
    assert aug.perturb_speed(wave, 100) is wave
    drawn = {aug.draw_speed(item_generator(0, 0, i)) for i in range(40)}
    assert drawn == {95, 100, 105}
    assert {WaveformAugment(speed_prob=0.0).draw_speed(item_generator(0, 0, i))
            for i in range(20)} == {100}  # fmt: skip


def test_chunk_dropping_zeroes_exactly_the_chosen_samples_within_the_utterance():
    aug = WaveformAugment(speeds=[100], drop_freq_prob=0.0, drop_chunk_count=[3, 5])
    wave = noise(1.0) + 5e3  # no sample is zero
    out = aug(wave, item_generator(3, 1, 4))
    replay = item_generator(3, 1, 4)  # the same draws, in __call__'s order
    aug.draw_speed(replay)
    aug.draw_bands(replay)
    chunks = aug.draw_chunks(wave.shape[-1], replay)
    assert 3 <= len(chunks) <= 5
    chosen = torch.zeros(wave.shape[-1], dtype=torch.bool)
    for start, end in chunks:
        assert 0 <= start and 1000 <= end - start <= 2000 and end <= wave.shape[-1]
        chosen[start:end] = True
    assert (out[0, chosen] == 0).all()
    assert torch.equal(out[0, ~chosen], wave[0, ~chosen])
    short = noise(0.03) + 5e3  # 480 samples, shorter than any chunk: all of it, nothing beyond
    spans = aug.draw_chunks(short.shape[-1], item_generator(0, 0, 0))
    assert spans and all(span == (0, 480) for span in spans)
    dropped = aug.drop_chunks(short, spans)
    assert dropped.shape == short.shape and not dropped.any()


def test_band_stop_removes_the_chosen_band_and_keeps_a_far_one():
    aug = WaveformAugment(drop_freq_width_hz=400.0)
    wave = noise(2.0, seed=1)
    out = aug.drop_freq(wave, [2000.0])
    assert out.shape == wave.shape and out.dtype == wave.dtype
    assert band_energy(out, 1900, 2100) < 0.1 * band_energy(wave, 1900, 2100)
    assert band_energy(out, 1800, 2200) < 0.3 * band_energy(wave, 1800, 2200)
    far = band_energy(out, 5000, 6000) / band_energy(wave, 5000, 6000)
    assert 0.97 < far < 1.03
    t = torch.arange(2 * RATE) / RATE
    tones = (torch.sin(2 * math.pi * 2000 * t) + torch.sin(2 * math.pi * 5500 * t))[None] * 1e4
    kept = aug.drop_freq(tones, [2000.0])[:, RATE:]  # past the filter's onset
    assert band_energy(kept, 1990, 2010) < 1e-4 * band_energy(tones[:, RATE:], 1990, 2010)
    assert band_energy(kept, 5490, 5510) > 0.98 * band_energy(tones[:, RATE:], 5490, 5510)
    two = aug.drop_freq(wave, [2000.0, 4000.0])  # several bands: one filter, each band stopped
    assert band_energy(two, 3900, 4100) < 0.1 * band_energy(wave, 3900, 4100)
    assert band_energy(two, 1900, 2100) < 0.1 * band_energy(wave, 1900, 2100)
    assert 0.97 < band_energy(two, 5500, 6500) / band_energy(wave, 5500, 6500) < 1.03
    centres = {round(c) for i in range(30) for c in aug.draw_bands(item_generator(0, 0, i))}
    assert centres and all(200 <= c <= 7800 for c in centres)
    assert WaveformAugment(drop_freq_prob=0.0).draw_bands(item_generator(0, 0, 1)) == []


def test_the_same_seed_epoch_and_index_give_the_same_waveform():
    aug, wave = WaveformAugment(), noise(1.5)
    first = aug(wave, item_generator(7, 2, 11))
    assert torch.equal(first, aug(wave, item_generator(7, 2, 11)))
    for other in ((7, 3, 11), (7, 2, 12), (8, 2, 11)):
        again = aug(wave, item_generator(*other))
        assert again.shape != first.shape or not torch.equal(again, first), other


def test_bad_settings_are_named():
    with pytest.raises(ValueError, match="augment.speeds"):
        WaveformAugment(speeds=[0, 100])
    with pytest.raises(ValueError, match="augment.drop_chunk_count"):
        WaveformAugment(drop_chunk_count=[4, 2])
    with pytest.raises(ValueError, match="augment.drop_freq_prob"):
        WaveformAugment(drop_freq_prob=1.5)


# ----- the data module on a small generated corpus ----------------------------------------------
@pytest.fixture(scope="module")
def small(data_dir):
    bench = load_script("bench_recipe")
    return bench.compose_config("ligru", ["augment=waveform", *SMALL_CORPUS], data_dir)


def datamodule(cfg, **augment):
    return timit_datamodule(cfg.data, cfg.features, cfg.seed, 1, {**cfg.augment, **augment})


def test_without_augmentation_the_fresh_features_are_the_cached_normalised_ones(small):
    dm = datamodule(small, **NONE)
    loader = dm.train_dataloader()
    dataset = loader.dataset
    assert isinstance(dataset, AugmentedFeatures)
    cached = dm.load().splits["train"].feats
    assert dm.load().stats is not None  # global normalisation with the training statistics
    for i in range(len(dataset)):
        assert torch.equal(dataset[(4, i)]["feats"], cached[i]), i


def test_training_items_are_augmented_per_epoch_and_reproducible(small):
    dm, again = datamodule(small), datamodule(small)
    loader = dm.train_dataloader()
    dataset, plain = loader.dataset, UtteranceDataset(dm.load().splits["train"], dm.maps)
    changed_length = 0
    for i in range(len(dataset)):
        item = dataset[(0, i)]
        assert torch.equal(item["feats"], again.train_dataloader().dataset[(0, i)]["feats"])
        assert torch.equal(item["targets"], plain[i]["targets"])  # the phones stay
        other = dataset[(1, i)]["feats"]
        assert other.shape != item["feats"].shape or not torch.equal(other, item["feats"])
        changed_length += item["feats"].shape[0] != plain[i]["feats"].shape[0]
    assert changed_length  # some utterance's speed changed
    _set_sampler_epoch(loader, 3)  # what Lightning does at the start of epoch 3
    batch = next(iter(loader))
    first = batch["utt_ids"][0]
    index = dm.load().splits["train"].utt_ids.index(first)
    expected = dataset[(3, index)]["feats"]
    assert torch.equal(batch["feats"][0, : len(expected)], expected)
    assert len(batch["lengths"]) * int(batch["lengths"].max()) <= dm.max_frames
    assert dm.on_after_batch_transfer(batch, 0) is batch
    assert type(dm.val_dataloader().dataset) is UtteranceDataset  # dev and test: the cache


def test_the_framewise_task_refuses_waveform_augmentation(small):
    with pytest.raises(ValueError, match="augment=waveform changes the number of frames"):
        timit_datamodule(small.data, small.features, 1, 1, small.augment,
                         kind=FramewiseDataModule)  # fmt: skip


@pytest.mark.slow
def test_recipe_trains_and_evaluates_with_waveform_augmentation_and_the_crdnn(data_dir, tmp_path):
    run_dir = tmp_path / "run"
    tiny = ["rnn.hidden_size=16", "rnn.num_layers=1", "trainer.max_epochs=1",
            "model=crdnn", "model.conv2d_channels=[4,4]", "model.dnn_sizes=[16]"]  # fmt: skip
    # CTC alone: speed perturbation moves the frames the frame loss would need
    overrides = ["augment=waveform", "frame_loss_weight=0", *SMALL_CORPUS, *tiny]
    run_entry("train", overrides, data_dir, run_dir)
    assert "WaveformAugment" in (run_dir / ".hydra" / "config.yaml").read_text()
    res = results(run_dir)
    assert res["eval"]["dev"]["phones"] > 0 and res["eval"]["test"]["phones"] > 0
    saved = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu",
                       weights_only=False)  # fmt: skip
    assert saved["global_step"] > 0
    assert saved["hyper_parameters"]["model"]["conv2d_channels"] == [4, 4]
