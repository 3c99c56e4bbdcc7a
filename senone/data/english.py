"""English transcript normalisation for user corpora: the form the English lexicon and WER scorer use.

CMUdict-style upper-case words separated by single spaces. Kept: letters, digits, apostrophes and
hyphens inside words (``DON'T``, ``T-SHIRT``). Removed, and reported: punctuation and symbols, and
non-lexical marks written in brackets (``[NOISE]``, ``<laugh>``) — senone has no noise words for
English yet, so a mark would otherwise become an unpronounceable word. Digits are left as written
(``7`` is not read as ``SEVEN``): a number's reading depends on context, so a user who wants it
spoken writes it out; a digit string without a lexicon entry is reported as unpronounceable.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from dataclasses import dataclass, field

__all__ = ["EnglishNormalization", "normalize_en", "normalize_en_report"]

_MARK = re.compile(r"\[[^\[\]]*\]|<[^<>]*>")
_WORD = re.compile(r"[A-Z0-9]+(?:['\-][A-Z0-9]+)*")


@dataclass
class EnglishNormalization:
    """What :func:`normalize_en_report` did: the text, the marks and characters it removed."""

    original: str
    text: str = ""
    marks: list[str] = field(default_factory=list)
    dropped: Counter = field(default_factory=Counter)


def normalize_en_report(text: str) -> EnglishNormalization:
    """Normalise an English transcript (see the module docstring) and say what was removed."""
    out = EnglishNormalization(original=text)
    # compatibility forms folded, accents taken off letters (JOSÉ → JOSE), typographic apostrophe → '
    text = unicodedata.normalize("NFKD", text).replace("\u2019", "'")
    text = "".join(c for c in text if unicodedata.category(c) != "Mn")
    out.marks = _MARK.findall(text)
    text = _MARK.sub(" ", text).upper()
    words = []
    pos = 0
    for m in _WORD.finditer(text):
        out.dropped.update(c for c in text[pos:m.start()] if not c.isspace())
        words.append(m.group(0))
        pos = m.end()
    out.dropped.update(c for c in text[pos:] if not c.isspace())
    out.text = " ".join(words)
    return out


def normalize_en(text: str) -> str:
    """The normalised form of an English transcript."""
    return normalize_en_report(text).text
