"""Tests for senone.lang: segmentation, Mandarin lexicon, disambiguation, L FSTs, lang dir."""

from __future__ import annotations

import kaldifst
import pytest

from senone import SenoneError
from senone.lang import (
    Lexicon,
    build_mandarin_lexicon,
    collect_vocabulary,
    load_lang,
    observed_readings,
    prepare_lang,
    read_lexicon,
    replace_oov,
    syllable_to_phones,
    to_units,
)
from senone.lang.lexicon import mandarin_pronunciations
from senone.lang.lexicon_fst import add_disambig_symbols


# ----------------------------------------------------------------------------- segmentation

def test_to_units_char_and_word():
    text = "我们去银行 HELLO 你好"
    assert to_units(text, "char") == ["我", "们", "去", "银", "行", "HELLO", "你", "好"]
    words = to_units(text, "word")
    assert words == ["我们", "去", "银行", "HELLO", "你好"]
    assert to_units(text, "word") == words  # deterministic


def test_to_units_splits_scripts_and_keeps_other_tokens():
    # a Latin letter glued to CJK is split off; digits/punctuation survive as tokens to be reported
    assert to_units("A股2024年", "char") == ["A", "股", "2024", "年"]
    assert to_units("DON'T 走", "word") == ["DON'T", "走"]
    with pytest.raises(SenoneError):
        to_units("你好", "syllable")


# ----------------------------------------------------------------------------- syllables

@pytest.mark.parametrize("syl,phones", [
    ("ni3", ("n", "i3")), ("hao3", ("h", "ao3")),
    ("yi1", ("i1",)), ("wu3", ("u3",)), ("yu2", ("v2",)), ("you3", ("iou3",)),
    ("wei4", ("uei4",)), ("yuan2", ("van2",)), ("ai4", ("ai4",)),
    ("liu2", ("l", "iou2")), ("lv4", ("l", "v4")), ("lü4", ("l", "v4")),
    ("de", ("d", "e5")), ("de0", ("d", "e5")), ("shi4", ("sh", "ix4")), ("n2", ("en2",)),
])
def test_syllable_to_phones(syl, phones):
    assert syllable_to_phones(syl) == phones


def test_syllable_to_phones_options_and_errors():
    assert syllable_to_phones("shi4", apical_i=False) == ("sh", "i4")
    assert syllable_to_phones("ji1") == ("j", "i1")  # not apical
    for bad in ("xyz3", "ni9", "", "hello"):
        with pytest.raises(SenoneError):
            syllable_to_phones(bad)


# ----------------------------------------------------------------------------- lexicon

def test_known_words():
    assert mandarin_pronunciations("你好") == [("n", "i3", "h", "ao3")]
    # phrase-aware: 银行 is yin2 hang2, never xing2
    assert mandarin_pronunciations("银行") == [("in2", "h", "ang2")]
    # a single character gets its default reading; every heteronym reading only on request
    assert mandarin_pronunciations("一") == [("i1",)]
    yi = mandarin_pronunciations("一", heteronyms=True)
    assert {("i1",), ("i2",), ("i4",)} <= set(yi)
    hang = mandarin_pronunciations("行", heteronyms=True)
    assert ("x", "ing2") in hang and ("h", "ang2") in hang
    assert mandarin_pronunciations("2024") == []


def test_build_lexicon_reports_unpronounceable_and_adds_observed():
    words = ["你好", "好", "ABC", "2024", "，"]
    obs = observed_readings(to_units("你好 ABC", "word"), "ni2 hao3")
    assert obs == [("你好", ["ni2", "hao3"])]
    lex, bad = build_mandarin_lexicon(words, observed=obs)
    assert bad == ["2024", "，"]
    assert "2024" not in lex and "，" not in lex
    assert set(lex.prons["你好"]) == {("n", "i3", "h", "ao3"), ("n", "i2", "h", "ao3")}
    assert ("ei1", "b", "i4", "x", "i1") in lex.prons["ABC"]  # spelt letter by letter
    assert list(lex.prons["<UNK>"]) == [("SPN",)]
    assert "SIL" not in lex.nonsilence_phones() and "SPN" not in lex.nonsilence_phones()

    lex2, _ = build_mandarin_lexicon(["你好"], observed=obs, prefer_observed=True)
    assert set(lex2.prons["你好"]) == {("n", "i2", "h", "ao3")}
    # an observed reading that is not Mandarin is skipped, the pypinyin one stays
    lex3, bad3 = build_mandarin_lexicon(["你好"], observed=[("你好", ["xx9", "hao3"])])
    assert bad3 == [] and set(lex3.prons["你好"]) == {("n", "i3", "h", "ao3")}


def test_observed_readings_mismatch_and_char_mode():
    units = to_units("你好世界", "char")
    assert observed_readings(units, ["ni3", "hao3", "shi4", "jie4"])[2] == ("世", ["shi4"])
    with pytest.raises(SenoneError):
        observed_readings(units, "ni3 hao3 shi4")


def test_user_lexicon_and_helpers(tmp_path):
    p = tmp_path / "lex.txt"
    p.write_text(";; comment\nHELLO HH AH0 L OW1\nHELLO HH EH0 L OW1\n\nWORLD W ER1 L D\n", encoding="utf-8")
    user = read_lexicon(p)
    assert len(user) == 2 and len(user.prons["HELLO"]) == 2
    lex, bad = build_mandarin_lexicon(["HELLO", "你"], user_lexicon=user)
    assert bad == [] and ("HH", "AH0", "L", "OW1") in lex.prons["HELLO"]
    (tmp_path / "bad.txt").write_text("WORD\n", encoding="utf-8")
    with pytest.raises(SenoneError, match="bad.txt:1"):
        read_lexicon(tmp_path / "bad.txt")
    assert collect_vocabulary([["a", "b"]], [["b", "c"]]) == ["a", "b", "c"]
    assert replace_oov(["a", "x", "b"], ["a", "b"]) == (["a", "<UNK>", "b"], 1)
    with pytest.raises(SenoneError):
        Lexicon().add("#0", ["a"])


# ----------------------------------------------------------------------------- disambiguation

def test_add_disambig_symbols_prefix_and_identical():
    entries = [
        ("A", 1.0, ("x", "y")),        # prefix of B's pronunciation
        ("B", 1.0, ("x", "y", "z")),
        ("C", 1.0, ("p", "q")),        # identical to D
        ("D", 1.0, ("p", "q")),
        ("E", 1.0, ("p",)),            # prefix of C/D
        ("F", 1.0, ("k",)),            # unique, not a prefix
    ]
    out, max_d = add_disambig_symbols(entries)
    got = {w: phones for w, _, phones in out}
    assert got["A"] == ("x", "y", "#1")
    assert got["B"] == ("x", "y", "z")
    assert got["C"] == ("p", "q", "#1") and got["D"] == ("p", "q", "#2")
    assert got["E"] == ("p", "#1")
    assert got["F"] == ("k",)
    assert max_d == 2


# ----------------------------------------------------------------------------- lang dir and L

def _toy_lexicon() -> Lexicon:
    lex = Lexicon()
    lex.add("A", ["x", "y"])
    lex.add("B", ["x", "y", "z"])
    lex.add("C", ["p", "q"])
    lex.add("D", ["p", "q"])
    lex.add("<UNK>", ["SPN"])
    return lex


def _decode_words(L: kaldifst.StdVectorFst, lang, phones: list[str]) -> list[str]:
    """Words that L outputs for a phone string (best path)."""
    acceptor = kaldifst.make_linear_acceptor([lang.phones[p] for p in phones])
    composed = kaldifst.compose(acceptor, L)
    if composed.num_states == 0:
        return ["<no path>"]
    best = kaldifst.shortest_path(composed)
    ok, _, olabels, _ = kaldifst.get_linear_symbol_sequence(best)
    assert ok
    id2word = lang.id2word
    return [id2word[o] for o in olabels]


def test_prepare_lang_tables_and_files(tmp_path):
    lang = prepare_lang(_toy_lexicon(), tmp_path / "lang")
    d = tmp_path / "lang"
    phones = (d / "phones.txt").read_text().split("\n")
    assert phones[:8] == ["<eps> 0", "SIL 1", "SPN 2", "p 3", "q 4", "x 5", "y 6", "z 7"]
    assert phones[8:12] == ["#0 8", "#1 9", "#2 10", "#3 11"]  # #3 follows the optional silence
    words = (d / "words.txt").read_text().split()
    assert words[::2] == ["<eps>", "<UNK>", "A", "B", "C", "D", "#0", "<s>", "</s>"]
    assert (d / "oov.txt").read_text().strip() == "<UNK>"
    assert (d / "phones/disambig.txt").read_text().split() == ["#0", "#1", "#2", "#3"]
    assert (d / "phones/disambig.int").read_text().split() == ["8", "9", "10", "11"]
    assert (d / "phones/optional_silence.txt").read_text().strip() == "SIL"
    assert (d / "phones/silence.txt").read_text().split() == ["SIL", "SPN"]
    assert "A\tx y #1" in (d / "lexicon_disambig.txt").read_text()
    assert lang.silence_phones == [1, 2] and lang.optional_silence == 1
    assert lang.disambig_phones == [8, 9, 10, 11]
    assert lang.wdisambig_phone == 8 and lang.wdisambig_word == lang.words["#0"]
    assert lang.oov_id == lang.words["<UNK>"]
    assert lang.info["num_lexicon_entries"] == 5
    # overwriting an existing lang dir works and leaves no temporary siblings
    prepare_lang(_toy_lexicon(), tmp_path / "lang", sil_prob=0.0)
    assert load_lang(d).info["sil_prob"] == 0.0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lang"]
    with pytest.raises(SenoneError):
        prepare_lang(_toy_lexicon(), tmp_path / "lang2", position_dependent=True)


def test_hand_edited_question_set_with_a_phone_name_is_reported(tmp_path):
    """extra_questions.int must hold phone ids; a name there is an error naming the file and line
    (a phone id unknown to the topology is caught when the tree's questions are compiled)."""
    prepare_lang(_toy_lexicon(), tmp_path / "lang")
    q = tmp_path / "lang" / "phones" / "extra_questions.int"
    q.write_text(q.read_text(encoding="utf-8") + "3 a1\n", encoding="utf-8")
    with pytest.raises(SenoneError, match=r"extra_questions\.int:\d+: expected phone ids.*'3 a1'"):
        load_lang(tmp_path / "lang")


def test_lexicon_fsts_map_phones_to_words(tmp_path):
    lang = prepare_lang(_toy_lexicon(), tmp_path / "lang", sil_prob=0.5)
    L = lang.read_L()
    Ld = lang.read_L(disambig=True)
    assert L.is_olabel_sorted and Ld.is_olabel_sorted
    # plain L: phones (with optional silence anywhere between words) → words
    assert _decode_words(L, lang, ["x", "y", "z"]) == ["B"]
    assert _decode_words(L, lang, ["SIL", "x", "y", "SIL", "x", "y", "z", "SIL"]) == ["A", "B"]
    assert _decode_words(L, lang, ["SPN", "p", "q"])[0] == "<UNK>"
    # L_disambig: A ends in #1, so x y z without it can only be B and x y #1 x y z is A B
    assert _decode_words(Ld, lang, ["x", "y", "z"]) == ["B"]
    assert _decode_words(Ld, lang, ["x", "y", "#1", "x", "y", "z"]) == ["A", "B"]
    assert _decode_words(Ld, lang, ["x", "y"]) == ["<no path>"]
    assert _decode_words(Ld, lang, ["p", "q", "#2"]) == ["D"]
    # silence is followed by its own disambiguation symbol #3 in L_disambig
    assert _decode_words(Ld, lang, ["x", "y", "z", "SIL", "#3", "p", "q", "#1"]) == ["B", "C"]
    assert _decode_words(Ld, lang, ["x", "y", "z", "SIL", "p", "q", "#1"]) == ["<no path>"]
    # the #0:#0 self-loop passes G's back-off symbol through
    loops = [(s, a.ilabel, a.olabel) for s in range(Ld.num_states) for a in kaldifst.ArcIterator(Ld, s)
             if a.nextstate == s and a.ilabel in lang.disambig_phones]
    assert loops == [(1, lang.wdisambig_phone, lang.wdisambig_word)]
    assert _decode_words(Ld, lang, ["#0", "x", "y", "z"]) == ["#0", "B"]


def test_lexicon_fst_weights_follow_sil_prob(tmp_path):
    lang = prepare_lang(_toy_lexicon(), tmp_path / "lang", sil_prob=0.2)
    L = lang.read_L()
    acceptor = kaldifst.make_linear_acceptor([lang.phones[p] for p in ["x", "y", "z"]])
    best = kaldifst.shortest_path(kaldifst.compose(acceptor, L))
    _, _, _, weight = kaldifst.get_linear_symbol_sequence(best)
    import math
    # no silence before or after: (1 - 0.2) twice
    assert weight.value == pytest.approx(-2 * math.log(0.8), rel=1e-5)


def test_topology_readable_by_kaldi(tmp_path):
    lex, _ = build_mandarin_lexicon(["你好", "一"], heteronyms=True)
    lang = prepare_lang(lex, tmp_path / "lang")
    topo = lang.topology()
    assert list(topo.phones) == lang.real_phones
    assert topo.num_pdf_classes(lang.nonsilence_phones[0]) == 3
    assert topo.num_pdf_classes(lang.phones["SIL"]) == 5
    assert topo.min_length(lang.nonsilence_phones[0]) == 3
    # a Mandarin lang: the tone groups become extra questions
    questions = (tmp_path / "lang/phones/extra_questions.txt").read_text().splitlines()
    assert questions[0] == "SIL SPN"
    assert "i1 i2 i3 i4" in questions  # all tones of a final
    assert "ao3 i3" in questions  # all phones of one tone


def test_jieba_writes_no_cache_file(tmp_path):
    """Segmenting must not touch jieba's shared /tmp cache (races, stale dictionaries)."""
    import os
    import subprocess
    import sys

    env = dict(os.environ, TMPDIR=str(tmp_path))
    code = "from senone.lang import to_units; print(' '.join(to_units('我们去银行', 'word')))"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["我们", "去", "银行"]
    assert "jieba" not in out.stderr.lower()  # initialised quietly
    assert list(tmp_path.iterdir()) == []
