"""Framewise (frame-classification) recognition: frame targets, phone-loop Viterbi, alignments."""
