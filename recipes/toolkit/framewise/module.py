"""The Lightning module of framewise phone recognition: frame cross-entropy, phone-loop Viterbi.

Training classifies every frame into the training label set (targets from the segments, see
:mod:`recipes.toolkit.framewise.data`). Decoding divides the posteriors by the class prior and
runs Viterbi over a phone loop with bigram transitions (:class:`PhoneLoop`); the PER is scored
on the scoring set, like the CTC task. Evaluation also force-aligns each utterance to its
reference phones: frame accuracy, boundary accuracy within 10 / 20 / 40 ms and a CTM file.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torchmetrics.classification import MulticlassAccuracy

from recipes.toolkit.data.feature_config import SAMPLE_RATE, FeatureConfig
from recipes.toolkit.data.segments import frame_segments_to_seconds, frames_to_segments
from recipes.toolkit.framewise.alignment import boundaries, matched_boundaries, write_ctm
from recipes.toolkit.framewise.data import IGNORE_INDEX
from recipes.toolkit.framewise.viterbi import (
    PhoneLoop,
    collapse,
    count_transitions,
    normalise_bigram,
    normalise_counts,
)
from recipes.toolkit.recognizer import SpeechRecognizer, gather_records

# As conf/decoding/viterbi.yaml (where the values come from).
DEFAULT_DECODING = {
    "method": "viterbi",
    "acoustic_scale": 1.0,
    "prior_scale": 0.5,
    "self_loop_prob": 0.85,
}
TOLERANCES_MS = (10, 20, 40)


class FramewiseRecognizer(SpeechRecognizer):
    """Frame classifier over any rnnlib encoder, decoded by a phone-loop Viterbi search.

    Takes the arguments of :class:`~recipes.toolkit.recognizer.SpeechRecognizer`; ``decoding`` is
    ``method`` (``viterbi``, or ``greedy``: the best label of every frame, repeats merged),
    ``acoustic_scale`` (weight of the acoustic scores against the transitions), ``prior_scale``
    (the weight of the class prior the posteriors are divided by; 0 for none) and
    ``self_loop_prob`` (probability of staying in a phone from one frame to the next).

    Attributes:
        log_bigram, log_initial: the phone loop's bigram and first-phone distribution,
            estimated from the training transcriptions (:meth:`set_phone_loop`).
        log_prior: log class prior, from the training frame counts.

    Example:
        >>> module = FramewiseRecognizer(["a", "b", "c"], 4, {"name": "gru", "hidden_size": 8})
        >>> module.set_phone_loop([[0, 1, 2], [0, 2]], torch.tensor([10.0, 5.0, 5.0]))
        >>> log_probs = module(torch.randn(2, 6, 4), torch.tensor([6, 3]))
        >>> log_probs.shape  # one output per phone, no blank
        torch.Size([2, 6, 3])
        >>> [len(h) >= 1 for h in module.decode(log_probs, torch.tensor([6, 3]))]
        [True, True]
    """

    decoding_methods = ("viterbi", "greedy")
    default_decoding = DEFAULT_DECODING

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        count = len(self.phones)
        uniform = torch.full((count,), -math.log(count), dtype=torch.float64)
        self.register_buffer("log_bigram", torch.zeros(count, count, dtype=torch.float64))
        self.register_buffer("log_initial", uniform.clone())
        self.register_buffer("log_prior", uniform.clone())
        self.dev_frame_accuracy = MulticlassAccuracy(
            count, average="micro", ignore_index=IGNORE_INDEX
        )
        self.alignment_records: list[dict] = []

    # ----- decoding ----------------------------------------------------------------------------
    def set_phone_loop(self, phone_sequences: list[list[int]], frame_counts: torch.Tensor) -> None:
        """Estimate the bigram and first-phone distribution (add-one smoothed) from training
        label sequences (0-based), and the class prior from training frames per label."""
        bigram, initial = count_transitions(phone_sequences, len(self.phones))
        self.log_bigram.copy_(normalise_bigram(bigram, smoothing=1.0))
        self.log_initial.copy_(normalise_counts(initial, smoothing=1.0))
        self.log_prior.copy_(normalise_counts(frame_counts, smoothing=1.0))

    def phone_loop(self) -> PhoneLoop:
        """The decoder of the current decoding options."""
        options = {**DEFAULT_DECODING, **dict(self.hparams.decoding)}
        prior_scale = float(options["prior_scale"])
        return PhoneLoop(
            self.log_bigram.cpu(),
            self.log_initial.cpu(),
            self_loop_prob=float(options["self_loop_prob"]),
            acoustic_scale=float(options["acoustic_scale"]),
            log_prior=self.log_prior.cpu() * prior_scale if prior_scale else None,
        )

    def decode(self, log_probs: torch.Tensor, lengths: torch.Tensor, method: str | None = None):
        """Phone sequences (training set symbols) for a batch of frame log-posteriors."""
        method = method or self.hparams.decoding.get("method", "viterbi")
        if method == "viterbi":
            paths = self.phone_loop().decode_batch(log_probs, lengths.cpu())
        elif method == "greedy":
            best = log_probs.argmax(dim=-1).cpu()
            paths = [best[b, : int(n)].tolist() for b, n in enumerate(lengths.cpu())]
        else:
            raise ValueError(f"decoding.method must be viterbi or greedy, got {method!r}")
        return [[self.phones[i] for i in collapse(path)] for path in paths]

    # ----- training ----------------------------------------------------------------------------
    def training_step(self, batch: dict, batch_idx: int):
        log_probs = self(batch["feats"], batch["lengths"])
        loss = F.nll_loss(
            log_probs.flatten(0, 1).float(),
            batch["frame_targets"].flatten(),
            ignore_index=IGNORE_INDEX,
        )
        return self.guard_loss(loss, batch)

    def validation_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        log_probs = super().validation_step(batch, batch_idx)
        self.dev_frame_accuracy.update(log_probs.argmax(dim=-1), batch["frame_targets"])
        return log_probs

    def on_validation_epoch_end(self) -> None:
        accuracy = self.dev_frame_accuracy.compute()
        self.dev_frame_accuracy.reset()
        self.log("dev_frame_acc", 100.0 * accuracy.float(), sync_dist=False)
        super().on_validation_epoch_end()

    # ----- evaluation --------------------------------------------------------------------------
    def test_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        log_probs = super().test_step(batch, batch_idx)
        loop = self.phone_loop()
        geometry = FeatureConfig.from_mapping(self.hparams.features or {})
        for b, utt in enumerate(batch["utt_ids"]):
            length = int(batch["lengths"][b])
            x = log_probs[b, :length].detach().float().cpu()
            targets = batch["frame_targets"][b, :length].cpu()
            path = loop.align(x, collapse(targets.tolist()))
            segments = [
                (start, end, self.phones[label])
                for start, end, label in frame_segments_to_seconds(
                    frames_to_segments(path), length, geometry.length_samples,
                    geometry.shift_samples, SAMPLE_RATE,
                )
            ]  # fmt: skip
            reference = batch["reference_segments"][b]
            record = {
                "utt_id": utt,
                "segments": segments,
                "correct_frames": int((x.argmax(dim=-1) == targets).sum()),
                "frames": length,
                "reference_boundaries": None,
                "matched": None,
            }
            if reference is not None:
                expected, found = boundaries(reference), boundaries(segments)
                record["reference_boundaries"] = len(expected)
                record["matched"] = {
                    ms: matched_boundaries(expected, found, ms / 1000) for ms in TOLERANCES_MS
                }
            self.alignment_records.append(record)
        return log_probs

    def on_test_epoch_start(self) -> None:
        super().on_test_epoch_start()
        self.alignment_records = []

    def on_test_epoch_end(self) -> None:
        super().on_test_epoch_end()
        self.alignment_records = gather_records(self.alignment_records)

    def write_extra_evaluation(self, out_dir: Path, split: str) -> dict:
        """``<split>_alignments.ctm`` (forced alignments to the reference phones); returns frame
        accuracy and boundary accuracy (share of reference boundaries within 10/20/40 ms)."""
        records = sorted(self.alignment_records, key=lambda r: r["utt_id"])
        write_ctm(
            out_dir / f"{split}_alignments.ctm",
            [
                (r["utt_id"], start, end - start, phone)
                for r in records
                for start, end, phone in r["segments"]
            ],
        )
        frames = sum(r["frames"] for r in records)
        result = {
            "frame_accuracy": round(100.0 * sum(r["correct_frames"] for r in records) / frames, 4)
        }
        scored = [r for r in records if r["reference_boundaries"] is not None]
        total = sum(r["reference_boundaries"] for r in scored)
        if scored and total:
            result["boundary_accuracy"] = {
                f"{ms}ms": round(100.0 * sum(r["matched"][ms] for r in scored) / total, 4)
                for ms in TOLERANCES_MS
            }
            result["boundaries"] = total
        return result
