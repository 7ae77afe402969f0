"""Tests of rnnlib and the recipes."""
