"""The Lightning module of CTC label recognition: CTC loss, greedy or beam decoding."""

from collections.abc import Mapping

import torch
import torch.nn.functional as F

from recipes.toolkit.ctc.decoding import BigramLM, greedy_decode, prefix_beam_search
from recipes.toolkit.recognizer import SpeechRecognizer, recognizer_hparams


class CTCRecognizer(SpeechRecognizer):
    """CTC recogniser over any rnnlib encoder; error rate on the scoring set of ``score_map``.

    Args:
        phones: the training phone set (CTC labels 1..N; 0 is blank).
        feature_dim: features per frame.
        rnn: rnnlib type (``name``) and its options.
        model: ``frontend_channels`` and ``output_dropout``.
        optim: a partial ``_target_`` config of the optimizer (:mod:`recipes.toolkit.optim`).
        scheduler: a ``_target_`` config of the schedule, or empty for none.
        decoding: ``method`` (greedy, beam), ``beam_width``, ``lm_weight``, ``insertion_bonus``.
        max_bad_steps: non-finite losses (each step skipped) tolerated in a row before the run
            stops; so many in all also stop it when they are more than ``max_bad_fraction`` of
            the steps.
        features: the feature configuration (kept so that eval and transcribe match it).
        score_map: training label -> scoring label (``""`` deletes it); ``None`` scores the
            training labels as they are. Kept in the checkpoint, like everything above.
        corpus: what the model was trained on (kind, root, training-list hash), for evaluation
            to say when it scores another corpus.

    Example:
        >>> module = CTCRecognizer(["a", "b"], 4, {"name": "gru", "hidden_size": 8})
        >>> log_probs = module(torch.randn(1, 6, 4), torch.tensor([6]))
        >>> log_probs.shape  # blank + 2 phones
        torch.Size([1, 6, 3])
    """

    decoding_methods = ("greedy", "beam")

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
        hparams = recognizer_hparams(
            phones, feature_dim, rnn, model, optim, scheduler, decoding, max_bad_steps,
            max_bad_fraction, features, score_map, corpus, default_decoding={"method": "greedy"},
        )  # fmt: skip
        super().__init__(hparams, num_outputs=len(phones) + 1)
        self.register_buffer("bigram", torch.zeros(len(phones) + 1, len(phones) + 1))

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
        return self.guard_loss(loss, batch)
