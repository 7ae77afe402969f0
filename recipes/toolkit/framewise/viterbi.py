"""Phone-loop Viterbi decoding of frame posteriors: one state per phone, bigram between phones.

The loop has one state per label. From state ``i`` the decoder stays with probability ``p``
(``self_loop_prob``) or moves to ``j != i`` with probability ``(1 - p) B[i, j] / sum_{k != i}
B[i, k]``, where ``B`` is the phone bigram (its diagonal is ignored). A frame's acoustic score
is the scaled likelihood ``acoustic_scale * (log P(j | x_t) - log P(j))``: the network's log
posterior divided by the class prior (``log_prior``; none when omitted). A path ``s`` scores
``log_initial[s_0] + sum_t acoustic(t, s_t) + sum_{t >= 1} log A[s_{t-1}, s_t]`` and the
decoder returns the best one.

Example:
    >>> loop = PhoneLoop.from_label_sequences([[0, 1, 2], [0, 2]], num_labels=3)
    >>> log_posteriors = torch.tensor([[0.9, 0.05, 0.05]] * 3 + [[0.05, 0.05, 0.9]] * 2).log()
    >>> loop.decode(log_posteriors)
    [0, 0, 0, 2, 2]
    >>> loop.decode_phones(log_posteriors)
    [0, 2]
"""

import math
from collections.abc import Iterable, Sequence

import torch

# Viterbi runs in double precision so that close paths are ranked the same way on every input
# dtype; the scores of one utterance are small ([T, N]).
DTYPE = torch.float64


def transition_matrix(log_bigram: torch.Tensor, self_loop_prob: float) -> torch.Tensor:
    """Log transition matrix ``[N, N]`` of the loop: ``log p`` on the diagonal, the bigram row
    renormalised over ``j != i`` and weighted by ``1 - p`` elsewhere.

    A row whose off-diagonal bigram is all ``-inf`` gets no way out (``-inf`` off the diagonal).

    >>> log_bigram = torch.tensor([[0.0, 1.0, 3.0], [1.0, 0.0, 1.0], [2.0, 2.0, 0.0]]).log()
    >>> transition_matrix(log_bigram, 0.5).exp()
    tensor([[0.5000, 0.1250, 0.3750],
            [0.2500, 0.5000, 0.2500],
            [0.2500, 0.2500, 0.5000]], dtype=torch.float64)
    """
    if log_bigram.dim() != 2 or log_bigram.shape[0] != log_bigram.shape[1]:
        raise ValueError(f"log_bigram must be square [N, N], got {tuple(log_bigram.shape)}")
    if not 0.0 <= self_loop_prob <= 1.0:
        raise ValueError(f"self_loop_prob must be in [0, 1], got {self_loop_prob}")
    num_labels = log_bigram.shape[0]
    diagonal = torch.eye(num_labels, dtype=torch.bool)
    off_diagonal = log_bigram.to(DTYPE).masked_fill(diagonal, -math.inf)
    row_norm = torch.logsumexp(off_diagonal, dim=1, keepdim=True)
    leave = torch.tensor(1.0 - self_loop_prob, dtype=DTYPE).log()
    stay = torch.tensor(self_loop_prob, dtype=DTYPE).log()
    moves = torch.where(
        torch.isfinite(row_norm), off_diagonal - row_norm, torch.tensor(-math.inf, dtype=DTYPE)
    )
    return torch.where(diagonal, stay, leave + moves)


class PhoneLoop:
    """Phone loop with bigram transitions, a self-loop probability and prior-divided posteriors.

    Args:
        log_bigram: ``[N, N]``, ``log P(next phone j | previous phone i)`` in row ``i``; the
            diagonal is ignored and each row is renormalised over ``j != i``.
        log_initial: ``[N]``, log probability of the first phone.
        self_loop_prob: probability of staying in the same phone from one frame to the next.
        acoustic_scale: weight of the acoustic log-likelihoods against the transition scores.
        log_prior: ``[N]`` log class priors subtracted from the log posteriors, or ``None``.

    >>> loop = PhoneLoop(torch.zeros(2, 2), torch.tensor([0.5, 0.5]).log(), self_loop_prob=0.9)
    >>> loop.decode(torch.tensor([[0.6, 0.4], [0.4, 0.6], [0.6, 0.4]]).log())  # stays
    [0, 0, 0]
    >>> loop.decode(torch.tensor([[0.9, 0.1], [0.1, 0.9], [0.1, 0.9]]).log())  # moves
    [0, 1, 1]
    """

    def __init__(
        self,
        log_bigram: torch.Tensor,
        log_initial: torch.Tensor,
        self_loop_prob: float = 0.5,
        acoustic_scale: float = 1.0,
        log_prior: torch.Tensor | None = None,
    ) -> None:
        num_labels = log_bigram.shape[0] if log_bigram.dim() >= 1 else 0
        if num_labels == 0:
            raise ValueError("a phone loop needs at least one label")
        if tuple(log_initial.shape) != (num_labels,):
            raise ValueError(f"log_initial must have shape [{num_labels}], got {log_initial.shape}")
        if log_prior is not None and tuple(log_prior.shape) != (num_labels,):
            raise ValueError(f"log_prior must have shape [{num_labels}], got {log_prior.shape}")
        if not (math.isfinite(acoustic_scale) and acoustic_scale >= 0.0):
            raise ValueError(f"acoustic_scale must be finite and >= 0, got {acoustic_scale}")
        self.log_transitions = transition_matrix(log_bigram, self_loop_prob)
        self.log_initial = log_initial.to(DTYPE)
        self.self_loop_prob = self_loop_prob
        self.acoustic_scale = acoustic_scale
        self.log_prior = None if log_prior is None else log_prior.to(DTYPE)

    @property
    def num_labels(self) -> int:
        return self.log_initial.shape[0]

    @classmethod
    def from_label_sequences(
        cls,
        sequences: Iterable[Sequence[int]],
        num_labels: int,
        smoothing: float = 1.0,
        self_loop_prob: float = 0.5,
        acoustic_scale: float = 1.0,
        log_prior: torch.Tensor | None = None,
    ) -> "PhoneLoop":
        """Estimate the bigram and the initial distribution from label sequences.

        Each sequence (frame-level or phone-level) is counted by its transitions between
        consecutive distinct labels, so repeated labels count once. ``smoothing`` is added to
        every off-diagonal bigram count and to every initial count; the bigram diagonal is
        ``-inf``. Empty sequences are skipped. A row with no counts at all (only possible with
        ``smoothing=0``) is uniform over the other labels.

        >>> loop = PhoneLoop.from_label_sequences([[0, 0, 1], [0, 1, 1]], 2, smoothing=0.0)
        >>> loop.log_initial.exp().tolist()
        [1.0, 0.0]
        """
        bigram, initial = count_transitions(sequences, num_labels)
        return cls(
            log_bigram=normalise_bigram(bigram, smoothing),
            log_initial=normalise_counts(initial, smoothing),
            self_loop_prob=self_loop_prob,
            acoustic_scale=acoustic_scale,
            log_prior=log_prior,
        )

    def acoustic_scores(self, log_posteriors: torch.Tensor) -> torch.Tensor:
        """``acoustic_scale * (log_posteriors - log_prior)`` in double precision, for
        ``log_posteriors`` of shape ``[..., T, N]``."""
        if log_posteriors.dim() not in (2, 3) or log_posteriors.shape[-1] != self.num_labels:
            raise ValueError(
                f"log_posteriors must have shape [T, {self.num_labels}] or "
                f"[batch, T, {self.num_labels}], got {tuple(log_posteriors.shape)}"
            )
        scores = log_posteriors.detach().to(device="cpu", dtype=DTYPE)
        if torch.isnan(scores).any():
            raise ValueError("log_posteriors contain NaN")
        if self.log_prior is not None:
            scores = scores - self.log_prior
        return self.acoustic_scale * scores

    def path_score(self, path: Sequence[int], log_posteriors: torch.Tensor) -> float:
        """Total log score of one frame-level state sequence (the quantity Viterbi maximises)."""
        scores = self.acoustic_scores(log_posteriors)
        if len(path) != scores.shape[0]:
            raise ValueError(f"path has {len(path)} frames, log_posteriors {scores.shape[0]}")
        if not path:
            return 0.0
        states = torch.tensor(path, dtype=torch.long)
        total = self.log_initial[states[0]] + scores[torch.arange(len(path)), states].sum()
        total = total + self.log_transitions[states[:-1], states[1:]].sum()
        return float(total)

    def decode(self, log_posteriors: torch.Tensor) -> list[int]:
        """Best frame-level state sequence (length ``T``) for ``log_posteriors [T, N]``.

        Ties go to the lowest state index, both for the final state and for every back-pointer.
        """
        if log_posteriors.dim() != 2:
            raise ValueError(
                f"log_posteriors must have shape [T, {self.num_labels}],"
                f" got {tuple(log_posteriors.shape)}"
            )
        return self.decode_batch(log_posteriors[None], torch.tensor([len(log_posteriors)]))[0]

    def decode_batch(self, log_posteriors: torch.Tensor, lengths: torch.Tensor) -> list[list[int]]:
        """:meth:`decode` of each utterance of a padded batch ``[B, T, N]`` (frames at and after
        ``lengths[b]`` are ignored), every step done for the whole batch at once."""
        scores = self.acoustic_scores(log_posteriors)
        if scores.dim() != 3:
            raise ValueError(f"log_posteriors must be [batch, T, N], got {tuple(scores.shape)}")
        lengths = torch.as_tensor(lengths, dtype=torch.long).cpu()
        batch, num_frames, _ = scores.shape
        if lengths.shape != (batch,) or bool((lengths > num_frames).any()):
            raise ValueError(f"lengths {lengths.tolist()} do not fit {num_frames} frames")
        if num_frames == 0:
            return [[] for _ in range(batch)]
        best = self.log_initial + scores[:, 0]  # [B, N]: best score of a path ending in each state
        back_pointers = torch.zeros(batch, num_frames, self.num_labels, dtype=torch.long)
        for t in range(1, num_frames):
            candidates = best.unsqueeze(2) + self.log_transitions  # [B, previous i, next j]
            previous = candidates.argmax(dim=1)  # argmax returns the first maximum
            back_pointers[:, t] = previous
            advanced = candidates.gather(1, previous.unsqueeze(1)).squeeze(1) + scores[:, t]
            best = torch.where((t < lengths).unsqueeze(1), advanced, best)
        state = best.argmax(dim=1)  # [B]
        rows = torch.arange(batch)
        paths = torch.zeros(batch, num_frames, dtype=torch.long)
        for t in range(num_frames - 1, -1, -1):
            inside = t < lengths
            paths[:, t] = state
            if t > 0:
                state = torch.where(inside, back_pointers[rows, t, state], state)
        return [paths[b, : int(lengths[b])].tolist() for b in range(batch)]

    def decode_phones(self, log_posteriors: torch.Tensor) -> list[int]:
        """The decoded phone sequence: :meth:`decode` with consecutive repeats merged."""
        return collapse(self.decode(log_posteriors))

    def align(self, log_posteriors: torch.Tensor, phones: Sequence[int]) -> list[int]:
        """Forced alignment: the best frame-level path ``[T]`` that visits ``phones`` in order,
        each for at least one frame (stay: ``log p``, advance: ``log (1 - p)``; the bigram plays
        no part, the phone sequence is given). On a tie the path stays in the earlier phone.

        >>> loop = PhoneLoop(torch.zeros(3, 3), torch.zeros(3), self_loop_prob=0.5)
        >>> x = torch.tensor([[0.8, 0.1, 0.1], [0.1, 0.1, 0.8], [0.1, 0.8, 0.1]]).log()
        >>> loop.align(x, [0, 2])
        [0, 2, 2]
        """
        scores = self.acoustic_scores(log_posteriors)
        if scores.dim() != 2:
            raise ValueError(f"log_posteriors must be [T, N], got {tuple(scores.shape)}")
        num_frames, count = scores.shape[0], len(phones)
        if count == 0 or count > num_frames:
            raise ValueError(
                f"cannot align {count} phones to {num_frames} frames: need 1 <= phones <= frames"
            )
        states = torch.as_tensor(list(phones), dtype=torch.long)
        if bool(((states < 0) | (states >= self.num_labels)).any()):
            raise ValueError(f"phones must be in [0, {self.num_labels}), got {list(phones)}")
        emissions = scores[:, states]  # [T, K]
        stay = torch.tensor(self.self_loop_prob, dtype=DTYPE).log()
        advance = torch.tensor(1.0 - self.self_loop_prob, dtype=DTYPE).log()
        best = torch.full((count,), -math.inf, dtype=DTYPE)
        best[0] = emissions[0, 0]
        advanced_into = torch.zeros(num_frames, count, dtype=torch.bool)
        for t in range(1, num_frames):
            staying = best + stay
            moving = torch.cat([torch.tensor([-math.inf], dtype=DTYPE), best[:-1] + advance])
            advanced_into[t] = moving > staying
            best = torch.maximum(staying, moving) + emissions[t]
        if not math.isfinite(float(best[-1])):
            raise ValueError("no finite alignment (self_loop_prob of 0 or 1, or -inf scores)")
        path, position = [], count - 1
        for t in range(num_frames - 1, -1, -1):
            path.append(int(states[position]))
            if t > 0 and advanced_into[t, position]:
                position -= 1
        path.reverse()
        return path


def collapse(labels: Sequence[int]) -> list[int]:
    """Merge consecutive repeats.

    >>> collapse([1, 1, 0, 0, 0, 1, 2, 2])
    [1, 0, 1, 2]
    """
    return [int(label) for t, label in enumerate(labels) if t == 0 or label != labels[t - 1]]


def count_transitions(
    sequences: Iterable[Sequence[int]], num_labels: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Counts ``[N, N]`` of transitions between consecutive distinct labels and ``[N]`` of first
    labels, over all non-empty sequences.

    >>> bigram, initial = count_transitions([[0, 0, 1, 0], [1]], 2)
    >>> bigram.tolist(), initial.tolist()
    ([[0.0, 1.0], [1.0, 0.0]], [1.0, 1.0])
    """
    if num_labels <= 0:
        raise ValueError(f"num_labels must be > 0, got {num_labels}")
    bigram = torch.zeros(num_labels, num_labels, dtype=DTYPE)
    initial = torch.zeros(num_labels, dtype=DTYPE)
    for sequence in sequences:
        phones = collapse(sequence)
        for label in phones:
            if not 0 <= label < num_labels:
                raise ValueError(f"label {label} out of range [0, {num_labels})")
        if not phones:
            continue
        initial[phones[0]] += 1
        for previous, following in zip(phones[:-1], phones[1:], strict=True):
            bigram[previous, following] += 1
    return bigram, initial


def normalise_counts(counts: torch.Tensor, smoothing: float) -> torch.Tensor:
    """Log of ``(counts + smoothing)`` normalised; uniform when everything is zero.

    >>> normalise_counts(torch.tensor([1.0, 0.0, 4.0]), 1.0).exp()
    tensor([0.2500, 0.1250, 0.6250], dtype=torch.float64)
    """
    if not (math.isfinite(smoothing) and smoothing >= 0.0):
        raise ValueError(f"smoothing must be finite and >= 0, got {smoothing}")
    smoothed = counts.to(DTYPE) + smoothing
    total = smoothed.sum()
    if total <= 0:
        return torch.full_like(smoothed, -math.log(smoothed.numel()))
    return (smoothed / total).log()


def normalise_bigram(counts: torch.Tensor, smoothing: float) -> torch.Tensor:
    """Log bigram from transition counts: each row smoothed and normalised over ``j != i``.

    >>> counts = torch.tensor([[0.0, 3.0, 0.0], [0.0, 0.0, 0.0], [5.0, 1.0, 0.0]])
    >>> normalise_bigram(counts, smoothing=1.0).exp()
    tensor([[0.0000, 0.8000, 0.2000],
            [0.5000, 0.0000, 0.5000],
            [0.7500, 0.2500, 0.0000]], dtype=torch.float64)
    """
    num_labels = counts.shape[0]
    log_bigram = torch.full((num_labels, num_labels), -math.inf, dtype=DTYPE)
    for i in range(num_labels):
        others = [j for j in range(num_labels) if j != i]
        if others:
            log_bigram[i, others] = normalise_counts(counts[i, others], smoothing)
    return log_bigram
