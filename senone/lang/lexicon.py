"""Pronunciation lexicons: Mandarin from pypinyin (+ readings observed in the audio), user files.

Mandarin phone set (as in Kaldi's Mandarin recipes: initials + tonal finals)
------------------------------------------------------------------------------
A syllable becomes its initial (if any) followed by its final with the tone digit attached:
你好 ``ni3 hao3`` → ``n i3 h ao3``. Initials and finals are pypinyin's *strict* ones
(``Style.INITIALS`` / ``Style.FINALS_TONE3`` with ``strict=True``), which follow the Hanyu Pinyin
scheme rather than its spelling:

* Zero-initial syllables have no initial phone; y/w are spelling, not phones, so the final carries
  the glide: 一 yi1 → ``i1``, 五 wu3 → ``u3``, 鱼 yu2 → ``v2``, 有 you3 → ``iou3``, 为 wei4 →
  ``uei4``, 元 yuan2 → ``van2``; 爱 ai4 → ``ai4``. The same final therefore means the same sound with
  or without an initial (liu2 → ``l iou2`` shares ``iou2`` with you2), which keeps the phone set
  consistent. The 21 initials are b p m f d t n l g k h j q x zh ch sh r z c s.
* ü is written ``v`` (``l v4``, ``j van1``) so every phone is ASCII.
* Neutral tone is 5 (的 ``d e5``); a reading given without a tone digit, or with 0, is neutral.
* ``apical_i=True`` (default) writes the apical vowel of zi/ci/si/zhi/chi/shi/ri as ``ix`` (是
  ``sh ix4``) instead of sharing ``i`` with yi/ji/ni: the two are different sounds, and a monophone
  system cannot separate them by context. Set it False for the plain pypinyin finals.
* Syllabic nasals and the like, which pypinyin leaves without a final, are mapped to the nearest
  regular syllable: n/ng (嗯) → ``en``/``eng``, m (呣) → ``m u``, hm/hng → ``h en``/``h eng``,
  r (儿 as a suffix) → ``er``, ê → ``e``; tones kept.

Words and characters
--------------------
Multi-character words get pypinyin's phrase-aware reading (银行 → ``yin2 hang2``, not xing2); a
single character (every unit in char-LM mode) gets its default reading (一 → yi1), or all of
pypinyin's heteronym readings with ``heteronyms=True`` (yi1, yi2, yi4; off by default, see
:func:`mandarin_pronunciations`). Readings *observed* in the
audio (the synthesiser's own tonal syllables) are added as further variants, so that the lexicon's
tones match what was spoken (espeak's tone differs from pypinyin's citation tone in about 5% of
syllables); ``prefer_observed=True`` keeps only the observed readings for words that have them.

Latin words have no Mandarin reading: they take a user lexicon entry if one is given, otherwise
they are spelt letter by letter with the Mandarin-accented letter names (``spell_latin=True``),
which is what a Mandarin speaker says for an acronym. A word that still has no pronunciation
(digits, punctuation, a character pypinyin cannot read) is *reported*, never dropped silently: the
builder returns it and the caller decides (usually: map it to ``<UNK>`` and count it).

``<UNK>`` is pronounced with the spoken-noise phone ``SPN``; ``SIL`` is the optional silence.

An open character vocabulary (the most frequent characters of jieba's dictionary beyond the training
text) is added on top of this lexicon by ``senone.lang.common_chars``.
"""

from __future__ import annotations

import functools
import io
import logging
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Sequence

from senone import SenoneError
from senone.io import atomic_open, read_utf8
from senone.lang.segment import is_cjk_word, is_latin_word

log = logging.getLogger(__name__)

SIL = "SIL"
SPN = "SPN"
UNK = "<UNK>"
SILENCE_PHONES: tuple[str, ...] = (SIL, SPN)

# Symbols that Kaldi reserves in words.txt / phones.txt; no lexicon word or phone may use them.
_RESERVED_WORDS = {"<eps>", "<s>", "</s>", "#0"}
_DISAMBIG = re.compile(r"#\d+")

INITIALS = ("b", "p", "m", "f", "d", "t", "n", "l", "g", "k", "h", "j", "q", "x",
            "zh", "ch", "sh", "r", "z", "c", "s")
_APICAL_INITIALS = {"z", "c", "s", "zh", "ch", "sh", "r"}

# Syllables pypinyin leaves without a final → (initial, toneless final) we use instead.
_SPECIAL_SYLLABLES = {
    "n": ("", "en"), "ng": ("", "eng"), "m": ("m", "u"),
    "hm": ("h", "en"), "hng": ("h", "eng"), "r": ("", "er"), "ê": ("", "e"),
}

# Mandarin-accented English letter names, as tonal pinyin syllables (all valid syllables).
LETTER_SYLLABLES: dict[str, tuple[str, ...]] = {
    "A": ("ei1",), "B": ("bi4",), "C": ("xi1",), "D": ("di4",), "E": ("yi4",),
    "F": ("ai2", "fu5"), "G": ("ji4",), "H": ("ai2", "qi1"), "I": ("ai4",), "J": ("zhei4",),
    "K": ("kei4",), "L": ("ai2", "ou5"), "M": ("ai2", "mu5"), "N": ("en1",), "O": ("ou1",),
    "P": ("pi4",), "Q": ("qiu1",), "R": ("a3", "er5"), "S": ("ai2", "si1"), "T": ("ti4",),
    "U": ("you1",), "V": ("wei1",), "W": ("da2", "bu5", "liu5"), "X": ("ai2", "ke4", "si1"),
    "Y": ("wai4",), "Z": ("zei4",),
}

Phones = tuple[str, ...]


@dataclass
class Lexicon:
    """A pronunciation lexicon: word → distinct pronunciations, each with a probability.

    Probabilities follow Kaldi's ``lexiconp.txt`` convention (the most likely pronunciation of a
    word has 1.0; all 1.0 when there are no pronunciation probabilities). The silence phones and
    the OOV word travel with the lexicon so that ``prepare_lang`` needs nothing else.
    """

    prons: dict[str, dict[Phones, float]] = field(default_factory=dict)
    silence_phones: tuple[str, ...] = SILENCE_PHONES
    optional_silence: str = SIL
    oov_word: str = UNK

    def add(self, word: str, phones: Sequence[str], prob: float = 1.0) -> None:
        """Add a pronunciation (a duplicate keeps the larger probability)."""
        if not word or any(c.isspace() for c in word):
            raise SenoneError(f"lexicon word {word!r}: must be non-empty without whitespace")
        if word in _RESERVED_WORDS or _DISAMBIG.fullmatch(word):
            raise SenoneError(f"lexicon word {word!r}: reserved symbol in Kaldi lang dirs; rename it")
        phones = tuple(phones)
        if not phones:
            raise SenoneError(f"lexicon word {word!r}: empty pronunciation; give at least one phone")
        for p in phones:
            if p == "<eps>" or _DISAMBIG.fullmatch(p) or any(c.isspace() for c in p):
                raise SenoneError(f"lexicon word {word!r}: phone {p!r} is reserved or malformed")
        if not (0.0 < prob <= 1.0) or math.isnan(prob):
            raise SenoneError(f"lexicon word {word!r}: pronunciation probability {prob} not in (0, 1]")
        word_prons = self.prons.setdefault(word, {})
        word_prons[phones] = max(prob, word_prons.get(phones, 0.0))

    def __contains__(self, word: object) -> bool:
        return word in self.prons

    def __len__(self) -> int:
        return len(self.prons)

    def words(self) -> list[str]:
        """Words in Kaldi's ``sort`` order (code point order = C-locale byte order for UTF-8)."""
        return sorted(self.prons)

    def entries(self) -> Iterator[tuple[str, float, Phones]]:
        """(word, prob, phones) in a canonical order: by word, then by phone string.

        The order is content-determined (not insertion-determined), so the disambiguation symbols
        and FST state numbers do not depend on the order the corpus was read in.
        """
        for word in self.words():
            for phones in sorted(self.prons[word], key=" ".join):
                yield word, self.prons[word][phones], phones

    def num_entries(self) -> int:
        return sum(len(p) for p in self.prons.values())

    def phones(self) -> set[str]:
        """All phones used by some pronunciation, plus the silence phones."""
        used = {p for prons in self.prons.values() for phones in prons for p in phones}
        return used | set(self.silence_phones)

    def nonsilence_phones(self) -> list[str]:
        """Phones other than the silence phones, sorted."""
        return sorted(self.phones() - set(self.silence_phones))

    def update(self, other: "Lexicon") -> None:
        """Add every pronunciation of ``other``."""
        for word, prob, phones in other.entries():
            self.add(word, phones, prob)

    def write(self, path: str | os.PathLike, *, with_probs: bool = False) -> None:
        """Write ``lexicon.txt`` (``word p1 p2 ...``) or ``lexiconp.txt`` (``word prob p1 ...``)."""
        with atomic_open(path) as f:
            for word, prob, phones in self.entries():
                if with_probs:
                    f.write(f"{word}\t{prob:g}\t{' '.join(phones)}\n")
                else:
                    f.write(f"{word}\t{' '.join(phones)}\n")


def read_lexicon(path: str | os.PathLike, *, with_probs: bool = False,
                 silence_phones: Sequence[str] = SILENCE_PHONES,
                 optional_silence: str = SIL, oov_word: str = UNK) -> Lexicon:
    """Read a lexicon file: ``word phone1 phone2 ...`` per line (``word prob phone1 ...`` with
    ``with_probs``), e.g. an English lexicon or a user's corrections. Blank lines and lines
    starting with ``;;`` (CMUdict comments) are skipped."""
    path = Path(path)
    if not path.is_file():
        raise SenoneError(f"{path}: lexicon file not found; check the lexicon path in the recipe config")
    lex = Lexicon(silence_phones=tuple(silence_phones), optional_silence=optional_silence, oov_word=oov_word)
    text = read_utf8(path, "the lexicon")  # one clear line naming the file when it is not UTF-8
    for lineno, line in enumerate(io.StringIO(text, newline=None), 1):  # lines as open() gives them
        parts = line.split()
        if not parts or parts[0].startswith(";;"):
            continue
        word, rest = parts[0], parts[1:]
        prob = 1.0
        if with_probs:
            try:
                prob = float(rest[0])
                rest = rest[1:]
            except (IndexError, ValueError):
                raise SenoneError(f"{path}:{lineno}: expected 'word prob phone...', got {line.strip()!r}") from None
        if not rest:
            raise SenoneError(f"{path}:{lineno}: word {word!r} has no phones; add its pronunciation")
        try:
            lex.add(word, rest, prob)
        except SenoneError as e:
            raise SenoneError(f"{path}:{lineno}: {e}") from None
    return lex


# --------------------------------------------------------------------------------------------
# Mandarin syllables → phones
# --------------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=1)
def valid_syllables() -> frozenset[str]:
    """Every toneless pinyin syllable pypinyin knows (about 430), ü written ``v``."""
    from pypinyin.contrib.tone_convert import to_normal
    from pypinyin.pinyin_dict import pinyin_dict

    readings = {r for v in pinyin_dict.values() for r in v.split(",")}
    return frozenset(to_normal(r).replace("ü", "v") for r in readings)


_SYLLABLE = re.compile(r"([a-zêü:]+)([0-5]?)")


@functools.lru_cache(maxsize=4096)
def syllable_to_phones(syllable: str, *, apical_i: bool = True) -> tuple[str, ...]:
    """Tonal pinyin syllable → (initial, tonal final) phones: ``ni3`` → ``('n', 'i3')``,
    ``yi1`` → ``('i1',)``, ``de`` → ``('d', 'e5')``. Raises SenoneError for a non-syllable."""
    from pypinyin.contrib.tone_convert import to_finals, to_initials

    s = syllable.strip().lower().replace("u:", "v").replace("ü", "v")
    m = _SYLLABLE.fullmatch(s)
    if not m or m.group(1) not in valid_syllables() and m.group(1) not in _SPECIAL_SYLLABLES:
        raise SenoneError(f"pinyin syllable {syllable!r}: not a Mandarin syllable (expected e.g. 'ni3')")
    base, tone = m.group(1), m.group(2)
    tone = "5" if tone in ("", "0") else tone
    if base in _SPECIAL_SYLLABLES:
        initial, final = _SPECIAL_SYLLABLES[base]
    else:
        initial = to_initials(base, strict=True)
        final = to_finals(base, strict=True).replace("ü", "v")
        if not final:  # defensive: a syllable pypinyin splits without a final
            raise SenoneError(f"pinyin syllable {syllable!r}: pypinyin gives it no final")
    if apical_i and final == "i" and initial in _APICAL_INITIALS:
        final = "ix"
    return (initial, final + tone) if initial else (final + tone,)


def syllables_to_phones(syllables: Sequence[str], *, apical_i: bool = True) -> Phones:
    """A sequence of tonal syllables → one phone sequence."""
    return tuple(p for s in syllables for p in syllable_to_phones(s, apical_i=apical_i))


def _pinyin_readings(word: str, heteronym: bool) -> list[list[str]]:
    """pypinyin's tonal syllables per character ('' where it has none)."""
    from pypinyin import Style, pinyin

    return pinyin(word, style=Style.TONE3, heteronym=heteronym, neutral_tone_with_five=True,
                  errors=lambda chars: [""] * len(chars))


def mandarin_pronunciations(word: str, *, apical_i: bool = True, heteronyms: bool = False) -> list[Phones]:
    """pypinyin pronunciations of a CJK word: the default reading of a single character (all its
    heteronym readings with ``heteronyms=True``), the phrase-aware reading of a longer word; [] when
    pypinyin cannot read it.

    Heteronyms are off by default: rare readings (大 tai4, 是 ti2, 说 yue4...) let the decoder turn
    a correctly heard syllable into a frequent character, which cost 3 points of CER on synth_zh;
    the readings a character really takes in the training text come in as observed readings.
    """
    if not is_cjk_word(word):
        return []
    if len(word) == 1:
        readings = _pinyin_readings(word, heteronym=heteronyms)
        out: list[Phones] = []
        for syl in readings[0] if readings else []:
            try:
                phones = syllable_to_phones(syl, apical_i=apical_i)
            except SenoneError:
                continue
            if phones not in out:
                out.append(phones)
        return out
    readings = _pinyin_readings(word, heteronym=False)
    if len(readings) != len(word) or any(not r or not r[0] for r in readings):
        return []
    try:
        return [syllables_to_phones([r[0] for r in readings], apical_i=apical_i)]
    except SenoneError:
        return []


def spell_latin(word: str, *, apical_i: bool = True) -> Phones:
    """Letter-by-letter Mandarin-accented spelling of a Latin word (apostrophes/hyphens silent)."""
    syllables = [s for ch in word.upper() if ch in LETTER_SYLLABLES for s in LETTER_SYLLABLES[ch]]
    return syllables_to_phones(syllables, apical_i=apical_i)


def observed_readings(units: Sequence[str], syllables: str | Sequence[str]) -> list[tuple[str, list[str]]]:
    """Pair each CJK unit with the syllables spoken for it.

    ``syllables`` holds one tonal syllable per CJK character of the utterance, in order (the synthetic
    corpus's ``supervision.custom["pinyin"]``, e.g. ``"ni3 hao3"``); ``units`` is ``to_units(text, unit)``
    of the same text. Units that are not CJK (Latin words) consume no syllables. Raises SenoneError
    when the counts disagree, because pairing them anyway would attach wrong tones to every later word.
    """
    syls = syllables.split() if isinstance(syllables, str) else list(syllables)
    pairs: list[tuple[str, list[str]]] = []
    pos = 0
    for u in units:
        if not is_cjk_word(u):
            continue
        pairs.append((u, syls[pos:pos + len(u)]))
        pos += len(u)
    if pos != len(syls):
        raise SenoneError(
            f"observed pinyin has {len(syls)} syllables but the text has {pos} CJK characters "
            f"({' '.join(units)!r}); regenerate the corpus so that custom['pinyin'] has one syllable per character")
    return pairs


def collect_vocabulary(*token_lists: Iterable[Sequence[str]]) -> list[str]:
    """All distinct units of the given token lists (training transcripts, extra LM text), sorted.

    This is the lexicon's vocabulary: dev/test transcripts must not be passed here.
    """
    vocab: set[str] = set()
    for lists in token_lists:
        for tokens in lists:
            vocab.update(tokens)
    return sorted(vocab)


def build_mandarin_lexicon(
    words: Iterable[str],
    *,
    observed: Iterable[tuple[str, Sequence[str]]] = (),
    user_lexicon: Lexicon | None = None,
    prefer_observed: bool = False,
    spell_latin_words: bool = True,
    apical_i: bool = True,
    heteronyms: bool = False,
) -> tuple[Lexicon, list[str]]:
    """Build the Mandarin lexicon for ``words`` (the LM vocabulary).

    Per word, in order of precedence: ``user_lexicon`` entries (all of them, nothing else); else
    pypinyin's readings (default reading of a single character, all of them with ``heteronyms``;
    phrase reading for longer words) plus the
    ``observed`` readings of that word (only the observed ones with ``prefer_observed`` when there
    are any); a Latin word without a user entry is spelt (``spell_latin_words``). Observed pairs
    (from :func:`observed_readings`) whose word is not in ``words`` are ignored; an observed syllable
    that is not Mandarin is skipped and counted in a warning. ``<UNK>`` → ``SPN`` is always added.

    Returns ``(lexicon, unpronounceable)``: the words that got no pronunciation, sorted. They are not
    in the lexicon; the caller decides (map to ``<UNK>`` and count, or fail).
    """
    word_list = sorted(set(words))
    wanted = set(word_list)
    lex = Lexicon()
    seen: dict[str, list[Phones]] = {}
    bad_observed: dict[str, int] = {}
    for word, syls in observed:
        if word not in wanted:
            continue
        try:
            phones = syllables_to_phones(list(syls), apical_i=apical_i)
        except SenoneError:
            bad_observed[word] = bad_observed.get(word, 0) + 1
            continue
        if len(syls) != len(word):
            bad_observed[word] = bad_observed.get(word, 0) + 1
            continue
        variants = seen.setdefault(word, [])
        if phones not in variants:
            variants.append(phones)
    if bad_observed:
        log.warning("skipped %d observed readings of %d words that are not Mandarin syllables (e.g. %s)",
                    sum(bad_observed.values()), len(bad_observed), ", ".join(sorted(bad_observed)[:5]))

    unpronounceable: list[str] = []
    for word in word_list:
        if word == lex.oov_word:
            continue
        if user_lexicon is not None and word in user_lexicon:
            for phones, prob in user_lexicon.prons[word].items():
                lex.add(word, phones, prob)
            continue
        if is_cjk_word(word):
            obs = seen.get(word, [])
            prons = obs if (prefer_observed and obs) else mandarin_pronunciations(word, apical_i=apical_i, heteronyms=heteronyms) + obs
        elif is_latin_word(word) and spell_latin_words:
            prons = [spell_latin(word, apical_i=apical_i)]
        else:
            prons = []
        if not prons:
            unpronounceable.append(word)
            continue
        for phones in prons:
            lex.add(word, phones)
    lex.add(lex.oov_word, (SPN,))
    if unpronounceable:
        log.warning("%d of %d words have no pronunciation (e.g. %s)", len(unpronounceable), len(word_list),
                    ", ".join(unpronounceable[:5]))
    return lex, unpronounceable


def replace_oov(tokens: Sequence[str], vocabulary: Iterable[str] | Lexicon, oov_word: str = UNK) -> tuple[list[str], int]:
    """Map tokens outside ``vocabulary`` to ``oov_word``; returns (tokens, number replaced)."""
    vocab = vocabulary if isinstance(vocabulary, Lexicon) else set(vocabulary)
    out = [t if t in vocab else oov_word for t in tokens]
    return out, sum(1 for a, b in zip(tokens, out) if a != b)
