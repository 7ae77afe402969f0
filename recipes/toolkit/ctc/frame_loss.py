"""An auxiliary frame cross-entropy for CTC training, from the corpus's phone segments.

CTC alone first learns to emit only blanks (the "blank plateau": training loss flat, PER near
100 %) and how long it stays there depends on the seed. A corpus with time-aligned phones
(TIMIT's ``.PHN`` files) can tell the encoder which phone every frame belongs to from the first
step. :func:`frame_cross_entropy` scores the CTC outputs' *label* distribution at every frame
(the blank left out and the rest renormalised) against the frame's phone: it trains "which
phone is here" and leaves CTC free to decide where to emit it (blank versus label), so the two
criteria do not compete. Decoding stays pure CTC; the weight is ``frame_loss_weight`` of
:class:`~recipes.toolkit.ctc.module.CTCRecognizer`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from recipes.toolkit.data.datamodule import UtteranceDataset
from recipes.toolkit.framewise.data import IGNORE_INDEX, FramewiseDataModule, FramewiseDataset


def frame_cross_entropy(log_probs: torch.Tensor, frame_targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of the label distribution (blank, output 0, removed) against 0-based
    frame targets; frames with :data:`IGNORE_INDEX` (padding) do not count.

    Args:
        log_probs: CTC log-probabilities ``[batch, time, 1 + labels]``.
        frame_targets: ``[batch, time]`` label ``0..labels-1`` of every frame.

    >>> log_probs = torch.log(torch.tensor([[[0.8, 0.15, 0.05], [0.5, 0.0, 0.5]]]))
    >>> loss = frame_cross_entropy(log_probs, torch.tensor([[0, -100]]))
    >>> round(float(loss), 4)  # -log(0.15 / 0.2): the blank's 0.8 does not count
    0.2877
    """
    labels = log_probs[..., 1:].float()
    labels = labels - torch.logsumexp(labels, dim=-1, keepdim=True)
    return F.nll_loss(labels.flatten(0, 1), frame_targets.flatten(), ignore_index=IGNORE_INDEX)


class CTCFrameDataset(FramewiseDataset):
    """CTC items with ``frame_targets`` as well; an utterance still needs the frames its CTC
    alignment needs."""

    min_frames = staticmethod(UtteranceDataset.min_frames)


class CTCFrameDataModule(FramewiseDataModule):
    """The CTC task's data module when the frame loss is on: batches carry ``frame_targets``
    (augment=waveform refused: speed perturbation moves the frames)."""

    dataset_class = CTCFrameDataset
