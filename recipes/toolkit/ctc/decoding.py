"""CTC decoding: greedy, and prefix beam search with an optional phone bigram language model."""

import math
from collections import Counter, defaultdict

import torch
from torch import Tensor

BLANK = 0


def greedy_decode(log_probs: Tensor, lengths: Tensor) -> list[list[int]]:
    """Best path per utterance: argmax, collapse repeats, drop blanks (index 0).

    >>> lp = torch.log(torch.tensor([[[.1, .9, 0], [.1, .9, 0], [.9, .1, 0], [0, .1, .9]]]))
    >>> greedy_decode(lp, torch.tensor([4]))
    [[1, 2]]
    """
    best = log_probs.argmax(-1).cpu()
    sequences = []
    for path, length in zip(best, lengths.tolist(), strict=True):
        path = path[:length]
        keep = torch.ones_like(path, dtype=torch.bool)
        keep[1:] = path[1:] != path[:-1]
        sequences.append([int(p) for p in path[keep] if p != BLANK])
    return sequences


class BigramLM:
    """Phone bigram log-probabilities with add-k smoothing, from training label sequences.

    Index 0 (blank) stands for the sentence start in the history.

    Example:
        >>> lm = BigramLM.estimate([[1, 2, 1], [1, 2]], vocab_size=3)
        >>> lm.log_prob(1, 2) > lm.log_prob(1, 1)
        True
    """

    def __init__(self, table: Tensor):
        self.table = table

    @classmethod
    def estimate(cls, sequences: list[list[int]], vocab_size: int, k: float = 0.5) -> "BigramLM":
        counts = torch.full((vocab_size, vocab_size), k, dtype=torch.double)
        pairs: Counter = Counter()
        for seq in sequences:
            history = [BLANK, *seq]
            pairs.update(zip(history[:-1], history[1:], strict=True))
        for (a, b), n in pairs.items():
            counts[a, b] += n
        counts[:, BLANK] = 0.0  # blank is never a phone
        return cls((counts / counts.sum(1, keepdim=True)).log().float())

    def log_prob(self, previous: int, phone: int) -> float:
        return float(self.table[previous, phone])


def prefix_beam_search(
    log_probs: Tensor,
    lengths: Tensor,
    beam_width: int = 8,
    lm: BigramLM | None = None,
    lm_weight: float = 0.0,
    insertion_bonus: float = 0.0,
) -> list[list[int]]:
    """CTC prefix beam search per utterance of ``log_probs`` ``[batch, time, vocab]``.

    Prefix scores keep blank-ending and non-blank-ending probabilities apart (Hannun et al.);
    a bigram LM adds ``lm_weight * log P(phone | previous)`` and ``insertion_bonus`` per phone.

    >>> lp = torch.log(torch.tensor([[[.1, .9, 0], [.1, .9, 0], [.9, .1, 0], [0, .1, .9]]]))
    >>> prefix_beam_search(lp, torch.tensor([4]), beam_width=4)
    [[1, 2]]
    """
    results = []
    log_probs = log_probs.detach().float().cpu()
    for utterance, length in zip(log_probs, lengths.tolist(), strict=True):
        results.append(_search_one(utterance[:length], beam_width, lm, lm_weight, insertion_bonus))
    return results


def _logsumexp(a: float, b: float) -> float:
    if a == -math.inf:
        return b
    if b == -math.inf:
        return a
    top = max(a, b)
    return top + math.log(math.exp(a - top) + math.exp(b - top))


def _search_one(
    frames: Tensor, beam_width: int, lm: BigramLM | None, lm_weight: float, bonus: float
) -> list[int]:
    neg_inf = -math.inf
    # prefix -> (log P ending in blank, log P ending in non-blank)
    beams: dict[tuple[int, ...], tuple[float, float]] = {(): (0.0, neg_inf)}
    vocab = frames.shape[1]
    candidates_per_frame = min(vocab, beam_width + 2)
    for frame in frames:
        top = torch.topk(frame, candidates_per_frame)
        symbols = list(zip(top.indices.tolist(), top.values.tolist(), strict=True))
        blank_lp = float(frame[BLANK])
        following: dict[tuple[int, ...], list[float]] = defaultdict(lambda: [neg_inf, neg_inf])
        for prefix, (p_blank, p_phone) in beams.items():
            total = _logsumexp(p_blank, p_phone)
            entry = following[prefix]
            entry[0] = _logsumexp(entry[0], total + blank_lp)
            last = prefix[-1] if prefix else None
            for symbol, lp in symbols:
                if symbol == BLANK:
                    continue
                extended = (*prefix, symbol)
                extra = bonus
                if lm is not None and lm_weight:
                    extra += lm_weight * lm.log_prob(last if last is not None else BLANK, symbol)
                if symbol == last:
                    # a repeat needs a blank in between; without it the prefix stays the same
                    following[extended][1] = _logsumexp(
                        following[extended][1], p_blank + lp + extra
                    )
                    entry[1] = _logsumexp(entry[1], p_phone + lp)
                else:
                    following[extended][1] = _logsumexp(following[extended][1], total + lp + extra)
        ranked = sorted(following.items(), key=lambda kv: _logsumexp(*kv[1]), reverse=True)
        beams = {prefix: (scores[0], scores[1]) for prefix, scores in ranked[:beam_width]}
    best = max(beams.items(), key=lambda kv: _logsumexp(*kv[1]))
    return list(best[0])
