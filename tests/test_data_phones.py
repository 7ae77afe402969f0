"""TIMIT phone sets and the 61 -> 48 -> 39 folding."""

import pytest

from recipes.timit.phones import fold_to_39, map_phone, map_phones, phone_set


def test_set_sizes_and_q():
    assert [len(phone_set(n)) for n in (61, 48, 39)] == [61, 48, 39]
    assert "q" in phone_set(61)
    assert "q" not in phone_set(48) and "q" not in phone_set(39)
    for n in (61, 48, 39):
        assert phone_set(n) == sorted(phone_set(n))
    assert {"vcl", "cl", "epi", "sil", "ao", "ax", "ix", "el", "en", "zh"} <= set(phone_set(48))
    assert {"vcl", "cl", "epi", "ao", "ax", "ix", "el", "en", "zh"}.isdisjoint(phone_set(39))


@pytest.mark.parametrize(
    ("phone", "p48", "p39"),
    [
        ("ao", "ao", "aa"), ("ax", "ax", "ah"), ("ax-h", "ax", "ah"), ("axr", "er", "er"),
        ("ix", "ix", "ih"), ("el", "el", "l"), ("em", "m", "m"), ("en", "en", "n"),
        ("nx", "n", "n"), ("eng", "ng", "ng"), ("ux", "uw", "uw"), ("hv", "hh", "hh"),
        ("zh", "zh", "sh"), ("bcl", "vcl", "sil"), ("dcl", "vcl", "sil"), ("gcl", "vcl", "sil"),
        ("pcl", "cl", "sil"), ("tcl", "cl", "sil"), ("kcl", "cl", "sil"), ("h#", "sil", "sil"),
        ("pau", "sil", "sil"), ("epi", "epi", "sil"), ("s", "s", "s"), ("dx", "dx", "dx"),
    ],
)  # fmt: skip
def test_specific_mappings(phone, p48, p39):
    assert map_phone(phone, 48) == p48
    assert map_phone(phone, 39) == p39
    assert map_phone(phone, 61) == phone


def test_q_deleted_and_identity():
    seq = ["h#", "q", "ae", "tcl", "t", "q", "h#"]
    assert map_phones(seq, 61) == ["h#", "ae", "tcl", "t", "h#"]
    assert map_phones(seq, 48) == ["sil", "ae", "cl", "t", "sil"]
    assert map_phones(seq, 39) == ["sil", "ae", "sil", "t", "sil"]


def test_maps_are_onto_and_consistent():
    p61 = [p for p in phone_set(61) if p != "q"]
    assert sorted(set(map_phones(p61, 48))) == phone_set(48)
    assert sorted(set(map_phones(p61, 39))) == phone_set(39)
    # 61 -> 39 equals 61 -> 48 -> 39
    assert fold_to_39(map_phones(p61, 48)) == map_phones(p61, 39)


def test_errors():
    with pytest.raises(KeyError):
        map_phones(["xx"], 39)
    with pytest.raises(ValueError):
        phone_set(50)
    with pytest.raises(ValueError):
        map_phones(["aa"], 40)
