"""What TIMIT checkpoints of earlier releases implied without saying: their scoring map."""

from __future__ import annotations

from recipes.timit.phones import scoring_map


def implied_hparams(hparams: dict) -> dict:
    """Values a TIMIT CTC checkpoint without them was trained and scored with.

    >>> implied_hparams({"phones": ["aa"] * 48})["score_map"]["vcl"]
    'sil'
    """
    return {"score_map": scoring_map(len(hparams["phones"]))}
