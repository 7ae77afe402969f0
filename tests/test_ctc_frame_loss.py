"""The CTC task's auxiliary frame cross-entropy: the loss itself, the training step, the data
it needs and the configuration that turns it on or off."""

import warnings

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from recipes.timit.data import label_maps
from recipes.timit.phones import phone_set
from recipes.timit.train import ctc_task
from recipes.toolkit.config import register_resolvers
from recipes.toolkit.ctc.frame_loss import CTCFrameDataModule, CTCFrameDataset, frame_cross_entropy
from recipes.toolkit.ctc.module import CTCRecognizer
from recipes.toolkit.data.datamodule import SpeechDataModule, UtteranceDataset
from recipes.toolkit.data.prepared import PreparedCorpus, PreparedSplit
from recipes.toolkit.framewise.data import IGNORE_INDEX, collate_frames
from tests.recipe_helpers import REPO

TASK_CONF = REPO / "recipes" / "timit" / "conf"


def log_probs_of(logits: torch.Tensor) -> torch.Tensor:
    return torch.log_softmax(logits, dim=-1)


def test_frame_loss_is_the_label_cross_entropy_without_the_blank():
    torch.manual_seed(0)
    logits = torch.randn(2, 5, 4, dtype=torch.float64)
    targets = torch.tensor([[0, 2, 1, 1, IGNORE_INDEX], [2, 2, 0, IGNORE_INDEX, IGNORE_INDEX]])
    expected, count = 0.0, 0
    for b in range(2):
        for t in range(5):
            if targets[b, t] != IGNORE_INDEX:  # softmax over the 3 labels only, by hand
                labels = logits[b, t, 1:].exp()
                expected -= float(torch.log(labels[targets[b, t]] / labels.sum()))
                count += 1
    loss = frame_cross_entropy(log_probs_of(logits), targets)
    assert float(loss) == pytest.approx(expected / count, rel=1e-6)


def test_frame_loss_leaves_the_blank_and_padded_frames_alone():
    torch.manual_seed(1)
    logits = torch.randn(2, 6, 5, requires_grad=True)
    targets = torch.tensor([[0, 1, 2, 3, 3, 0], [1, 1, 2, IGNORE_INDEX, IGNORE_INDEX, -100]])
    frame_cross_entropy(log_probs_of(logits), targets).backward()
    assert logits.grad[..., 0].abs().max() < 1e-7  # the blank: CTC alone decides it
    assert logits.grad[1, 3:].abs().max() == 0  # padding
    assert logits.grad[..., 1:].abs().max() > 1e-3
    moved = logits.detach().clone()
    moved[1, 3:] = 50 * torch.randn(3, 5)  # garbage in the padding
    moved[..., 0] += 7.0  # a much likelier blank everywhere
    same = frame_cross_entropy(log_probs_of(moved), targets)
    before = frame_cross_entropy(log_probs_of(logits.detach()), targets)
    assert float(same) == pytest.approx(float(before), rel=1e-5)


def tiny_batch(num_labels: int) -> dict:
    torch.manual_seed(2)
    lengths = torch.tensor([9, 6])
    frame_targets = torch.randint(0, num_labels, (2, 9))
    frame_targets[1, 6:] = IGNORE_INDEX
    return {
        "feats": torch.randn(2, 9, 4),
        "lengths": lengths,
        "targets": torch.tensor([1, 2, 3, 2, 1]),
        "target_lengths": torch.tensor([3, 2]),
        "frame_targets": frame_targets,
        "utt_ids": ["a", "b"],
    }


def test_training_step_adds_the_weighted_frame_loss():
    phones = ["a", "b", "c"]
    batch = tiny_batch(len(phones))
    rnn = {"name": "gru", "hidden_size": 8}
    torch.manual_seed(3)
    weighted = CTCRecognizer(phones, 4, rnn, frame_loss_weight=0.5)
    plain = CTCRecognizer(phones, 4, rnn)
    plain.load_state_dict(weighted.state_dict())
    weighted.eval(), plain.eval()  # no dropout: both see the same outputs
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*self.log.*")  # no Trainer to log to
        total = weighted.training_step(batch, 0)
        ctc = plain.training_step(batch, 0)
        log_probs = weighted(batch["feats"], batch["lengths"])
        frame = frame_cross_entropy(log_probs, batch["frame_targets"])
        expected = float(ctc.detach()) + 0.5 * float(frame.detach())
        assert float(total.detach()) == pytest.approx(expected, rel=1e-5)
        assert float(frame) > 0.1
        del batch["frame_targets"]
        assert plain.training_step(batch, 0) is not None  # CTC alone needs no frame targets
        with pytest.raises(ValueError, match="frame targets"):
            weighted.training_step(batch, 0)
    assert weighted.hparams.frame_loss_weight == 0.5  # kept in the checkpoint
    with pytest.raises(ValueError, match="frame_loss_weight must be >= 0"):
        CTCRecognizer(phones, 4, rnn, frame_loss_weight=-1.0)


def corpus_of(frames: list[int]) -> PreparedCorpus:
    """A training split whose second utterance has 3 frames for 3 labels ("aa aa ix"), fewer
    than CTC needs (a blank between the two aa) but enough for frame targets."""
    segments = [
        [(0, 4, "h#"), (4, frames[0] - 2, "aa"), (frames[0] - 2, frames[0], "h#")],
        [(0, 1, "aa"), (1, 2, "aa"), (2, frames[1], "ix")],
    ]
    phones = [[p for _, _, p in s] for s in segments]
    split = PreparedSplit(
        utt_ids=["u1", "u2"],
        speakers=["s1", "s2"],
        feats=[torch.randn(n, 3) for n in frames],
        phones=phones,
        segments=segments,
        times=None,
    )
    return PreparedCorpus(splits={"train": split}, feature_dim=3, train_phones=[], summary="")


def test_frame_data_module_serves_frame_targets_and_keeps_ctc_s_frame_limit():
    maps = label_maps(48, 39)
    dataset = CTCFrameDataset(corpus_of([12, 3]).splits["train"], maps)
    assert CTCFrameDataset.min_frames([3, 3]) == UtteranceDataset.min_frames([3, 3]) == 3
    batch = collate_frames([dataset[0], dataset[1]])
    assert batch["frame_targets"].shape == (2, 12)
    assert batch["frame_targets"][1, 3:].tolist() == [IGNORE_INDEX] * 9
    sil, aa = maps.labels.index("sil"), maps.labels.index("aa")
    assert batch["frame_targets"][0].tolist() == [sil] * 4 + [aa] * 6 + [sil] * 2
    # the CTC targets are the frame targets' labels, 1-based
    assert batch["targets"][:3].tolist() == [sil + 1, aa + 1, sil + 1]
    module = CTCFrameDataModule(lambda: corpus_of([12, 3]), maps, max_frames=100)
    with pytest.raises(ValueError, match="train/u2: 3 frames, fewer than the 4"):
        module.load()  # aa aa ix: frame targets would take it, CTC cannot


def compose_train(*overrides: str):
    register_resolvers()
    with initialize_config_dir(config_dir=str(TASK_CONF), version_base="1.3"):
        return compose("train", overrides=list(overrides))


def test_configuration_turns_the_frame_loss_on_and_off():
    kind, options = ctc_task(compose_train())
    assert kind is CTCFrameDataModule and options == {"frame_loss_weight": 0.5}
    kind, options = ctc_task(compose_train("frame_loss_weight=0"))
    assert kind is SpeechDataModule and options == {"frame_loss_weight": 0.0}
    preset = compose_train("experiment=speechbrain_crdnn_ligru")
    assert preset.frame_loss_weight == 0  # a preset can set it: CTC alone, as SpeechBrain
    assert ctc_task(preset)[0] is SpeechDataModule
    waveform = compose_train("augment=waveform")
    with pytest.raises(ValueError, match="frame_loss_weight=0"):
        CTCFrameDataModule(lambda: None, label_maps(48, 39), 100,
                           augment=instantiate(waveform.augment))  # fmt: skip


def test_frame_loss_trains_the_label_distribution():
    """A few steps on one batch whose features name each frame's phone: with the frame loss the
    label distribution learns the frame targets, with CTC alone it has not yet (the point of
    it: CTC's blank plateau)."""
    phones = phone_set(48)[:6]
    torch.manual_seed(5)
    runs = [[0, 0, 0, 3, 3, 3, 5, 5, 1], [2, 2, 4, 4, 4, 1, IGNORE_INDEX, IGNORE_INDEX, -100]]
    frame_targets = torch.tensor(runs)
    codes = torch.randn(len(phones), 4)
    batch = {
        "feats": codes[frame_targets.clamp(min=0)] + 0.1 * torch.randn(2, 9, 4),
        "lengths": torch.tensor([9, 6]),
        "targets": torch.tensor([1, 4, 6, 2, 3, 5, 2]),
        "target_lengths": torch.tensor([4, 3]),
        "frame_targets": frame_targets,
        "utt_ids": ["a", "b"],
    }
    accuracy = {}
    for weight in (0.0, 1.0):
        torch.manual_seed(4)
        module = CTCRecognizer(phones, 4, {"name": "ligru", "hidden_size": 16},
                               model={"output_dropout": 0.0}, frame_loss_weight=weight)  # fmt: skip
        optimizer = torch.optim.Adam(module.parameters(), lr=1e-2)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*self.log.*")
            for _ in range(30):
                loss = module.training_step(batch, 0)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
        module.eval()
        with torch.no_grad():
            labels = module(batch["feats"], batch["lengths"])[..., 1:].argmax(dim=-1)
        valid = frame_targets != IGNORE_INDEX
        accuracy[weight] = float((labels == frame_targets)[valid].float().mean())
    assert accuracy[1.0] > 0.9 > accuracy[0.0] + 0.2, accuracy
