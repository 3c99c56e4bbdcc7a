"""Mandarin transcript normalisation shared by every corpus recipe.

A lexicon, an LM and a CER scorer all see the same token stream only if every recipe writes its
transcripts the same way. The form chosen here follows Kaldi's Mandarin recipes (hkust, aishell):

* Chinese characters are written without spaces (the lexicon/LM stage segments them);
* Arabic numerals become Chinese numerals (``cn2an``), including simple dates (``2023年`` →
  ``二零二三年``), percentages (``50%`` → ``百分之五十``), decimals, fractions and clock times;
* full-width forms become half-width (Unicode NFKC) before anything else looks at the text;
* punctuation and symbols are removed;
* Latin words are upper-cased and kept whole as space-separated words (HKUST keeps English words);
* whitespace is collapsed.

``normalize_zh_report`` also says what was removed or converted, so a recipe can log it instead of
losing text silently, and whether anything other than Chinese characters is left (a recipe for a
pure-Mandarin corpus drops such sentences; one with code-switching keeps them).
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from dataclasses import dataclass, field

import cn2an

__all__ = [
    "NormalizationReport",
    "normalize_zh",
    "normalize_zh_report",
    "is_cjk_char",
    "non_cjk_tokens",
    "digits_to_chinese",
]

# Han ideographs: URO, extension A, compatibility ideographs, extensions B.. (SIP), plus 〇 (U+3007),
# which is category Nl but is written and read as a Chinese character.
_CJK_RANGES = (
    (0x4E00, 0x9FFF),
    (0x3400, 0x4DBF),
    (0xF900, 0xFAFF),
    (0x20000, 0x2FFFF),
    (0x30000, 0x3134F),
    (0x3007, 0x3007),
)

_DIGIT_ZH = dict(zip("0123456789", "零一二三四五六七八九"))

# A run of ASCII letters/digits that contains at least one letter is a Latin word ("MP3", "4G"):
# its digits belong to the word and are not read as Chinese numerals. Apostrophes inside a word
# ("DON'T") are kept.
_LATIN_WORD = re.compile(r"[A-Za-z0-9]*[A-Za-z][A-Za-z0-9]*(?:'[A-Za-z]+)*")
_THOUSANDS = re.compile(r"(?<=[0-9]),(?=[0-9]{3}(?![0-9]))")
_CLOCK = re.compile(r"(?<![0-9])([01]?[0-9]|2[0-3]):([0-5][0-9])(?![0-9])")
# Digit strings that are identifiers rather than quantities (phone numbers, codes): read digit by
# digit. A quantity this long would be written with a unit or separators.
_DIGIT_STRING = re.compile(r"(?<![0-9.])(?:0[0-9]{2,}|[0-9]{11,})(?![0-9.])")
_ASCII_DIGITS = re.compile(r"[0-9]+")
_NUMERAL = re.compile(r"-?[0-9]+(?:[.,:/][0-9]+)*%?")
# A bare "2" counting things is read 两 ("2个" → 两个), but not as an ordinal ("第2个" → 第二个).
_LIANG = re.compile(r"(?<![0-9.第])2(?=[个位次种只本件条张口台辆双对])")
# Unit symbols that NFKC would otherwise turn into Latin letters ("℃" → "°C").
_UNIT_WORDS = (("°C", "摄氏度"), ("°F", "华氏度"))


def is_cjk_char(ch: str) -> bool:
    """True for a Chinese character (Han ideograph, or 〇)."""
    cp = ord(ch)
    return any(lo <= cp <= hi for lo, hi in _CJK_RANGES)


@dataclass
class NormalizationReport:
    """What ``normalize_zh_report`` did to one transcript.

    Attributes:
        original: the input text.
        text: the normalised text (what ``normalize_zh`` returns).
        dropped: characters removed (punctuation, symbols, control characters) with their counts.
        numbers: the numeral expressions (as written, after width folding) read as Chinese
            numerals, e.g. ``["2023", "3.5%", "10:30"]``.
        latin_words: upper-cased Latin words kept in ``text``.
        other_words: kept tokens that are neither Chinese characters nor Latin words (other
            scripts: kana, Hangul, Cyrillic...).
    """

    original: str
    text: str = ""
    dropped: Counter = field(default_factory=Counter)
    numbers: list[str] = field(default_factory=list)
    latin_words: list[str] = field(default_factory=list)
    other_words: list[str] = field(default_factory=list)

    @property
    def cjk_only(self) -> bool:
        """True if the normalised text is non-empty and consists of Chinese characters only."""
        return bool(self.text) and all(is_cjk_char(c) for c in self.text)

    @property
    def non_cjk(self) -> list[str]:
        """Every kept token that is not a Chinese character (Latin and other scripts)."""
        return self.latin_words + self.other_words


def digits_to_chinese(digits: str) -> str:
    """Read a digit string digit by digit (``"110"`` → ``"一一零"``), as for phone numbers."""
    return "".join(_DIGIT_ZH[d] for d in digits)


def _clock_to_chinese(m: re.Match) -> str:
    hour, minute = int(m.group(1)), int(m.group(2))
    spoken = cn2an.an2cn(str(hour)) + "点"
    if minute:
        spoken += ("零" if minute < 10 else "") + cn2an.an2cn(str(minute)) + "分"
    return spoken


def _convert_numerals(segment: str, report: NormalizationReport) -> str:
    """Convert every numeral expression in a segment that holds no Latin word."""
    if not any("0" <= c <= "9" for c in segment):
        return segment
    report.numbers.extend(m.group(0) for m in _NUMERAL.finditer(segment))
    segment = _THOUSANDS.sub("", segment)
    segment = _CLOCK.sub(_clock_to_chinese, segment)
    segment = _DIGIT_STRING.sub(lambda m: digits_to_chinese(m.group(0)), segment)
    segment = _LIANG.sub("两", segment)
    try:
        converted = cn2an.transform(segment, "an2cn")
    except Exception:  # cn2an rejects some malformed numerals ("1.2.3"); fall back below
        converted = segment
    # Anything cn2an left (or refused) is read digit by digit rather than dropped.
    return _ASCII_DIGITS.sub(lambda m: digits_to_chinese(m.group(0)), converted)


def _char_class(ch: str) -> str:
    """'c' Chinese, 'l' Latin word char, 'o' other letter/number, ' ' separator, 'x' dropped."""
    if is_cjk_char(ch):
        return "c"
    if ch.isascii() and (ch.isalnum() or ch == "'"):
        return "l"
    cat = unicodedata.category(ch)
    if cat[0] == "Z" or ch in "\t\n\r\v\f":
        return " "
    if cat[0] in "LNM":
        return "o"
    return "x"


def normalize_zh_report(text: str) -> NormalizationReport:
    """Normalise a Mandarin transcript and report what was converted and dropped.

    See the module docstring for the target form. Dropped characters are replaced by a word
    boundary, so ``"ABC，DEF"`` gives two words ``"ABC DEF"``, never ``"ABCDEF"``.
    """
    report = NormalizationReport(original=text)
    # 1. Full-width → half-width (and other compatibility forms such as ① or ㎏) before anything
    #    else, so "５０％" is a percentage and "ＡＢＣ" a Latin word.
    text = unicodedata.normalize("NFKC", text)
    for written, spoken in _UNIT_WORDS:
        text = text.replace(written, spoken)
    # 2. Numerals, outside Latin words only.
    pieces: list[str] = []
    pos = 0
    for m in _LATIN_WORD.finditer(text):
        pieces.append(_convert_numerals(text[pos : m.start()], report))
        pieces.append(" " + m.group(0).upper() + " ")
        pos = m.end()
    pieces.append(_convert_numerals(text[pos:], report))
    text = "".join(pieces)
    # 3. Drop punctuation/symbols, split into tokens: runs of Chinese characters, Latin words, and
    #    runs of other letters.
    tokens: list[tuple[str, str]] = []  # (class, token)
    current, current_cls = [], ""
    for ch in text:
        cls = _char_class(ch)
        if cls == "x":
            report.dropped[ch] += 1
            cls = " "
        if cls == "l" and ch == "'" and current_cls != "l":
            report.dropped[ch] += 1  # a quote mark, not an apostrophe inside a word
            cls = " "
        if cls != current_cls:
            if current and current_cls != " ":
                tokens.append((current_cls, "".join(current)))
            current, current_cls = [], cls
        current.append(ch)
    if current and current_cls != " ":
        tokens.append((current_cls, "".join(current)))
    words: list[str] = []
    for cls, tok in tokens:
        if cls == "l":
            stripped = tok.strip("'")
            if len(stripped) != len(tok):
                report.dropped["'"] += len(tok) - len(stripped)
            tok = stripped
            if not tok:
                continue
            report.latin_words.append(tok)
        elif cls == "o":
            report.other_words.append(tok)
        words.append(tok)
    # 4. Chinese runs separated only by dropped punctuation are joined again: Chinese text is
    #    written without spaces. Everything else stays space-separated.
    out: list[str] = []
    for i, (cls, _) in enumerate(tokens):
        if i and cls == "c" and tokens[i - 1][0] == "c":
            out[-1] += words[i]
        else:
            out.append(words[i])
    report.text = " ".join(w for w in out if w)
    return report


def normalize_zh(text: str) -> str:
    """Return the normalised form of a Mandarin transcript (see module docstring)."""
    return normalize_zh_report(text).text


def non_cjk_tokens(text: str) -> list[str]:
    """Tokens of an already normalised text that are not runs of Chinese characters."""
    return [t for t in text.split() if not all(is_cjk_char(c) for c in t)]
