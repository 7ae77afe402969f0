"""A small lexicon (about 100 words, 61-phone pronunciations) and a sentence grammar.

Used by the built-in corpus generator. Pronunciations write stops and affricates bare (``b``,
``ch``); :func:`expand` adds the closure before each (``bcl b``, ``tcl ch``), as TIMIT labels them.

>>> expand("b ah q en")
['bcl', 'b', 'ah', 'q', 'en']
>>> len(LEXICON) >= 100
True
"""

from __future__ import annotations

import numpy as np

CLOSURE = {
    "b": "bcl", "d": "dcl", "g": "gcl", "p": "pcl", "t": "tcl", "k": "kcl",
    "ch": "tcl", "jh": "dcl",
}  # fmt: skip

DETERMINERS = {
    "the": "dh ax", "a": "ax", "this": "dh ih s", "that": "dh ae t", "every": "eh v r iy",
    "his": "hv ih z", "her": "hv er", "their": "dh eh r", "some": "s ah m", "one": "w ah n",
    "two": "t ux", "three": "th r iy",
}  # fmt: skip
ADJECTIVES = {
    "dark": "d aa r k", "greasy": "g r iy s iy", "oily": "oy l iy", "little": "l ih dx el",
    "small": "s m ao l", "tall": "t ao l", "young": "y ah ng", "brown": "b r aw n",
    "yellow": "y eh l ow", "good": "g uh d", "new": "n ux", "thin": "th ih n",
    "usual": "y uw zh uw el", "orange": "ao r ix n jh", "cheap": "ch iy p", "quiet": "k w ay ix t",
    "heavy": "hh eh v iy", "shiny": "sh ay n iy", "fresh": "f r eh sh", "old": "ow l d",
}  # fmt: skip
NOUNS = {
    "suit": "s uw t", "water": "w ao dx axr", "rag": "r ae g", "dog": "d ao g",
    "child": "ch ay l d", "teacher": "t iy ch axr", "judge": "jh ah jh", "house": "hh aw s",
    "book": "b uh k", "boy": "b oy", "toy": "t oy", "garden": "g aa r d en", "cotton": "k aa q en",
    "bottle": "b aa dx el", "bottom": "b aa dx em", "potato": "p ax-h t ey dx ow",
    "measure": "m eh zh axr", "winner": "w ih nx axr", "juice": "jh ux s", "shoe": "sh ux",
    "church": "ch er ch", "morning": "m ao r n ix ng", "year": "y ih r", "wood": "w uh d",
    "noise": "n oy z", "father": "f aa dh axr", "mother": "m ah dh axr", "farmer": "f aa r m axr",
    "kitchen": "k ih ch ix n", "window": "w ih n d ow", "table": "t ey b el", "money": "m ah n iy",
    "fish": "f ih sh", "bird": "b er d", "road": "r ow d", "ship": "sh ih p", "cake": "k ey k",
    "pencil": "p eh n s el", "washington": "w aa sh eng t ax n", "zebra": "z iy b r ax",
}  # fmt: skip
VERBS = {
    "washed": "w aa sh t", "carried": "k ae r iy d", "liked": "l ay k t", "saw": "s ao",
    "found": "f aw n d", "gave": "g ey v", "took": "t uh k", "bought": "b ao t",
    "painted": "p ey n t ix d", "moved": "m uw v d", "kept": "k eh p t", "wanted": "w aa n t ix d",
    "needed": "n iy dx ix d", "held": "hh eh l d", "sold": "s ow l d", "cleaned": "k l iy n d",
    "fixed": "f ih k s t", "showed": "sh ow d", "threw": "th r uw", "brought": "b r ao t",
}  # fmt: skip
PREPOSITIONS = {
    "in": "ih n", "on": "aa n", "at": "ae t", "from": "f r ah m", "with": "w ih th",
    "by": "b ay", "under": "ah n d axr", "near": "n ih r", "behind": "b ix hv ay n d",
    "about": "ax b aw t", "into": "ih n t uw", "for": "f ao r",
}  # fmt: skip
SUBJECTS = {"he": "hh iy", "she": "sh iy", "we": "w iy", "they": "dh ey", "you": "y uw"}
ADVERBS = {
    "today": "t ax d ey", "again": "ax g eh n", "quickly": "k w ih k l iy", "all": "ao l",
    "yesterday": "y eh s t axr d ey", "many": "m eh nx iy", "ahead": "ax hv eh d",
    "usually": "y uw zh uw el iy",
}  # fmt: skip

LEXICON: dict[str, str] = {
    **DETERMINERS, **ADJECTIVES, **NOUNS, **VERBS, **PREPOSITIONS, **SUBJECTS, **ADVERBS,
}  # fmt: skip
VOWEL_INITIAL = {"a", "every", "oily", "orange", "old", "usual", "in", "on", "at", "under",
                 "about", "into", "again", "all", "ahead", "usually"}  # fmt: skip


def expand(pron: str) -> list[str]:
    """Expand a pronunciation string to 61-set symbols, adding a closure before each stop."""
    out: list[str] = []
    for p in pron.split():
        if p in CLOSURE:
            out.append(CLOSURE[p])
        out.append(p)
    return out


def _pick(rng: np.random.Generator, words: dict[str, str]) -> str:
    keys = sorted(words)
    return keys[int(rng.integers(len(keys)))]


def _noun_phrase(rng: np.random.Generator) -> list[str]:
    words = [_pick(rng, DETERMINERS)]
    if rng.random() < 0.6:
        words.append(_pick(rng, ADJECTIVES))
    words.append(_pick(rng, NOUNS))
    return words


def make_sentence(rng: np.random.Generator) -> list[str]:
    """A random sentence of about 4 to 12 words from a tiny grammar."""
    subject = [_pick(rng, SUBJECTS)] if rng.random() < 0.35 else _noun_phrase(rng)
    words = subject + [_pick(rng, VERBS)] + _noun_phrase(rng)
    if rng.random() < 0.6:
        words += [_pick(rng, PREPOSITIONS)] + _noun_phrase(rng)
    if rng.random() < 0.3:
        words.append(_pick(rng, ADVERBS))
    return words
