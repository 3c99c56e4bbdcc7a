"""English pieces: ARPAbet lexicon builder, transcript normalisation, word-loop grammar, recipe config."""

from __future__ import annotations

import math

import kaldifst
import pytest

from senone import SenoneError
from senone.config import load_config
from senone.data.english import normalize_en_report
from senone.lang import prepare_lang, read_lexicon
from senone.lang.english import CMUDICT_DIGITS, build_english_lexicon, strip_stress
from senone.lm import arpa_to_g
from senone.lm.grammar import evaluate_word_loop, write_word_loop_arpa


def test_strip_stress_only_touches_stress_digits():
    assert strip_stress(("S", "EH1", "V", "AH0", "N")) == ("S", "EH", "V", "AH", "N")
    assert strip_stress(("SIL", "x2y", "ix4")) == ("SIL", "x2y", "ix4")  # not ARPAbet vowels: unchanged


def test_english_lexicon_precedence_and_unpronounceable(tmp_path):
    (tmp_path / "lex.txt").write_text(";;; comment\nSEVEN S EH1 V N\nHELLO HH AH0 L OW1\nHELLO HH EH0 L OW1\n")
    user = read_lexicon(tmp_path / "lex.txt")
    lex, missing = build_english_lexicon(["SEVEN", "HELLO", "TWO", "WORLD", "<UNK>"], user_lexicon=user)
    assert lex.prons["SEVEN"] == {("S", "EH1", "V", "N"): 1.0}  # the user's entry replaces CMUdict's
    assert set(lex.prons["HELLO"]) == {("HH", "AH0", "L", "OW1"), ("HH", "EH0", "L", "OW1")}
    assert set(lex.prons["TWO"]) == set(CMUDICT_DIGITS["TWO"])
    assert missing == ["WORLD"] and "WORLD" not in lex and lex.prons["<UNK>"] == {("SPN",): 1.0}
    stripped, _ = build_english_lexicon(["ZERO", "ONE"], stress="strip")
    assert set(stripped.prons["ZERO"]) == {("Z", "IH", "R", "OW"), ("Z", "IY", "R", "OW")}
    assert not build_english_lexicon(["TWO"], builtin=False)[0].prons.get("TWO")
    with pytest.raises(SenoneError, match="lang.stress"):
        build_english_lexicon(["TWO"], stress="remove")  # type: ignore[arg-type]


def test_stress_variants_share_a_phone_set(tmp_path):
    lex, _ = build_english_lexicon(["SEVEN", "ONE"], stress="keep")
    prepare_lang(lex, tmp_path / "lang", share_variants=True)
    sets = (tmp_path / "lang" / "phones" / "sets.txt").read_text().splitlines()
    assert "AH0 AH1" in sets and "EH1" in sets
    questions = (tmp_path / "lang" / "phones" / "extra_questions.txt").read_text().splitlines()
    assert "AH1 EH1" in questions  # one question per stress level, as Kaldi writes them


def test_normalize_en_reports_what_it_removed():
    r = normalize_en_report("Don\u2019t  stop, José! [noise] <laugh> T-shirt 42")
    assert r.text == "DON'T STOP JOSE T-SHIRT 42"
    assert r.marks == ["[noise]", "<laugh>"] and r.dropped == {",": 1, "!": 1}
    assert normalize_en_report(" ... ").text == ""


def test_word_loop_grammar(tmp_path):
    words = ["ONE", "TWO", "THREE"]
    lex, _ = build_english_lexicon(words)
    lang = prepare_lang(lex, tmp_path / "lang")
    desc = write_word_loop_arpa(words, tmp_path / "lm.arpa")
    assert desc == {"kind": "word_loop", "vocabulary": 3, "stop_prob": 0.25}
    G = arpa_to_g(tmp_path / "lm.arpa", lang.words_path)
    # one state: every word and the end of the utterance cost -ln(1/4)
    arcs = [(a.ilabel, a.weight.value) for s in range(G.num_states) for a in kaldifst.ArcIterator(G, s)]
    word_arcs = [w for label, w in arcs if label in {lang.words[x] for x in words}]
    assert len(word_arcs) == 3 and all(w == pytest.approx(math.log(4), abs=1e-4) for w in word_arcs)
    report = evaluate_word_loop(desc, words, [["ONE"], ["TWO", "THREE"], ["FOUR"]])
    assert report["num_oov"] == 1 and report["oov_rate"] == pytest.approx(0.25)
    assert report["perplexity"] == pytest.approx(4.0)  # uniform over 3 words + end
    with pytest.raises(SenoneError, match="at least one word"):
        write_word_loop_arpa([], tmp_path / "x.arpa")


def test_recipes_and_command_line_shortcuts():
    fsdd = load_config("fsdd", {"corpus_dir": "/data/fsdd"})
    assert fsdd["corpus"]["corpus_dir"] == "/data/fsdd" and "corpus_dir" not in fsdd
    assert fsdd["language"] == "en" and fsdd["features"]["gmm"]["sampling_rate"] == 8000
    assert fsdd["lm"]["grammar"] == "word_loop" and fsdd["lang"]["stress"] == "strip"
    custom = load_config("custom", {"sampling_rate": 8000, "language": "en"})
    assert custom["corpus"]["sampling_rate"] == custom["features"]["gmm"]["sampling_rate"] == 8000
    assert custom["features"]["gmm"]["num_ceps"] == 13  # merged into the section, not replacing it
    assert load_config("synth_zh")["language"] == "zh"
