"""The Lightning module of CTC label recognition: CTC loss, greedy or beam decoding."""

import torch
import torch.nn.functional as F

from recipes.toolkit.ctc.decoding import BigramLM, greedy_decode, prefix_beam_search
from recipes.toolkit.ctc.frame_loss import frame_cross_entropy
from recipes.toolkit.recognizer import SpeechRecognizer


class CTCRecognizer(SpeechRecognizer):
    """CTC recogniser over any rnnlib encoder; error rate on the scoring set of ``score_map``.

    Takes the arguments of :class:`~recipes.toolkit.recognizer.SpeechRecognizer`; ``decoding``
    is ``method`` (greedy, beam), ``beam_width``, ``lm_weight``, ``insertion_bonus``. Outputs are
    the blank (0) and the labels (1..N). ``frame_loss_weight`` > 0 adds that times the frame
    cross-entropy of :mod:`recipes.toolkit.ctc.frame_loss` to the CTC loss (batches must then
    carry ``frame_targets``: :class:`~recipes.toolkit.ctc.frame_loss.CTCFrameDataModule`).

    Example:
        >>> module = CTCRecognizer(["a", "b"], 4, {"name": "gru", "hidden_size": 8})
        >>> log_probs = module(torch.randn(1, 6, 4), torch.tensor([6]))
        >>> log_probs.shape  # blank + 2 phones
        torch.Size([1, 6, 3])
    """

    decoding_methods = ("greedy", "beam")
    default_decoding = {"method": "greedy"}

    @staticmethod
    def num_outputs(num_labels: int) -> int:
        return num_labels + 1  # the blank and the labels

    def __init__(self, *args, frame_loss_weight: float = 0.0, **kwargs):
        super().__init__(*args, **kwargs)
        if frame_loss_weight < 0:
            raise ValueError(f"frame_loss_weight must be >= 0, got {frame_loss_weight}")
        self.hparams["frame_loss_weight"] = float(frame_loss_weight)
        outputs = self.num_outputs(len(self.phones))
        self.register_buffer("bigram", torch.zeros(outputs, outputs))

    def set_bigram(self, lm: BigramLM) -> None:
        """Keep the phone bigram (estimated from training transcripts) inside the checkpoint."""
        self.bigram.copy_(lm.table)

    @property
    def dev_decoding(self) -> str:
        return "greedy"  # the dev PER of every epoch; beam search only when evaluating

    def decode(self, log_probs: torch.Tensor, lengths: torch.Tensor, method: str | None = None):
        """Phone sequences (training set symbols) for a batch of log-probabilities."""
        options = dict(self.hparams.decoding)
        method = method or options.get("method", "greedy")
        if method == "greedy":
            ids = greedy_decode(log_probs, lengths)
        elif method == "beam":
            lm_weight = float(options.get("lm_weight", 0.0))
            ids = prefix_beam_search(
                log_probs,
                lengths,
                beam_width=int(options.get("beam_width", 8)),
                lm=BigramLM(self.bigram.cpu()) if lm_weight else None,
                lm_weight=lm_weight,
                insertion_bonus=float(options.get("insertion_bonus", 0.0)),
            )
        else:
            raise ValueError(f"decoding.method must be greedy or beam, got {method!r}")
        return [[self.phones[i - 1] for i in seq] for seq in ids]

    def training_step(self, batch: dict, batch_idx: int):
        log_probs = self(batch["feats"], batch["lengths"])
        loss = F.ctc_loss(
            log_probs.transpose(0, 1).float(),
            batch["targets"],
            batch["lengths"],
            batch["target_lengths"],
            blank=0,
            reduction="mean",
        )
        weight = self.hparams.frame_loss_weight
        if weight:
            if "frame_targets" not in batch:
                raise ValueError(
                    "frame_loss_weight > 0 needs batches with frame targets: train with "
                    "recipes.toolkit.ctc.frame_loss.CTCFrameDataModule"
                )
            frame_loss = frame_cross_entropy(log_probs, batch["frame_targets"])
            size = len(batch["lengths"])
            self.log("train_ctc_loss", loss.detach(), on_epoch=True, batch_size=size)
            self.log("train_frame_loss", frame_loss.detach(), on_epoch=True, batch_size=size)
            loss = loss + weight * frame_loss
        return self.guard_loss(loss, batch)
