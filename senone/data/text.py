"""Mandarin transcript normalisation shared by every corpus recipe.

A lexicon, an LM and a CER scorer all see the same token stream only if every recipe writes its
transcripts the same way. The form chosen here follows Kaldi's Mandarin recipes (hkust, aishell):

* Chinese characters are written without spaces (the lexicon/LM stage segments them);
* full-width forms become half-width (Unicode NFKC) before anything else looks at the text;
* Arabic numerals become Chinese numerals, written as they are read aloud (conventions below);
* punctuation and symbols are removed;
* Latin words are upper-cased and kept whole as space-separated words (HKUST keeps English words);
* whitespace is collapsed.

Numeral conventions (what a Mandarin speaker says; ``cn2an`` does the arithmetic):

* Quantities are read as numbers: ``123个`` → 一百二十三个, ``12,345元`` → 一万二千三百四十五元,
  decimals digit by digit after 点 (``3.14`` → 三点一四), ``50%`` → 百分之五十, ``5‰`` → 千分之五,
  ``1/3`` → 三分之一, ``-3度`` → 负三度, and a counted 2 is 两 (``2个`` → 两个, but ``第2个`` → 第二个).
* Years are read digit by digit: ``2004年`` → 二零零四年, ``1998-2004年`` → 一九九八到二零零四年;
  numeric dates become the spoken date: ``2004-03-05``, ``2004/3/5``, ``2004.3.5`` and
  ``2004年3月5日`` all give 二零零四年三月五日. Decades are quantities (``90年代`` → 九十年代), the
  generation words digits (``80后`` → 八零后).
* Clock times: ``10:30`` → 十点三十分, ``9:05`` → 九点零五分, ``13:45:30`` → 十三点四十五分三十秒.
* Ranges: a hyphen or tilde between two numbers is 到 (``3-5个``, ``3~5个`` → 三到五个,
  ``10%-20%`` → 百分之十到百分之二十).
* Identifiers are read digit by digit, with 1 as 幺 (yao1), as phone numbers are spoken: numbers
  of 11 or more digits, numbers with a leading 0 (``010``), hyphenated groups of 3+ digits
  (``010-12345678``, ``400-800-1234``), and any digit string right after a word that introduces
  one (电话, 手机, 号码, 热线, 拨打, 房间, 编号... ``拨打110`` → 拨打幺幺零).
* Units and currency: ``5kg`` → 五公斤, ``3.5km`` → 三点五公里 (lower-case SI symbols km kg cm mm mg
  ml m g after a number), ``¥100``/``￥100`` → 一百元, ``$5`` → 五美元, ``€``/``£`` → 欧元/英镑,
  ``℃`` → 摄氏度.
* Digits attached to Latin letters are read in Chinese and split from the letters, as said:
  ``MP3`` → ``MP 三``, ``5G`` → ``五 G``, ``A380`` → ``A 三八零`` (one or two digits as a number,
  three or more digit by digit).

``normalize_zh_report`` also says what was removed or converted, so a recipe can log it instead of
losing text silently, and whether anything other than Chinese characters is left (a recipe for a
pure-Mandarin corpus drops such sentences; one with code-switching keeps them).
:class:`NormalizationSummary` adds those reports up over a corpus and writes them next to the
manifests (``normalization.json``), so a user can see what every recipe dropped and converted.
"""

from __future__ import annotations

import logging
import os
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable

import cn2an

from senone.io import write_json

__all__ = [
    "NormalizationReport",
    "NormalizationSummary",
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
# its digits are split off and read in Chinese (see _latin_word). Apostrophes inside a word
# ("DON'T") are kept.
_LATIN_WORD = re.compile(r"[A-Za-z0-9]*[A-Za-z][A-Za-z0-9]*(?:'[A-Za-z]+)*")
_LETTERS_OR_DIGITS = re.compile(r"[0-9]+|[A-Za-z]+(?:'[A-Za-z]+)*")
_THOUSANDS = re.compile(r"(?<=[0-9]),(?=[0-9]{3}(?![0-9]))")
_CLOCK = re.compile(r"(?<![0-9])([01]?[0-9]|2[0-3]):([0-5][0-9])(?::([0-5][0-9]))?(?![0-9])")
# Numeric dates, year first: 2004-03-05, 2004/3/5, 2004.3.5 (the separator repeated).
_DATE = re.compile(r"(?<![0-9.])([0-9]{4})([-/.])([0-9]{1,2})\2([0-9]{1,2})(?![0-9])")
# Year ranges: 1998-2004年, 1998到2004年 (both years digit by digit).
_YEAR_RANGE = re.compile(r"(?<![0-9.])([0-9]{4})\s*(?:[-~到至])\s*([0-9]{4})(?=年)")
_DECADE = re.compile(r"(?<![0-9.])([0-9]{1,4})(?=年代)")
_GENERATION = re.compile(r"(?<![0-9.])([0-9]0)(?=后)")
# Words that introduce an identifier read digit by digit (电话 13800138000, 拨打 110, 房间 301).
_ID_CUE = re.compile(r"(电话|手机|号码|热线|拨打|致电|呼叫|传真|分机|座机|房间|房号|门牌|车牌|尾号|卡号|账号|编号|"
                     r"工号|学号|邮编|验证码|QQ)(号码|号)?(\s*(?:是|为|:)?\s*)([0-9]+)")
# Hyphen-joined groups of 3+ digits (010-12345678, 400-800-1234): a phone number, never a range.
_DIGIT_GROUPS = re.compile(r"(?<![0-9.\-])[0-9]{3,4}(?:-[0-9]{3,8})+(?![0-9.])")
# Digit strings that are identifiers rather than quantities (phone numbers, codes): read digit by
# digit. A quantity this long would be written with a unit or separators.
_DIGIT_STRING = re.compile(r"(?<![0-9.])(?:0[0-9]{2,}|[0-9]{11,})(?![0-9.])")
# A range between two numbers: 3-5, 3~5, 10%-20% → 到 (a leading minus sign is not a range).
_RANGE = re.compile(r"(?<=[0-9%])\s*[-~—–]\s*(?=[0-9])")
_ASCII_DIGITS = re.compile(r"[0-9]+")
_NUMERAL = re.compile(r"-?[0-9]+(?:[.,:/][0-9]+)*[%‰]?")
_PER_MILLE = re.compile(r"([0-9]+(?:\.[0-9]+)?)‰")
# A bare "2" counting things is read 两 ("2个" → 两个), but not as an ordinal ("第2个" → 第二个).
_LIANG = re.compile(r"(?<![0-9.第])2(?=[个位次种只本件条张口台辆双对])")
# Unit symbols that NFKC would otherwise turn into Latin letters ("℃" → "°C").
_UNIT_WORDS = (("°C", "摄氏度"), ("°F", "华氏度"))
# Lower-case SI symbols after a number, read as their Chinese unit (5kg → 五公斤). Upper case is left
# alone: 5G is a network, 5M megabytes.
_SI_UNITS = {"km": "公里", "kg": "公斤", "cm": "厘米", "mm": "毫米", "mg": "毫克", "ml": "毫升", "m": "米", "g": "克"}
_SI_UNIT = re.compile(r"([0-9]+(?:\.[0-9]+)?)\s?(km|kg|cm|mm|mg|ml|m|g)(?![A-Za-z])")
_CURRENCY = {"¥": "元", "$": "美元", "€": "欧元", "£": "英镑"}
_CURRENCY_AMOUNT = re.compile(r"([¥$€£])\s?([0-9]+(?:,[0-9]{3})*(?:\.[0-9]+)?)")


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


def digits_to_chinese(digits: str, one: str = "一") -> str:
    """Read a digit string digit by digit (``"110"`` → ``"一一零"``); ``one="幺"`` as in phone numbers."""
    return "".join(one if d == "1" else _DIGIT_ZH[d] for d in digits)


def _identifier(digits: str) -> str:
    """An identifier (phone number, room, code) as spoken: digit by digit, 1 as 幺."""
    return digits_to_chinese(digits, one="幺")


def _number(digits: str) -> str:
    return cn2an.an2cn(str(int(digits)))


def _clock_to_chinese(m: re.Match) -> str:
    hour, minute = int(m.group(1)), int(m.group(2))
    spoken = _number(str(hour)) + "点"
    if minute or m.group(3):
        spoken += ("零" if 0 < minute < 10 else "") + (_number(str(minute)) + "分" if minute else "零分")
    if m.group(3):
        spoken += _number(m.group(3)) + "秒"
    return spoken


def _date_to_chinese(m: re.Match) -> str:
    year, month, day = m.group(1), int(m.group(3)), int(m.group(4))
    if not (1 <= month <= 12 and 1 <= day <= 31):
        return m.group(0)  # not a date (a version number, an IP-like code): left to the later rules
    return f"{digits_to_chinese(year)}年{_number(str(month))}月{_number(str(day))}日"


def _currency(m: re.Match) -> str:
    return m.group(2) + _CURRENCY[m.group(1)]


# Rewrites applied, in this order, to text outside Latin words before cn2an reads what is left.
# Order matters: dates and identifiers must claim their hyphens before ranges do, ranges before
# cn2an would read a hyphen as a minus sign.
_REWRITES: tuple[tuple[re.Pattern, Callable[[re.Match], str]], ...] = (
    (_THOUSANDS, lambda m: ""),
    (_DATE, _date_to_chinese),
    (_YEAR_RANGE, lambda m: f"{digits_to_chinese(m.group(1))}到{digits_to_chinese(m.group(2))}"),
    (_CLOCK, _clock_to_chinese),
    (_ID_CUE, lambda m: m.group(1) + (m.group(2) or "") + m.group(3) + _identifier(m.group(4))),
    (_DIGIT_GROUPS, lambda m: _identifier(m.group(0).replace("-", ""))),
    (_DIGIT_STRING, lambda m: _identifier(m.group(0))),
    (_DECADE, lambda m: _number(m.group(1))),
    (_GENERATION, lambda m: digits_to_chinese(m.group(1))),
    (_PER_MILLE, lambda m: "千分之" + m.group(1)),
    (_RANGE, lambda m: "到"),
    (_LIANG, lambda m: "两"),
)


def _convert_numerals(segment: str, report: NormalizationReport) -> str:
    """Convert every numeral expression in a segment that holds no Latin word."""
    if not any("0" <= c <= "9" for c in segment):
        return segment
    report.numbers.extend(m.group(0) for m in _NUMERAL.finditer(segment))
    for pattern, rewrite in _REWRITES:
        segment = pattern.sub(rewrite, segment)
    try:
        converted = cn2an.transform(segment, "an2cn")
    except Exception:  # cn2an rejects some malformed numerals ("1.2.3"); fall back below
        converted = segment
    # Anything cn2an left (or refused) is read digit by digit rather than dropped.
    return _ASCII_DIGITS.sub(lambda m: digits_to_chinese(m.group(0)), converted)


def _latin_word(word: str, report: NormalizationReport) -> str:
    """An upper-cased Latin word, with attached digits split off and read in Chinese (MP3 → MP 三)."""
    if not any("0" <= c <= "9" for c in word):
        return f" {word.upper()} "
    parts = []
    for run in _LETTERS_OR_DIGITS.findall(word):
        if run[0].isdigit():
            report.numbers.append(run)
            parts.append(_number(run) if len(run) <= 2 else digits_to_chinese(run))
        else:
            parts.append(run.upper())
    return " " + " ".join(parts) + " "


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
    # 2. Units and currency symbols around numbers become words before "5kg" could pass for a
    #    Latin word, then numerals outside Latin words.
    if any("0" <= c <= "9" for c in text):
        text = _SI_UNIT.sub(lambda m: m.group(1) + _SI_UNITS[m.group(2)], text)
        text = _CURRENCY_AMOUNT.sub(_currency, text)
    pieces: list[str] = []
    pos = 0
    for m in _LATIN_WORD.finditer(text):
        pieces.append(_convert_numerals(text[pos : m.start()], report))
        pieces.append(_latin_word(m.group(0), report))
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


#: Most frequent items kept per category in a written summary (the totals are always complete).
SUMMARY_TOP = 50
#: Transcripts kept as before/after examples in a written summary.
SUMMARY_EXAMPLES = 20


@dataclass
class NormalizationSummary:
    """What normalisation did to a whole corpus: the per-transcript reports added up.

    A recipe calls ``add(report)`` for every transcript it normalises (and ``add_markup`` for
    corpus mark-up it removed itself, such as HKUST's noise marks), then ``write`` puts
    ``normalization.json`` next to the manifests: characters dropped, numerals converted, Latin
    and other-script words kept, mark-up removed, with counts and a few before/after examples.
    """

    corpus: str
    transcripts: int = 0
    changed: int = 0
    dropped: Counter = field(default_factory=Counter)
    numbers: Counter = field(default_factory=Counter)
    latin_words: Counter = field(default_factory=Counter)
    other_words: Counter = field(default_factory=Counter)
    markup: Counter = field(default_factory=Counter)
    examples: list[dict[str, str]] = field(default_factory=list)

    def add(self, report: NormalizationReport, item: str = "", original: str | None = None) -> None:
        """Count one transcript; ``original`` is the text as the corpus wrote it (default: the report's input)."""
        original = report.original if original is None else original
        self.transcripts += 1
        self.dropped.update(report.dropped)
        self.numbers.update(report.numbers)
        self.latin_words.update(report.latin_words)
        self.other_words.update(report.other_words)
        if report.text != original:
            self.changed += 1
            if len(self.examples) < SUMMARY_EXAMPLES and (report.dropped or report.numbers or report.other_words):
                self.examples.append({"item": item, "original": original, "normalized": report.text})

    def add_markup(self, marks: Counter | dict[str, int]) -> None:
        """Count corpus mark-up (noise marks, tags) a recipe removed before normalising."""
        self.markup.update(marks)

    def to_dict(self) -> dict:
        def top(c: Counter) -> dict:
            return dict(sorted(c.most_common(SUMMARY_TOP), key=lambda kv: (-kv[1], kv[0])))

        return {
            "corpus": self.corpus,
            "transcripts": self.transcripts,
            "changed": self.changed,
            "characters_dropped": {"total": sum(self.dropped.values()), "by_character": top(self.dropped)},
            "numerals_converted": {"total": sum(self.numbers.values()), "most_common": top(self.numbers)},
            "latin_words_kept": {"total": sum(self.latin_words.values()), "distinct": len(self.latin_words),
                                 "most_common": top(self.latin_words)},
            "other_script_words_kept": {"total": sum(self.other_words.values()), "most_common": top(self.other_words)},
            "markup_removed": {"total": sum(self.markup.values()), "by_mark": top(self.markup)},
            "examples": self.examples,
        }

    def summarise(self, log: logging.Logger) -> None:
        """One INFO line with the totals."""
        log.info("%s: normalised %d transcripts (%d changed): %d characters dropped, %d numerals read as Chinese, "
                 "%d Latin words kept, %d mark-up items removed", self.corpus, self.transcripts, self.changed,
                 sum(self.dropped.values()), sum(self.numbers.values()), sum(self.latin_words.values()),
                 sum(self.markup.values()))

    def write(self, path: str | os.PathLike) -> None:
        """Write the summary (atomically) as JSON."""
        write_json(path, self.to_dict())
