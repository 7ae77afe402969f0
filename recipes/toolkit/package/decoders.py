"""Decoders of a model's frame log-probabilities into phone frame segments, by its task.

The decisions of the training recognisers' ``decode``, with the frame path kept: CTC greedy
(the best label of every frame) or prefix beam search (its phones then force-aligned,
:func:`~recipes.toolkit.package.timing.ctc_align`), segmented by emissions; framewise Viterbi
over the phone loop or the best label of every frame, segmented into runs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from recipes.toolkit.ctc.decoding import BigramLM, prefix_beam_search
from recipes.toolkit.data.segments import frames_to_segments
from recipes.toolkit.framewise.viterbi import PhoneLoop
from recipes.toolkit.package.timing import ctc_align, ctc_segments

Segments = list[tuple[int, int, str]]


class CTCDecoder:
    """CTC decoding of ``[T, 1 + len(phones)]`` log-probabilities (blank at 0).

    ``decoding``: ``method`` (greedy, beam), ``beam_width``, ``lm_weight`` (of ``bigram``,
    the ``[V, V]`` phone bigram table), ``insertion_bonus``.

    >>> decoder = CTCDecoder(["a", "b"], {"method": "greedy"})
    >>> lp = torch.tensor([[.1, .8, .1], [.8, .1, .1], [.1, .1, .8], [.8, .1, .1]]).log()
    >>> decoder.segments(lp)
    [(0, 2, 'a'), (2, 3, 'b')]
    """

    methods = ("greedy", "beam")

    def __init__(
        self, phones: Sequence[str], decoding: Mapping, bigram: torch.Tensor | None = None
    ) -> None:
        self.phones = list(phones)
        self.method = decoding.get("method", "greedy")
        if self.method not in self.methods:
            raise ValueError(f"decoding.method must be greedy or beam, got {self.method!r}")
        self.beam_width = int(decoding.get("beam_width", 8))
        self.lm_weight = float(decoding.get("lm_weight", 0.0))
        self.insertion_bonus = float(decoding.get("insertion_bonus", 0.0))
        self.lm = None
        if self.method == "beam" and self.lm_weight:
            if bigram is None:
                raise ValueError("decoding.lm_weight > 0 needs the model's phone bigram")
            self.lm = BigramLM(bigram)

    def frame_path(self, log_probs: torch.Tensor) -> list[int]:
        """The CTC path ``[T]`` (output indices) of one utterance."""
        if self.method == "greedy":
            return log_probs.argmax(dim=-1).tolist()
        ids = prefix_beam_search(
            log_probs[None],
            torch.tensor([len(log_probs)]),
            beam_width=self.beam_width,
            lm=self.lm,
            lm_weight=self.lm_weight,
            insertion_bonus=self.insertion_bonus,
        )[0]
        return ctc_align(log_probs, ids)

    def segments(self, log_probs: torch.Tensor) -> Segments:
        """Frame segments ``(start, end, phone)`` of the decoded phones (training labels)."""
        path = self.frame_path(log_probs.detach().float().cpu())
        return [(a, b, self.phones[label - 1]) for a, b, label in ctc_segments(path)]


class FramewiseDecoder:
    """Framewise decoding of ``[T, len(phones)]`` log-posteriors.

    ``decoding``: ``method`` (viterbi, greedy) and, for Viterbi, ``acoustic_scale``,
    ``prior_scale`` and ``self_loop_prob`` with the phone loop's ``log_bigram``,
    ``log_initial`` and ``log_prior``.

    >>> flat = torch.zeros(2)
    >>> decoder = FramewiseDecoder(["a", "b"], {"method": "greedy"}, torch.zeros(2, 2), flat, flat)
    >>> decoder.segments(torch.tensor([[.9, .1], [.8, .2], [.3, .7]]).log())
    [(0, 2, 'a'), (2, 3, 'b')]
    """

    methods = ("viterbi", "greedy")

    def __init__(
        self,
        phones: Sequence[str],
        decoding: Mapping,
        log_bigram: torch.Tensor,
        log_initial: torch.Tensor,
        log_prior: torch.Tensor,
    ) -> None:
        self.phones = list(phones)
        self.method = decoding.get("method", "viterbi")
        if self.method not in self.methods:
            raise ValueError(f"decoding.method must be viterbi or greedy, got {self.method!r}")
        prior_scale = float(decoding["prior_scale"]) if self.method == "viterbi" else 0.0
        self.loop = None
        if self.method == "viterbi":
            self.loop = PhoneLoop(
                log_bigram,
                log_initial,
                self_loop_prob=float(decoding["self_loop_prob"]),
                acoustic_scale=float(decoding["acoustic_scale"]),
                log_prior=log_prior * prior_scale if prior_scale else None,
            )

    def frame_path(self, log_probs: torch.Tensor) -> list[int]:
        """The best phone index of every frame of one utterance."""
        if self.loop is None:
            return log_probs.argmax(dim=-1).tolist()
        return self.loop.decode(log_probs)

    def segments(self, log_probs: torch.Tensor) -> Segments:
        """Frame segments ``(start, end, phone)``: one per run of the frame path."""
        path = self.frame_path(log_probs.detach().float().cpu())
        return [(a, b, self.phones[label]) for a, b, label in frames_to_segments(path)]
