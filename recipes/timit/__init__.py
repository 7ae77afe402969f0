"""TIMIT phone recognition recipe: corpus, features, batching, model and entry points."""
