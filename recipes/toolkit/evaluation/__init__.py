"""Evaluation: error rates, per-utterance reports, plots."""
