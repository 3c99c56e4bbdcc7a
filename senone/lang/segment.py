"""Split normalised transcripts into LM/lexicon units: jieba words or single CJK characters.

The unit decides what a "word" is everywhere downstream (words.txt, the lexicon, the n-gram LM, the
decoder's output), so the same call must be used for training text, extra LM text and the observed
pinyin readings. Latin words (already upper-cased by normalisation) stay whole in both modes, as in
Kaldi's HKUST recipe.

jieba is initialised once per process *without* its cache file: jieba normally pickles its prefix
dictionary to ``/tmp/jieba.cache`` and, for the default dictionary, trusts whatever file it finds
there, so a stale or foreign cache could change the segmentation between machines, and several
processes may race to rewrite it. Building the prefix dictionary from jieba's own ``dict.txt`` takes
about 0.6 s, no more than loading the cache, so we skip the cache entirely: no file is written.
"""

from __future__ import annotations

import logging
import re
import threading
from typing import Literal

from senone import SenoneError

Unit = Literal["word", "char"]

# CJK ideographs pypinyin can read: unified (+ extension A), compatibility ideographs, the
# extension planes, and U+3007 (〇, read "ling2").
_CJK_CLASS = "\u3007\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002ffff"
_CJK_CHAR = re.compile(f"[{_CJK_CLASS}]")
_CJK_RUN = re.compile(f"[{_CJK_CLASS}]+")
# A Latin word: letters, optionally joined by apostrophes or hyphens (DON'T, E-MAIL).
_LATIN_WORD = re.compile(r"[A-Za-z]+(?:['\-][A-Za-z]+)*")
# Script runs inside one whitespace-free chunk: CJK run | Latin word | anything else (one run).
_RUNS = re.compile(f"([{_CJK_CLASS}]+)|({_LATIN_WORD.pattern})|([^{_CJK_CLASS}A-Za-z\\s]+)")

_jieba_lock = threading.Lock()
_jieba_tokenizer = None


def is_cjk(ch: str) -> bool:
    """True if the single character ``ch`` is a CJK ideograph."""
    return bool(_CJK_CHAR.fullmatch(ch))


def is_cjk_word(token: str) -> bool:
    """True if every character of ``token`` is a CJK ideograph (and it is not empty)."""
    return bool(token) and bool(_CJK_RUN.fullmatch(token))


def is_latin_word(token: str) -> bool:
    """True if ``token`` is one Latin word (letters with inner apostrophes/hyphens)."""
    return bool(_LATIN_WORD.fullmatch(token))


def _tokenizer():
    """The process-wide jieba tokenizer, built once from jieba's dictionary without a cache file."""
    global _jieba_tokenizer
    if _jieba_tokenizer is not None:
        return _jieba_tokenizer
    with _jieba_lock:
        if _jieba_tokenizer is None:
            import jieba

            jieba.setLogLevel(logging.WARNING)  # jieba logs its loading at DEBUG to stderr
            tok = jieba.Tokenizer()
            try:
                # Same work as Tokenizer.initialize() minus the cache read/write in /tmp.
                with tok.get_dict_file() as f:
                    tok.FREQ, tok.total = tok.gen_pfdict(f)
                tok.initialized = True
            except AttributeError:  # a jieba without these hooks: fall back to its own init
                tok.initialize()
            _jieba_tokenizer = tok
    return _jieba_tokenizer


def _split_runs(chunk: str) -> list[tuple[str, str]]:
    """Split a whitespace-free chunk into (kind, text) runs, kind in {'cjk', 'latin', 'other'}."""
    runs = []
    for m in _RUNS.finditer(chunk):
        if m.group(1):
            runs.append(("cjk", m.group(1)))
        elif m.group(2):
            runs.append(("latin", m.group(2)))
        else:
            runs.append(("other", m.group(0)))
    return runs


def to_units(text: str, unit: Unit = "word", *, hmm: bool = False) -> list[str]:
    """Split a normalised transcript into units.

    ``unit='char'``: one token per CJK character. ``unit='word'``: jieba's dictionary segmentation of
    each CJK run (``hmm=False`` by default: jieba's HMM invents words for unseen character pairs,
    which only adds OOVs to a word LM; without it, unknown stretches fall back to single
    characters). In both modes a Latin word stays one token, whitespace separates, and any other
    non-space run (digits, punctuation left by normalisation) is kept as one token so that the
    lexicon builder can report it rather than drop it silently.
    """
    if unit not in ("word", "char"):
        raise SenoneError(f"unit {unit!r}: must be 'word' or 'char' (set lm unit in the recipe config)")
    out: list[str] = []
    for chunk in text.split():
        for kind, run in _split_runs(chunk):
            if kind != "cjk":
                out.append(run)
            elif unit == "char":
                out.extend(run)
            else:
                out.extend(w for w in _tokenizer().cut(run, HMM=hmm) if not w.isspace())
    return out
