"""A trained recogniser (the Lightning module of either task) -> the runtime's configuration.

Everything inference needs besides the acoustic model's weights, as plain JSON data: the
topology (``rnn``, ``model``, ``feature_dim``, ``num_outputs``), the feature settings, the
training data's normalisation (float64, written exactly), the phone set, the scoring map, the
decoding options with their defaults filled in, and the CTC bigram or the framewise phone loop
(``-inf`` written as ``null``).

>>> from recipes.toolkit.ctc.module import CTCRecognizer
>>> module = CTCRecognizer(["a", "b"], 40, {"name": "gru", "hidden_size": 8})
>>> config = runtime_config(module)
>>> config["task"], config["num_outputs"], config["decoding"]
('ctc', 3, {'method': 'greedy'})
"""

from __future__ import annotations

from dataclasses import asdict

from recipes.toolkit.data.feature_config import FeatureConfig
from recipes.toolkit.framewise.module import FramewiseRecognizer
from recipes.toolkit.package.runtime import FORMAT, VERSION, encode_tensor
from recipes.toolkit.recognizer import SpeechRecognizer, plain


def runtime_config(module: SpeechRecognizer) -> dict:
    """The ``config.json`` of ``module`` (its current decoding options included)."""
    hparams = module.hparams
    framewise = isinstance(module, FramewiseRecognizer)
    config = {
        "format": FORMAT,
        "version": VERSION,
        "task": "framewise" if framewise else "ctc",
        "recognizer": type(module).__name__,
        "phones": list(module.phones),
        "feature_dim": int(hparams.feature_dim),
        "num_outputs": int(module.model.output.out_features),
        "rnn": plain(hparams.rnn),
        "model": plain(hparams.model),
        "features": asdict(FeatureConfig.from_mapping(hparams.features or {})),
        "normalization": {
            "mean": encode_tensor(module.feature_mean),
            "std": encode_tensor(module.feature_std),
        },
        "score_map": None if hparams.score_map is None else dict(hparams.score_map),
        "decoding": {**module.default_decoding, **plain(hparams.decoding)},
    }
    if framewise:
        config["phone_loop"] = {
            "log_bigram": encode_tensor(module.log_bigram),
            "log_initial": encode_tensor(module.log_initial),
            "log_prior": encode_tensor(module.log_prior),
        }
    else:
        config["ctc_bigram"] = encode_tensor(module.bigram)
    return config
