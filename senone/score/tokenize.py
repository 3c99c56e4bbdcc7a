"""Scoring tokenisation the way Kaldi's Mandarin recipes score CER.

Mandarin has no agreed word segmentation, so a word error rate would mostly measure whether the
decoder's lexicon segments like the transcriber did. Kaldi's Mandarin recipes therefore score
characters: every CJK character is one token, while Latin words and digit strings stay whole (HKUST
transcripts contain English words such as ``IPHONE``; splitting them into letters would give a word
of six letters six times the weight of a character). Non-lexical marks (``<UNK>``, ``[NOISE]``,
``[LAUGHTER]``, ``!SIL``...) are removed from both sides first, as Kaldi's scoring filters do, so
a system is not charged for (not) emitting noise.

The same tokeniser gives English word tokens (``unit="word"``): whitespace split, marks removed.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from typing import Iterable, Literal

from senone import SenoneError

__all__ = [
    "DEFAULT_NOISE_MARKS",
    "CJK_RANGES",
    "Tokenizer",
    "tokenize_text",
    "is_cjk",
    "is_noise_mark",
]

#: Marks dropped by default, compared case-insensitively. Any token wholly inside ``<...>`` or
#: ``[...]`` is also dropped while ``Tokenizer.drop_bracketed`` is true (Kaldi's convention for
#: non-lexical events); this set matters for marks without brackets (``!SIL``) and for the case
#: ``drop_bracketed=False``.
DEFAULT_NOISE_MARKS: frozenset[str] = frozenset(
    {
        "<UNK>",
        "<SPOKEN_NOISE>",
        "<NOISE>",
        "<SIL>",
        "<EPS>",
        "<S>",
        "</S>",
        "[NOISE]",
        "[LAUGHTER]",
        "[VOCALIZED-NOISE]",
        "[VOCALIZED_NOISE]",
        "[BREATH]",
        "[COUGH]",
        "[SIL]",
        "!SIL",
        "<V-NOISE>",
    }
)

#: Code-point ranges scored one character per token: CJK ideographs (URO, extensions A-H,
#: compatibility), the ideographic zero, kana, bopomofo and Hangul syllables.
CJK_RANGES: tuple[tuple[int, int], ...] = (
    (0x3007, 0x3007),  # 〇
    (0x3040, 0x30FF),  # hiragana, katakana
    (0x3100, 0x312F),  # bopomofo
    (0x31A0, 0x31BF),  # bopomofo extended
    (0x3400, 0x4DBF),  # extension A
    (0x4E00, 0x9FFF),  # unified ideographs
    (0xAC00, 0xD7AF),  # Hangul syllables
    (0xF900, 0xFAFF),  # compatibility ideographs
    (0x20000, 0x3134F),  # extensions B-H (planes 2 and 3)
)

_CJK_CLASS = "".join(
    re.escape(chr(lo)) if lo == hi else f"{re.escape(chr(lo))}-{re.escape(chr(hi))}" for lo, hi in CJK_RANGES
)
# One non-CJK letter or digit (``[^\W_]`` is "alphanumeric"; CJK ideographs are alphanumeric too,
# hence the look-ahead).
_LATIN_CHAR = rf"(?:(?![{_CJK_CLASS}])[^\W_])"
# A Latin word or number: alphanumerics, optionally joined by ' - _ . & between two of them
# (don't, T-shirt, 3.5, AT&T).
_PIECE_RE = re.compile(
    rf"(?P<mark><[^<>\s]*>|\[[^\[\]\s]*\])"
    rf"|(?P<latin>{_LATIN_CHAR}+(?:['\-_.&]{_LATIN_CHAR}+)*)"
    rf"|(?P<cjk>[{_CJK_CLASS}])"
    rf"|(?P<other>\S)"
)
_BRACKETED_RE = re.compile(r"<[^<>\s]*>|\[[^\[\]\s]*\]")


def is_cjk(ch: str) -> bool:
    """True if the single character ``ch`` is scored as one token of its own (see ``CJK_RANGES``)."""
    cp = ord(ch)
    return any(lo <= cp <= hi for lo, hi in CJK_RANGES)


def is_noise_mark(token: str, noise_marks: Iterable[str] = DEFAULT_NOISE_MARKS, drop_bracketed: bool = True) -> bool:
    """True if ``token`` is a non-lexical mark that scoring removes.

    ``noise_marks`` is compared case-insensitively; with ``drop_bracketed`` any token entirely
    enclosed in ``<...>`` or ``[...]`` counts as a mark too.
    """
    return Tokenizer("word", frozenset(noise_marks), drop_bracketed).is_mark(token)


def _is_punct(token: str) -> bool:
    return len(token) == 1 and unicodedata.category(token).startswith("P")


@dataclass(frozen=True)
class Tokenizer:
    """Turns a transcript into scoring tokens.

    unit
        ``"char"``: CJK characters one per token, Latin words and digit strings whole, any other
        non-space character (punctuation, symbols) one per token, as Kaldi would see it after
        splitting. Input may or may not have spaces between words. ``"word"``: whitespace split.
    noise_marks
        Marks to drop (case-insensitive).
    drop_bracketed
        Also drop every ``<...>`` / ``[...]`` token, even one not in ``noise_marks``. A bracketed
        token that is kept stays one token.
    drop_punctuation
        Drop single punctuation characters (Unicode category P*). Off by default because Kaldi
        does not do it; a reference that still contains punctuation is a data-preparation bug that
        scoring should show, not hide.
    """

    unit: Literal["char", "word"] = "char"
    noise_marks: frozenset[str] = field(default=DEFAULT_NOISE_MARKS)
    drop_bracketed: bool = True
    drop_punctuation: bool = False

    def __post_init__(self) -> None:
        if self.unit not in ("char", "word"):
            raise SenoneError(f"tokenizer unit {self.unit!r} is unknown; use 'char' (Mandarin CER) or 'word' (WER)")
        # Normalise once so membership tests are case-insensitive and O(1).
        object.__setattr__(self, "noise_marks", frozenset(m.upper() for m in self.noise_marks))

    def is_mark(self, token: str) -> bool:
        """True if ``token`` (one whitespace-free token) is a mark this tokenizer removes."""
        if self.drop_bracketed and _BRACKETED_RE.fullmatch(token):
            return True
        return token.upper() in self.noise_marks

    def __call__(self, text: str) -> list[str]:
        tokens: list[str] = []
        for word in text.split():
            if self.is_mark(word):
                continue
            if self.unit == "word":
                if not (self.drop_punctuation and all(_is_punct(c) for c in word)):
                    tokens.append(word)
                continue
            for m in _PIECE_RE.finditer(word):
                piece = m.group(0)
                kind = m.lastgroup
                if kind == "mark" and self.is_mark(piece):
                    continue
                if kind == "other" and self.drop_punctuation and _is_punct(piece):
                    continue
                tokens.append(piece)
        return tokens


_DEFAULT_TOKENIZERS = {"char": Tokenizer("char"), "word": Tokenizer("word")}


def tokenize_text(text: str, unit: Literal["char", "word"] = "char") -> list[str]:
    """Tokenise ``text`` with the default settings (see ``Tokenizer`` to change them).

    >>> tokenize_text("我用 IPHONE 手机 <UNK>")
    ['我', '用', 'IPHONE', '手', '机']
    """
    tok = _DEFAULT_TOKENIZERS.get(unit)
    if tok is None:
        tok = Tokenizer(unit)  # raises the one-line error
    return tok(text)
