"""Tests for senone.lm: ARPA training (kaldingram), perplexity (kenlm), G.fst (kaldilm)."""

from __future__ import annotations

import math

import kaldifst
import pytest

from senone import SenoneError
from senone.lang import Lexicon, prepare_lang
from senone.lm import arpa_counts, arpa_to_g, arpa_vocabulary, evaluate, load_kenlm, train_arpa

TRAIN = [
    "the cat sat on the mat".split(),
    "the dog sat on the log".split(),
    "a cat sat on a mat".split(),
    "the cat ate the fish".split(),
    "a dog ate a bone".split(),
    "the dog sat".split(),
    [],
]


@pytest.fixture
def arpa(tmp_path):
    path = tmp_path / "lm.arpa"
    stats = train_arpa(TRAIN, path, order=3)
    return path, stats


def test_train_arpa_loads_in_kenlm_with_normalised_probs(arpa):
    path, stats = arpa
    assert stats["num_sentences"] == 6 and stats["num_tokens"] == 31
    vocab = [w for w in arpa_vocabulary(path) if w != "<s>"]
    assert set(vocab) == {w for s in TRAIN for w in s} | {"</s>"}
    assert stats["ngrams"] == arpa_counts(path) and stats["ngrams"][1] == len(vocab) + 1
    model = load_kenlm(path)
    assert model.order == 3
    import kenlm

    # P(. | <s> the) sums to one over the vocabulary (a proper back-off distribution)
    for history in (["the"], ["the", "cat"], ["dog", "sat"]):
        state = kenlm.State()
        model.BeginSentenceWrite(state)
        for w in history:
            nxt = kenlm.State()
            model.BaseScore(state, w, nxt)
            state = nxt
        total = sum(10 ** model.BaseScore(state, w, kenlm.State()) for w in vocab)
        assert total == pytest.approx(1.0, abs=1e-4)
    # seen continuations beat unseen ones
    assert model.score("the cat sat", bos=True, eos=False) > model.score("the fish sat", bos=True, eos=False)


def test_train_arpa_is_deterministic_and_takes_extra_text(tmp_path, arpa):
    path, _ = arpa
    again = tmp_path / "again.arpa"
    train_arpa(TRAIN, again, order=3)
    assert again.read_bytes() == path.read_bytes()
    extra = tmp_path / "extra.arpa"
    stats = train_arpa(TRAIN, extra, extra_tokens=[["a", "bird", "sang"]])
    assert stats["num_extra_sentences"] == 1 and "bird" in arpa_vocabulary(extra)
    assert "bird" not in arpa_vocabulary(path)


def test_train_arpa_rejects_bad_input(tmp_path):
    with pytest.raises(SenoneError):
        train_arpa([["a", "<s>"]], tmp_path / "x.arpa")
    with pytest.raises(SenoneError):
        train_arpa([["a b"]], tmp_path / "x.arpa")
    with pytest.raises(SenoneError):
        train_arpa([[], []], tmp_path / "x.arpa")
    assert not (tmp_path / "x.arpa").exists()


def test_evaluate_perplexity_and_oov(arpa):
    path, _ = arpa
    dev = ["the cat sat on the log".split(), "a zebra sat".split()]
    res = evaluate(path, dev)
    assert res["num_tokens"] == 9 and res["num_oov"] == 1 and res["num_sentences"] == 2
    assert res["oov_rate"] == pytest.approx(1 / 9)
    # by hand: kenlm's per-token scores, OOV left out, </s> counted once per sentence
    model = load_kenlm(path)
    total = sum(p for s in dev for p, _, oov in model.full_scores(" ".join(s)) if not oov)
    assert res["perplexity"] == pytest.approx(10 ** (-total / (9 - 1 + 2)))
    # an OOV-free sentence: identical to kenlm's own sentence score
    clean = evaluate(path, [dev[0]])
    assert clean["num_oov"] == 0
    assert clean["perplexity"] == pytest.approx(10 ** (-model.score(" ".join(dev[0])) / 7))
    assert 1.0 < clean["perplexity"] < res["perplexity"] < 20


def test_pruned_arpa_is_valid(tmp_path):
    path = tmp_path / "pruned.arpa"
    stats = train_arpa(TRAIN, path, prune_threshold=0.05)
    full = train_arpa(TRAIN, tmp_path / "full.arpa")
    assert sum(stats["ngrams"].values()) < sum(full["ngrams"].values())
    assert math.isfinite(evaluate(path, [TRAIN[0]])["perplexity"])  # kenlm accepts the header


def _lang_for(tmp_path, words):
    lex = Lexicon()
    for w in words:
        lex.add(w, list(w))  # letters as phones: enough for G
    lex.add("<UNK>", ["SPN"])
    return prepare_lang(lex, tmp_path / "lang")


def test_arpa_to_g(tmp_path, arpa):
    path, _ = arpa
    vocab = sorted({w for s in TRAIN for w in s})
    lang = _lang_for(tmp_path, vocab)
    out = tmp_path / "G.fst"
    G = arpa_to_g(path, lang.words_path, out)
    assert out.exists()
    assert G.is_ilabel_sorted
    read_back = kaldifst.StdVectorFst.read(str(out))
    assert read_back.num_states == G.num_states
    ilabels, olabels, backoff = set(), set(), 0
    for s in range(G.num_states):
        for arc in kaldifst.ArcIterator(G, s):
            ilabels.add(arc.ilabel)
            olabels.add(arc.olabel)
            if arc.ilabel == lang.wdisambig_word:
                assert arc.olabel == 0  # #0 on the input side only, as Kaldi's G
                backoff += 1
            else:
                assert arc.ilabel == arc.olabel
    assert backoff > 0
    assert lang.bos_id not in ilabels | olabels and lang.eos_id not in ilabels | olabels
    assert {lang.words[w] for w in vocab} <= olabels
    # </s> became final weights
    zero = kaldifst.TropicalWeight.zero
    assert any(G.final(s) != zero for s in range(G.num_states))
    # the best path of G alone is a sentence of the training text's style
    best = kaldifst.shortest_path(G)
    ok, _, words, _ = kaldifst.get_linear_symbol_sequence(best)
    assert ok and words and all(w in lang.id2word for w in words)


def test_arpa_to_g_drops_words_missing_from_words_txt(tmp_path, arpa, caplog):
    path, _ = arpa
    lang = _lang_for(tmp_path, ["the", "cat", "sat", "dog"])
    G = arpa_to_g(path, lang.words_path)
    assert "not in" in caplog.text
    olabels = {a.olabel for s in range(G.num_states) for a in kaldifst.ArcIterator(G, s)}
    assert olabels <= set(lang.words.values())
    assert lang.words["cat"] in olabels


def test_mandarin_char_lang_and_g_compose_and_determinise(tmp_path):
    """Homophones and heteronyms (是/事/市 all 'sh ix4') only determinise thanks to #k symbols."""
    from senone.lang import build_mandarin_lexicon, collect_vocabulary, to_units

    texts = ["我是老师", "这是我的事", "他去市场", "银行在哪里", "一个人", "你好世界"]
    train = [to_units(t, "char") for t in texts]
    lex, bad = build_mandarin_lexicon(collect_vocabulary(train))
    assert bad == []
    lang = prepare_lang(lex, tmp_path / "lang")
    assert lang.info["max_lexicon_disambig"] >= 3
    train_arpa(train, tmp_path / "lm.arpa")
    G = arpa_to_g(tmp_path / "lm.arpa", lang.words_path, tmp_path / "G.fst")
    LG = kaldifst.compose(lang.read_L(disambig=True), G)
    assert LG.num_states > 0
    stopped_early = kaldifst.determinize_star(LG, max_states=200000)
    assert not stopped_early
