"""An open character vocabulary: the most frequent Mandarin characters, from jieba's dictionary.

With a few hours of transcripts the vocabulary, not the models, is the first limit of a character
recogniser: every dev character that never occurs in the training text (cv_zh: 2.3% of the dev
tokens with 2301 training sentences; far more on smaller samples) is an error no system can avoid. ``lang.unit:
char`` recipes therefore add the ``lang.open_vocab_chars`` most frequent characters of a general
frequency list to the lexicon (words.txt, L.fst), and the LM stage makes them reachable by
interpolating its unigram distribution with the same list (``senone.lm.open_vocab``).

Source: jieba 0.42.1 (MIT licence), ``jieba/dict.txt`` of the installed package: 349,046 lines
``word frequency part-of-speech``, jieba's word counts of its segmented corpora. A character's
frequency is the *summed* frequency of the entries it occurs in (counted once per occurrence: 谢谢
adds twice its count to 谢), i.e. the character's count in the text the dictionary was counted on.
We do not use the single-character entries alone: they count a character only where it stands as a
word of its own, so bound characters (们, 器, 性 ...) rank far too low; on cv_zh dev the top 3000 by
summed frequency leave 1.5% of the dev tokens uncovered, the top 3000 single-character entries 2.9%.
Only CJK characters that pypinyin can read are kept (12,009 of jieba's 12,010).

The added characters get pypinyin's default reading (every reading with ``lang.heteronyms``), as the
lexicon builder gives a training character. A reading that needs a phone the training lexicon does
not have is dropped (and a character left without a reading is skipped and counted): the added words
never change the phone set, so phones.txt's phone ids, the topology and the tree roots are those of
the closed vocabulary, and no phone without training data enters the acoustic model (so models
trained with the closed lexicon also decode through the open one's graph).

N (``lang.open_vocab_chars``, default 7000), measured on dev: cv_zh dev OOV 2.29% (closed, 2616
words) → 1.04% (N = 3000), 0.38% (5000), 0.17% (7000, 7030 words), 0.13% (9000); synth_zh 0.96% →
0.06% for every N. Beyond 7000 the list reaches rare and traditional forms (rank 9000: 躡) for
little coverage, while the graph keeps growing (README, "Lexicon").
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import Mapping

from senone import SenoneError
from senone.lang.lexicon import Lexicon, Phones, mandarin_pronunciations
from senone.lang.segment import is_cjk

log = logging.getLogger(__name__)

SOURCE = ("jieba 0.42.1 jieba/dict.txt (word frequencies), character frequency = summed frequency of the words "
          "it occurs in")
LICENCE = "MIT (jieba)"
DEFAULT_NUM_CHARS = 7000  # lang.open_vocab_chars in conf/lang.yaml (README "Lexicon": chosen on dev OOV and graph size)
CHAR_FREQ_FILE = "char_freq.txt"  # in the lang dir: "char<TAB>frequency" for every lexicon word the list has


def jieba_dict_path() -> Path:
    """The installed jieba's ``dict.txt``."""
    import jieba

    path = Path(jieba.__file__).with_name("dict.txt")
    if not path.is_file():
        raise SenoneError(f"{path}: jieba's dictionary is missing; reinstall jieba (pip install jieba==0.42.1)")
    return path


@functools.lru_cache(maxsize=2)
def _char_frequencies(path: str) -> dict[str, int]:
    freq: dict[str, int] = {}
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            parts = line.split()
            if len(parts) < 2:
                continue
            try:
                count = int(parts[1])
            except ValueError:
                raise SenoneError(f"{path}:{lineno}: expected 'word frequency [pos]', got {line.strip()!r}") from None
            for ch in parts[0]:
                if is_cjk(ch):
                    freq[ch] = freq.get(ch, 0) + count
    return freq


def char_frequencies(dict_path: str | Path | None = None) -> dict[str, int]:
    """CJK character → summed frequency of the dictionary words it occurs in (jieba's by default)."""
    return dict(_char_frequencies(str(dict_path or jieba_dict_path())))


def common_characters(num_chars: int, freq: Mapping[str, int] | None = None) -> list[tuple[str, int]]:
    """The ``num_chars`` most frequent characters that pypinyin can read, as (char, frequency), most
    frequent first (ties by code point, so the list is deterministic)."""
    if num_chars < 0:
        raise SenoneError(f"lang.open_vocab_chars={num_chars}: must be 0 (closed vocabulary) or more")
    if num_chars == 0:
        return []
    freq = char_frequencies() if freq is None else freq
    out = []
    for ch, n in sorted(freq.items(), key=lambda kv: (-kv[1], kv[0])):
        if n > 0 and is_cjk(ch) and mandarin_pronunciations(ch):
            out.append((ch, n))
            if len(out) == num_chars:
                break
    return out


def add_common_characters(
    lexicon: Lexicon,
    num_chars: int = DEFAULT_NUM_CHARS,
    *,
    heteronyms: bool = False,
    apical_i: bool = True,
    freq: Mapping[str, int] | None = None,
) -> dict:
    """Add the ``num_chars`` most frequent characters (:func:`common_characters`) that ``lexicon``
    lacks, each with its pypinyin reading(s) restricted to the lexicon's own phones.

    Returns a description for lang.json (``added``, ``skipped_new_phones``, source, licence) with
    ``frequencies``: char → frequency for every lexicon word the list knows (the LM stage's unigram
    prior; see ``senone.lm.open_vocab``). ``num_chars=0`` adds nothing (the closed vocabulary).
    """
    freq = char_frequencies() if freq is None else freq
    top = common_characters(num_chars, freq)
    phones = set(lexicon.nonsilence_phones())
    added: list[str] = []
    skipped: list[str] = []
    for ch, _ in top:
        if ch in lexicon:
            continue
        prons: list[Phones] = [p for p in mandarin_pronunciations(ch, apical_i=apical_i, heteronyms=heteronyms)
                               if set(p) <= phones]
        if not prons:
            skipped.append(ch)
            continue
        for p in prons:
            lexicon.add(ch, p)
        added.append(ch)
    if skipped:
        log.info("open vocabulary: %d of the %d common characters need a phone the training lexicon lacks and "
                 "were left out (e.g. %s)", len(skipped), len(top), " ".join(skipped[:10]))
    known = {w: freq[w] for w in lexicon.words() if freq.get(w, 0) > 0}
    return {
        "chars": num_chars,
        "added": len(added),
        "skipped_new_phones": skipped,
        "source": SOURCE,
        "licence": LICENCE,
        "frequencies": known,
    }


def char_freq_text(frequencies: Mapping[str, int]) -> str:
    """``char_freq.txt``: ``char<TAB>frequency``, most frequent first."""
    return "".join(f"{w}\t{n}\n" for w, n in sorted(frequencies.items(), key=lambda kv: (-kv[1], kv[0])))


def read_char_freq(path: str | Path) -> dict[str, int]:
    """Read ``char_freq.txt`` back."""
    out: dict[str, int] = {}
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 2 or not parts[1].isdigit():
                raise SenoneError(f"{path}:{lineno}: expected 'char frequency', got {line.strip()!r}; "
                                  "rebuild the lang dir")
            out[parts[0]] = int(parts[1])
    return out


__all__ = ["CHAR_FREQ_FILE", "DEFAULT_NUM_CHARS", "LICENCE", "SOURCE", "add_common_characters", "char_freq_text",
                          "char_frequencies", "common_characters", "read_char_freq"]
