"""TIMIT phone recognition: the corpus reader, phone maps, speaker lists, the built-in corpus
generator (``builtin/``) and the entry points ``train``, ``eval`` and ``transcribe``; everything
else comes from :mod:`recipes.toolkit`."""
