"""TIMIT's own Hydra configs: the entry points' primary configs and the ``data`` and
``experiment`` groups. The shared groups (``rnn``, ``trainer``, ``optim``, ...) live in the
repository's top-level ``conf/``, which each primary config adds to its search path."""
