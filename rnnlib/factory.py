"""Build any rnnlib layer stack from a name: what Hydra configs call."""

from torch import nn

from rnnlib.ligru import LiGRU, SLiGRU
from rnnlib.torch_rnn import GRU, LSTM, RNN

RNN_TYPES: dict[str, type[nn.Module]] = {
    "rnn": RNN,
    "lstm": LSTM,
    "gru": GRU,
    "ligru": LiGRU,
    "sligru": SLiGRU,
}


def build_rnn(name: str, **kwargs) -> nn.Module:
    """Build the recurrent stack called ``name`` (rnn, lstm, gru, ligru, sligru).

    >>> rnn = build_rnn("ligru", input_size=40, hidden_size=64, num_layers=2)
    >>> type(rnn).__name__, rnn.output_size
    ('LiGRU', 64)
    """
    key = name.lower()
    if key not in RNN_TYPES:
        raise ValueError(f"unknown rnn type {name!r}; choose one of {sorted(RNN_TYPES)}")
    try:
        return RNN_TYPES[key](**kwargs)
    except TypeError as error:
        raise TypeError(f"rnn type {name!r}: {error}") from error
