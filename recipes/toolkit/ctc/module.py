"""The Lightning module of CTC label recognition: training step, decoding, PER, schedules."""

import logging
from collections.abc import Mapping

import lightning as L
import torch
import torch.distributed as dist
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf

from recipes.toolkit.ctc.decoding import BigramLM, greedy_decode, prefix_beam_search
from recipes.toolkit.evaluation.scoring import PhoneErrorRate, apply_score_map, count_errors
from recipes.toolkit.model import CTCAcousticModel
from recipes.toolkit.optim import build_epoch_schedule, build_optimizer, lightning_scheduler

log = logging.getLogger(__name__)


def plain(config: Mapping | DictConfig | None) -> dict:
    """A plain ``dict`` copy of a (possibly OmegaConf) mapping."""
    if config is None:
        return {}
    if isinstance(config, DictConfig):
        return OmegaConf.to_container(config, resolve=True)  # type: ignore[return-value]
    return dict(config)


class CTCRecognizer(L.LightningModule):
    """CTC recogniser over any rnnlib encoder; error rate on the scoring set of ``score_map``.

    Args:
        phones: the training phone set (CTC labels 1..N; 0 is blank).
        feature_dim: features per frame.
        rnn: rnnlib type (``name``) and its options.
        model: ``frontend_channels`` and ``output_dropout``.
        optim: a partial ``_target_`` config of the optimizer (:mod:`recipes.toolkit.optim`).
        scheduler: a ``_target_`` config of the schedule, or empty for none.
        decoding: ``method`` (greedy, beam), ``beam_width``, ``lm_weight``, ``insertion_bonus``.
        max_bad_steps: consecutive non-finite losses tolerated before the run stops.
        features: the feature configuration (kept so that eval and transcribe match it).
        score_map: training label -> scoring label (``""`` deletes it); ``None`` scores the
            training labels as they are. Kept in the checkpoint, like everything above.
        corpus: what the model was trained on (kind, root, training-list hash), for evaluation
            to say when it scores another corpus.
    """

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
                "optim": plain(optim)
                or {"_target_": "torch.optim.Adam", "_partial_": True, "lr": 1e-3},
                "scheduler": plain(scheduler),
                "decoding": plain(decoding) or {"method": "greedy"},
                "max_bad_steps": max_bad_steps,
                "features": plain(features),
                "score_map": dict(score_map) if score_map is not None else None,
                "corpus": dict(corpus) if corpus is not None else None,
            }
        )
        self.phones = list(phones)
        self.model = CTCAcousticModel(
            feature_dim, len(phones), self.hparams.rnn, **self.hparams.model
        )
        self.register_buffer("bigram", torch.zeros(len(phones) + 1, len(phones) + 1))
        # Global feature normalisation of the training data, kept for transcribing new audio.
        # float64, as computed: evaluation normalises with exactly the training statistics.
        self.register_buffer("feature_mean", torch.zeros(feature_dim, dtype=torch.float64))
        self.register_buffer("feature_std", torch.ones(feature_dim, dtype=torch.float64))
        self.dev_per = PhoneErrorRate()
        self.test_per = PhoneErrorRate()
        self.newbob = build_epoch_schedule(self.hparams.scheduler)  # on dev PER, or None
        self.bad_steps = 0
        self.test_records: list[dict] = []

    # ----- model -------------------------------------------------------------------------------
    def forward(self, feats: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.model(feats, lengths)

    def set_bigram(self, lm: BigramLM) -> None:
        """Keep the phone bigram (estimated from training transcripts) inside the checkpoint."""
        self.bigram.copy_(lm.table)

    def set_feature_stats(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        """Keep the training data's feature mean and standard deviation inside the checkpoint."""
        self.feature_mean.copy_(mean)
        self.feature_std.copy_(std)

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

    # ----- training ----------------------------------------------------------------------------
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
        if not torch.isfinite(loss):
            self.bad_steps += 1
            log.warning(
                "non-finite loss at step %d (%d in a row): step skipped",
                self.global_step,
                self.bad_steps,
            )
            if self.bad_steps >= self.hparams.max_bad_steps:
                raise RuntimeError(
                    f"{self.bad_steps} non-finite losses in a row: training stopped. Lower "
                    "optim.lr, keep gradient clipping (trainer.gradient_clip_val), or use "
                    "rnn=sligru; raise max_bad_steps to tolerate more."
                )
            return None
        self.bad_steps = 0
        self.log("train_loss", loss, prog_bar=True, on_epoch=True, batch_size=len(batch["lengths"]))
        return loss

    def _hypotheses(self, batch: dict, method: str | None = None) -> list[list[str]]:
        log_probs = self(batch["feats"], batch["lengths"])
        decoded = self.decode(log_probs, batch["lengths"], method)
        return [apply_score_map(h, self.hparams.score_map) for h in decoded]

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self.dev_per.update(batch["refs"], self._hypotheses(batch, method="greedy"))

    def on_validation_epoch_end(self) -> None:
        per = self.dev_per.compute()
        self.dev_per.reset()
        self.log("dev_per", per.float(), prog_bar=True, sync_dist=False)
        if self.newbob is not None and not self.trainer.sanity_checking:
            for group in self.optimizers().optimizer.param_groups:
                group["lr"] = self.newbob.step(float(per), group["lr"])

    def test_step(self, batch: dict, batch_idx: int) -> None:
        hypotheses = self._hypotheses(batch)
        self.test_per.update(batch["refs"], hypotheses)
        for utt, speaker, ref, hyp in zip(
            batch["utt_ids"], batch["speakers"], batch["refs"], hypotheses, strict=True
        ):
            counts = count_errors(ref, hyp)
            self.test_records.append(
                {"utt_id": utt, "speaker": speaker, "ref": ref, "hyp": hyp, "errors": counts.errors}
            )

    def on_test_epoch_start(self) -> None:
        self.test_records = []

    def on_test_epoch_end(self) -> None:
        per = self.test_per.compute()
        self.test_per.reset()
        self.log("per", per.float(), sync_dist=False)
        if dist.is_available() and dist.is_initialized():
            gathered: list = [None] * dist.get_world_size()
            dist.all_gather_object(gathered, self.test_records)
            self.test_records = [record for part in gathered for record in part]

    # ----- optimisation ------------------------------------------------------------------------
    def configure_optimizers(self):
        optimizer = build_optimizer(self.hparams.optim, self.parameters())
        scheduler = lightning_scheduler(self.hparams.scheduler, optimizer, monitor="dev_per")
        if scheduler is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": scheduler}

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        if self.newbob is not None:
            checkpoint["newbob"] = self.newbob.state_dict()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        if self.newbob is not None and "newbob" in checkpoint:
            self.newbob.load_state_dict(checkpoint["newbob"])
