"""What every recogniser of the toolkit shares, whatever its training criterion.

A task's recogniser (:class:`~recipes.toolkit.ctc.module.CTCRecognizer`,
:class:`~recipes.toolkit.framewise.module.FramewiseRecognizer`) subclasses
:class:`SpeechRecognizer` and supplies the loss (``training_step``) and ``decode``; the base keeps
the hyperparameters, the acoustic model, the training data's feature statistics, the dev and test
error rates on the scoring set, the per-utterance test records, the non-finite-loss guard, and
the optimizer and schedules.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import lightning as L
import torch
import torch.distributed as dist
from omegaconf import DictConfig, OmegaConf

from recipes.toolkit.evaluation.scoring import PhoneErrorRate, apply_score_map, count_errors
from recipes.toolkit.model import AcousticModel
from recipes.toolkit.optim import build_epoch_schedule, build_optimizer, lightning_scheduler

log = logging.getLogger(__name__)

DEFAULT_OPTIM = {"_target_": "torch.optim.Adam", "_partial_": True, "lr": 1e-3}


def plain(config: Mapping | DictConfig | None) -> dict:
    """A plain ``dict`` copy of a (possibly OmegaConf) mapping.

    >>> plain(OmegaConf.create({"a": 1})), plain(None)
    ({'a': 1}, {})
    """
    if config is None:
        return {}
    if isinstance(config, DictConfig):
        return OmegaConf.to_container(config, resolve=True)  # type: ignore[return-value]
    return dict(config)


def gather_records(records: list) -> list:
    """Every rank's records, in rank order (the list itself outside DDP)."""
    if not (dist.is_available() and dist.is_initialized()):
        return records
    gathered: list = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, records)
    return [record for part in gathered for record in part]


class SpeechRecognizer(L.LightningModule):
    """Base of the task recognisers: an acoustic model with ``num_outputs`` log-probabilities per
    frame, scored by phone error rate on the scoring set of ``hparams.score_map``.

    Args:
        phones: the training label set.
        feature_dim: features per frame.
        rnn: rnnlib type (``name``) and its options.
        model: the acoustic model's settings (:class:`~recipes.toolkit.model.AcousticModel`:
            front end, output dropout, CRDNN blocks).
        optim: a partial ``_target_`` config of the optimizer (:mod:`recipes.toolkit.optim`).
        scheduler: a ``_target_`` config of the schedule, or empty for none.
        decoding: the task's decoding options (``method`` one of ``decoding_methods``).
        max_bad_steps: non-finite losses (each step skipped) tolerated in a row before the run
            stops; so many in all also stop it when they are more than ``max_bad_fraction`` of
            the steps.
        features: the feature configuration (kept so that eval and transcribe match it).
        score_map: training label -> scoring label (``""`` deletes it); ``None`` scores the
            training labels as they are.
        corpus: what the model was trained on (kind, root, training-list hash), for evaluation
            to say when it scores another corpus.

    Everything above is kept in the checkpoint. A subclass sets ``decoding_methods``,
    ``default_decoding`` and ``num_outputs``, adds its buffers after ``super().__init__``, and
    implements ``training_step`` (through :meth:`guard_loss`) and
    ``decode(log_probs, lengths, method) -> label sequences``.

    Attributes:
        feature_mean, feature_std: float64 global normalisation of the training data (zeros and
            ones when the features are normalised otherwise); evaluation and transcription
            normalise with exactly these.
        test_records: per-utterance ``utt_id``, ``speaker``, ``ref``, ``hyp``, ``errors`` of the
            last test run, gathered from every rank.
    """

    decoding_methods: tuple[str, ...] = ()  # the values of decoding.method it understands
    default_decoding: Mapping = {}  # the decoding options when none are given

    @staticmethod
    def num_outputs(num_labels: int) -> int:
        """Outputs of the acoustic model for ``num_labels`` training labels."""
        return num_labels

    def __init__(
        self,
        phones: list[str],
        feature_dim: int,
        rnn: Mapping,
        model: Mapping | None = None,
        optim: Mapping | None = None,
        scheduler: Mapping | None = None,
        decoding: Mapping | None = None,
        max_bad_steps: int = 5,
        max_bad_fraction: float = 0.1,
        features: Mapping | None = None,
        score_map: Mapping[str, str] | None = None,
        corpus: Mapping[str, str] | None = None,
    ):
        super().__init__()
        self.save_hyperparameters(
            {
                "phones": list(phones),
                "feature_dim": feature_dim,
                "rnn": plain(rnn),
                "model": plain(model),
                "optim": plain(optim) or dict(DEFAULT_OPTIM),
                "scheduler": plain(scheduler),
                "decoding": plain(decoding) or dict(self.default_decoding),
                "max_bad_steps": max_bad_steps,
                "max_bad_fraction": max_bad_fraction,
                "features": plain(features),
                "score_map": dict(score_map) if score_map is not None else None,
                "corpus": dict(corpus) if corpus is not None else None,
            }
        )  # plain data: a checkpoint loads without Hydra
        self.phones = list(phones)
        outputs = self.num_outputs(len(phones))
        self.model = AcousticModel(feature_dim, outputs, self.hparams.rnn, **self.hparams.model)
        self.register_buffer("feature_mean", torch.zeros(feature_dim, dtype=torch.float64))
        self.register_buffer("feature_std", torch.ones(feature_dim, dtype=torch.float64))
        self.dev_per = PhoneErrorRate()
        self.test_per = PhoneErrorRate()
        self.newbob = build_epoch_schedule(self.hparams.scheduler)  # on dev PER, or None
        self.bad_steps = 0  # non-finite losses in a row
        self.bad_total = 0  # non-finite losses since this process started training
        self.steps_seen = 0
        self.bad_utterances: list[str] = []  # of the batches with a non-finite loss
        self.test_records: list[dict] = []

    # ----- model -------------------------------------------------------------------------------
    def forward(self, feats: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.model(feats, lengths)

    def set_feature_stats(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        """Keep the training data's feature mean and standard deviation inside the checkpoint."""
        self.feature_mean.copy_(mean)
        self.feature_std.copy_(std)

    def decode(
        self, log_probs: torch.Tensor, lengths: torch.Tensor, method: str | None = None
    ) -> list[list[str]]:
        """Label sequences (training set symbols) for a batch of log-probabilities."""
        raise NotImplementedError

    def hypotheses(
        self, log_probs: torch.Tensor, lengths: torch.Tensor, method: str | None = None
    ) -> list[list[str]]:
        """Decoded label sequences of a batch, mapped to the scoring set."""
        decoded = self.decode(log_probs, lengths, method)
        return [apply_score_map(h, self.hparams.score_map) for h in decoded]

    # ----- training ----------------------------------------------------------------------------
    def guard_loss(self, loss: torch.Tensor, batch: dict) -> torch.Tensor | None:
        """``loss`` logged as ``train_loss``, or ``None`` (the step is skipped) when it is not
        finite. ``max_bad_steps`` such steps in a row stop the run, and so do frequent ones:
        at least ``max_bad_steps`` in all that are more than ``max_bad_fraction`` of the steps."""
        self.steps_seen += 1
        if torch.isfinite(loss):
            self.bad_steps = 0
            self.log("train_loss", loss, prog_bar=True, on_epoch=True,
                     batch_size=len(batch["lengths"]))  # fmt: skip
            return loss
        self.bad_steps += 1
        self.bad_total += 1
        self.bad_utterances.extend(batch["utt_ids"])
        log.warning(
            "non-finite loss at step %d (%d in a row, %d of %d steps): step skipped; its "
            "utterances: %s",
            self.global_step, self.bad_steps, self.bad_total, self.steps_seen,
            " ".join(batch["utt_ids"]),
        )  # fmt: skip
        limit, fraction = self.hparams.max_bad_steps, self.hparams.max_bad_fraction
        in_a_row = self.bad_steps >= limit
        frequent = self.bad_total >= limit and self.bad_total > fraction * self.steps_seen
        if in_a_row or frequent:
            named = sorted(set(self.bad_utterances))
            shown = " ".join(named[:20]) + (
                f" ... ({len(named)} in all)" if len(named) > 20 else ""
            )
            raise RuntimeError(
                f"{self.bad_total} non-finite losses in {self.steps_seen} steps "
                f"({self.bad_steps} in a row): training stopped. The utterances of those "
                f"batches: {shown}. Lower optim.lr, keep gradient clipping "
                "(trainer.gradient_clip_val), or use rnn=sligru; raise max_bad_steps or "
                "max_bad_fraction to tolerate more."
            )
        return None

    def validation_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        log_probs = self(batch["feats"], batch["lengths"])
        hypotheses = self.hypotheses(log_probs, batch["lengths"], method=self.dev_decoding)
        self.dev_per.update(batch["refs"], hypotheses)
        return log_probs

    @property
    def dev_decoding(self) -> str | None:
        """The decoding method of the dev PER during training (None: the configured one)."""
        return None

    def on_validation_epoch_end(self) -> None:
        per = self.dev_per.compute()
        self.dev_per.reset()
        self.log("dev_per", per.float(), prog_bar=True, sync_dist=False)
        if self.newbob is not None and not self.trainer.sanity_checking:
            for group in self.optimizers().optimizer.param_groups:
                group["lr"] = self.newbob.step(float(per), group["lr"])

    # ----- evaluation --------------------------------------------------------------------------
    def test_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        log_probs = self(batch["feats"], batch["lengths"])
        hypotheses = self.hypotheses(log_probs, batch["lengths"])
        self.test_per.update(batch["refs"], hypotheses)
        for utt, speaker, ref, hyp in zip(
            batch["utt_ids"], batch["speakers"], batch["refs"], hypotheses, strict=True
        ):
            counts = count_errors(ref, hyp)
            self.test_records.append(
                {"utt_id": utt, "speaker": speaker, "ref": ref, "hyp": hyp, "errors": counts.errors}
            )
        return log_probs

    def on_test_epoch_start(self) -> None:
        self.test_records = []

    def on_test_epoch_end(self) -> None:
        per = self.test_per.compute()
        self.test_per.reset()
        self.log("per", per.float(), sync_dist=False)
        self.test_records = gather_records(self.test_records)

    def write_extra_evaluation(self, out_dir: Path, split: str) -> dict:
        """Task-specific evaluation files and figures beyond PER (none here); rank 0 only."""
        return {}

    # ----- optimisation ------------------------------------------------------------------------
    def configure_optimizers(self):
        optimizer = build_optimizer(self.hparams.optim, self.parameters())
        scheduler = lightning_scheduler(self.hparams.scheduler, optimizer, monitor="dev_per")
        if scheduler is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": scheduler}

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["recognizer"] = type(self).__name__
        if self.newbob is not None:
            checkpoint["newbob"] = self.newbob.state_dict()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        if self.newbob is not None and "newbob" in checkpoint:
            self.newbob.load_state_dict(checkpoint["newbob"])
