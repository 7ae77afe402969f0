"""TIMIT phone sets (61, 48, 39) and the Kaldi ``phones.60-48-39.map`` folding.

``q`` (glottal stop) belongs to the 61-phone set of the transcriptions but is deleted by every map.

>>> len(phone_set(61)), len(phone_set(48)), len(phone_set(39))
(61, 48, 39)
>>> map_phones(["h#", "q", "ix", "zh", "bcl", "b"], 39)
['sil', 'ih', 'sh', 'sil', 'b']
"""

from __future__ import annotations

# 61-set symbol -> (48-set symbol, 39-set symbol); q maps to None (deleted).
_MAP: dict[str, tuple[str, str] | None] = {
    "aa": ("aa", "aa"), "ae": ("ae", "ae"), "ah": ("ah", "ah"), "ao": ("ao", "aa"),
    "aw": ("aw", "aw"), "ax": ("ax", "ah"), "ax-h": ("ax", "ah"), "axr": ("er", "er"),
    "ay": ("ay", "ay"), "b": ("b", "b"), "bcl": ("vcl", "sil"), "ch": ("ch", "ch"),
    "d": ("d", "d"), "dcl": ("vcl", "sil"), "dh": ("dh", "dh"), "dx": ("dx", "dx"),
    "eh": ("eh", "eh"), "el": ("el", "l"), "em": ("m", "m"), "en": ("en", "n"),
    "eng": ("ng", "ng"), "epi": ("epi", "sil"), "er": ("er", "er"), "ey": ("ey", "ey"),
    "f": ("f", "f"), "g": ("g", "g"), "gcl": ("vcl", "sil"), "h#": ("sil", "sil"),
    "hh": ("hh", "hh"), "hv": ("hh", "hh"), "ih": ("ih", "ih"), "ix": ("ix", "ih"),
    "iy": ("iy", "iy"), "jh": ("jh", "jh"), "k": ("k", "k"), "kcl": ("cl", "sil"),
    "l": ("l", "l"), "m": ("m", "m"), "n": ("n", "n"), "ng": ("ng", "ng"),
    "nx": ("n", "n"), "ow": ("ow", "ow"), "oy": ("oy", "oy"), "p": ("p", "p"),
    "pau": ("sil", "sil"), "pcl": ("cl", "sil"), "q": None, "r": ("r", "r"),
    "s": ("s", "s"), "sh": ("sh", "sh"), "t": ("t", "t"), "tcl": ("cl", "sil"),
    "th": ("th", "th"), "uh": ("uh", "uh"), "uw": ("uw", "uw"), "ux": ("uw", "uw"),
    "v": ("v", "v"), "w": ("w", "w"), "y": ("y", "y"), "z": ("z", "z"),
    "zh": ("zh", "sh"),
}  # fmt: skip

PHONES_61: list[str] = sorted(_MAP)
PHONES_48: list[str] = sorted({m[0] for m in _MAP.values() if m is not None})
PHONES_39: list[str] = sorted({m[1] for m in _MAP.values() if m is not None})
SUPPORTED = (61, 48, 39)


def phone_set(n: int) -> list[str]:
    """The sorted ``n``-phone set (61 includes ``q``; 48 and 39 do not)."""
    sets = {61: PHONES_61, 48: PHONES_48, 39: PHONES_39}
    if n not in sets:
        raise ValueError(f"unknown phone set size {n}; expected one of {SUPPORTED}")
    return list(sets[n])


def map_phone(phone: str, target: int) -> str | None:
    """Map one 61-set symbol to the ``target`` set; ``None`` when deleted (``q``)."""
    if phone not in _MAP:
        raise KeyError(f"unknown TIMIT phone {phone!r}")
    mapped = _MAP[phone]
    if mapped is None:
        return None
    if target == 61:
        return phone
    if target == 48:
        return mapped[0]
    if target == 39:
        return mapped[1]
    raise ValueError(f"unknown phone set size {target}; expected one of {SUPPORTED}")


def map_phones(phones: list[str], target: int) -> list[str]:
    """Map 61-set symbols to the 61 (identity), 48 or 39 set, deleting ``q``."""
    out = []
    for p in phones:
        m = map_phone(p, target)
        if m is not None:
            out.append(m)
    return out


def fold_to_39(phones: list[str]) -> list[str]:
    """Fold symbols of the 61 or 48 set to the 39 scoring set (``q`` deleted).

    >>> fold_to_39(["vcl", "ix", "cl", "aa"])
    ['sil', 'ih', 'sil', 'aa']
    """
    fold48 = {m[0]: m[1] for m in _MAP.values() if m is not None}
    out = []
    for p in phones:
        if p in _MAP:
            m = map_phone(p, 39)
        elif p in fold48:
            m = fold48[p]
        else:
            raise KeyError(f"unknown phone {p!r}")
        if m is not None:
            out.append(m)
    return out


def scoring_map(train_phones: int, score_phones: int = 39) -> dict[str, str]:
    """Each symbol of the ``train_phones`` set -> its ``score_phones`` symbol (``""``: deleted).

    What a recogniser trained on the ``train_phones`` set keeps in its checkpoint to score its
    hypotheses (plain data: no TIMIT code needed to evaluate it).

    >>> m = scoring_map(48)
    >>> m["vcl"], m["ix"], m["aa"], len(m)
    ('sil', 'ih', 'aa', 48)
    >>> scoring_map(61)["q"]
    ''
    """
    if score_phones != 39 and score_phones != train_phones:
        raise ValueError(f"score_phones must be 39 or train_phones, got {score_phones}")
    sources = PHONES_61 if train_phones == 61 else phone_set(train_phones)
    if score_phones == train_phones:
        return {p: p for p in sources}
    return {p: (fold_to_39([p]) or [""])[0] for p in sources}
