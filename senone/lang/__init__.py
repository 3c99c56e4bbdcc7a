"""Lexicons, symbol tables and the lexicon FST: Kaldi's dict/lang preparation in Python.

``segment``     text → units (jieba words or CJK characters)
``lexicon``     Mandarin pronunciations (pypinyin + observed readings), user lexicons
``common_chars`` the open character vocabulary: the most frequent characters of jieba's dictionary (MIT)
``lexicon_fst`` L.fst / L_disambig.fst (Kaldi's make_lexicon_fst + add_lex_disambig)
``prepare``     prepare_lang → a Kaldi lang dir; load_lang → ``Lang`` for later stages
"""

from senone.lang.lexicon import (
    SIL,
    SPN,
    UNK,
    Lexicon,
    build_mandarin_lexicon,
    collect_vocabulary,
    observed_readings,
    read_lexicon,
    replace_oov,
    syllable_to_phones,
)
from senone.lang.prepare import Lang, load_lang, prepare_lang
from senone.lang.segment import to_units

__all__ = [
    "SIL", "SPN", "UNK", "Lexicon", "Lang", "build_mandarin_lexicon", "collect_vocabulary",
    "load_lang", "observed_readings", "prepare_lang", "read_lexicon", "replace_oov",
    "syllable_to_phones", "to_units",
]
