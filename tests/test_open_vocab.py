"""Open character vocabulary: common characters in the lexicon (senone.lang.common_chars) and the
unigram interpolation + back-off renormalisation of the ARPA (senone.lm.open_vocab)."""

from __future__ import annotations

import argparse
import inspect
import json
import math
from pathlib import Path

import kaldifst
import pytest
import yaml

from senone import SenoneError
from senone.lang import build_mandarin_lexicon, collect_vocabulary, load_lang, prepare_lang, to_units
from senone.lang.common_chars import (
    CHAR_FREQ_FILE,
    add_common_characters,
    char_freq_text,
    char_frequencies,
    common_characters,
    read_char_freq,
)
from senone.lm import arpa_to_g, arpa_vocabulary, evaluate, load_kenlm, train_arpa
from senone.lm.open_vocab import (
    OOV_LOGPROB10,
    backoff_prob,
    open_vocab_arpa,
    read_arpa,
    renormalise_backoffs,
    write_arpa,
)
from tests.test_transcripts import write_cuts

ROOT = Path(__file__).resolve().parent.parent

TRAIN = [
    "the cat sat on the mat".split(),
    "the dog sat on the log".split(),
    "a cat sat on a mat".split(),
    "the cat ate the fish".split(),
    "a dog ate a bone".split(),
    "the dog sat".split(),
]
# a frequency list over an open vocabulary: most training words and four new ones
FREQ = {"the": 500, "a": 300, "cat": 40, "dog": 50, "sat": 20, "on": 90, "bird": 30, "tree": 25, "sang": 5,
        "fish": 8, "zebra": 1}


@pytest.fixture
def closed(tmp_path):
    path = tmp_path / "closed.arpa"
    train_arpa(TRAIN, path, order=3)
    return path


def _kenlm_sum(model, history, vocab):
    import kenlm

    state = kenlm.State()
    model.BeginSentenceWrite(state)
    for w in history:
        nxt = kenlm.State()
        model.BaseScore(state, w, nxt)
        state = nxt
    return sum(10 ** model.BaseScore(state, w, kenlm.State()) for w in vocab)


# ----------------------------------------------------------------------------- the ARPA

def test_open_arpa_sums_to_one_in_kenlm_and_reaches_new_words(tmp_path, closed):
    out = tmp_path / "open.arpa"
    stats = open_vocab_arpa(closed, out, FREQ, weight=0.2)
    assert stats["new_unigrams"] == 4 and stats["contexts_renormalised"] > 0
    vocab = [w for w in arpa_vocabulary(out) if w != "<s>"]
    assert set(vocab) == {w for s in TRAIN for w in s} | {"</s>", "bird", "tree", "sang", "zebra"}
    model = load_kenlm(out)
    # every conditional distribution sums to one over the open vocabulary (as test_lm does for train_arpa)
    for history in ([], ["the"], ["the", "cat"], ["dog", "sat"], ["on", "a"], ["a", "bird"], ["zebra"]):
        assert _kenlm_sum(model, history, vocab) == pytest.approx(1.0, abs=1e-4), history
    # an unseen word is unlikely, not impossible; the frequent one more likely than the rare one
    assert math.isfinite(model.score("the bird sang", bos=True, eos=True))
    assert model.score("the bird", bos=True, eos=False) > model.score("the zebra", bos=True, eos=False)
    # training n-grams still dominate
    assert model.score("the cat sat", bos=True, eos=False) > model.score("the bird sat", bos=True, eos=False)
    # dev evaluation: nothing is OOV any more
    assert evaluate(out, [["the", "zebra", "sat"]])["num_oov"] == 0
    assert evaluate(closed, [["the", "zebra", "sat"]])["num_oov"] == 1


def test_every_context_is_renormalised(tmp_path, closed):
    """Our own back-off computation over every context of the ARPA: all distributions sum to one."""
    out = tmp_path / "open.arpa"
    open_vocab_arpa(closed, out, FREQ, weight=0.3)
    arpa = read_arpa(out)
    vocab = [w for w in arpa.vocabulary() if w != "<s>"]
    contexts = [h for k in range(arpa.order - 1) for h in arpa.ngrams[k]] + [()]
    for h in contexts:
        if h and h[-1] == "</s>":
            continue
        assert sum(backoff_prob(arpa, h, w) for w in vocab) == pytest.approx(1.0, abs=2e-5), h


def test_unigrams_follow_the_interpolation_formula(tmp_path, closed):
    lam = 0.25
    before, out = read_arpa(closed), tmp_path / "open.arpa"
    open_vocab_arpa(closed, out, FREQ, weight=lam)
    after = read_arpa(out)
    total = sum(FREQ.values())
    for w in after.vocabulary():
        if w == "<s>":
            assert after.ngrams[0][(w,)][0] == -99.0
            continue
        p1 = 10 ** before.ngrams[0][(w,)][0] if (w,) in before.ngrams[0] else 0.0
        expected = (1 - lam) * p1 + lam * FREQ.get(w, 0) / total
        assert 10 ** after.ngrams[0][(w,)][0] == pytest.approx(expected, rel=1e-6), w
    # explicit bigram and trigram probabilities are untouched, to the digit
    for k in (1, 2):
        assert {ng: e[0] for ng, e in after.ngrams[k].items()} == {ng: e[0] for ng, e in before.ngrams[k].items()}


def test_weight_zero_or_no_list_is_todays_arpa(tmp_path, closed):
    for i, (freq, lam) in enumerate(((FREQ, 0.0), ({}, 0.3))):
        out = tmp_path / f"same{i}.arpa"
        stats = open_vocab_arpa(closed, out, freq, weight=lam)
        assert out.read_bytes() == closed.read_bytes() and stats["new_unigrams"] == 0
    with pytest.raises(SenoneError, match="open_vocab_weight"):
        open_vocab_arpa(closed, tmp_path / "x.arpa", FREQ, weight=1.0)


def test_renormalising_the_trainers_arpa_gives_back_its_backoffs(tmp_path, closed):
    """The recomputation formula reproduces kaldingram's own back-off weights (the model already sums to one)."""
    arpa = read_arpa(closed)
    original = {(k, ng): e[1] for k in range(arpa.order) for ng, e in arpa.ngrams[k].items() if e[1] is not None}
    renormalise_backoffs(arpa)
    for (k, ng), bow in original.items():
        assert arpa.ngrams[k][ng][1] == pytest.approx(bow, abs=2e-5), ng
    write_arpa(arpa, tmp_path / "rewritten.arpa")
    assert evaluate(tmp_path / "rewritten.arpa", TRAIN[:2])["perplexity"] == pytest.approx(
        evaluate(closed, TRAIN[:2])["perplexity"], rel=1e-4)


def test_bad_arpa_is_reported(tmp_path):
    bad = tmp_path / "bad.arpa"
    bad.write_text("\\data\\\nngram 1=3\n\n\\1-grams:\n-1.0\ta\n-1.0\t</s>\n\n\\end\\\n", encoding="utf-8")
    with pytest.raises(SenoneError, match="header counts"):
        read_arpa(bad)


def test_oov_penalised_perplexity_is_comparable(tmp_path, closed):
    out = tmp_path / "open.arpa"
    open_vocab_arpa(closed, out, FREQ, weight=0.2)
    dev = [["the", "bird", "sat"], ["a", "cat", "sat", "on", "the", "tree"]]
    c, o = evaluate(closed, dev, oov_logprob10=OOV_LOGPROB10), evaluate(out, dev, oov_logprob10=OOV_LOGPROB10)
    assert c["num_oov"] == 2 and o["num_oov"] == 0
    assert o["perplexity_oov_penalised"] == pytest.approx(o["perplexity"])  # no OOVs: the same number
    n = c["num_tokens"] + c["num_sentences"]
    assert c["perplexity_oov_penalised"] == pytest.approx(10 ** (-(c["logprob10"] + 2 * OOV_LOGPROB10) / n))
    assert "perplexity_oov_penalised" not in evaluate(closed, dev)


# ----------------------------------------------------------------------------- the lexicon

def test_common_characters_from_jieba():
    freq = char_frequencies()
    assert len(freq) > 10000
    top = common_characters(20)
    assert len(top) == 20 and [n for _, n in top] == sorted((n for _, n in top), reverse=True)
    assert {"一", "是", "不", "了"} <= {c for c, _ in top}
    # summed over the words a character occurs in (我们, 他们...): 们 alone is a 41,212-count entry
    assert freq["们"] > 300000 and "们" in dict(common_characters(100))
    assert common_characters(0) == []
    with pytest.raises(SenoneError):
        common_characters(-1)


def test_added_characters_use_default_readings_and_only_known_phones():
    train = [to_units(t, "char") for t in ["我是老师", "他去银行", "你好世界"]]
    lex, _ = build_mandarin_lexicon(collect_vocabulary(train))
    phones = set(lex.nonsilence_phones())
    freq = {"诗": 100, "行": 90, "骉": 80, "我": 70, "姥": 60}  # 诗 sh ix1 (known phones), 骉 b iao1 (iao1 is new)
    info = add_common_characters(lex, 4, freq=freq)
    assert info["chars"] == 4 and info["added"] == 1 and info["skipped_new_phones"] == ["骉"]
    assert lex.prons["诗"] == {("sh", "ix1"): 1.0} and "骉" not in lex and "姥" not in lex  # 姥: not in the top 4
    assert set(lex.nonsilence_phones()) == phones  # the phone set never changes
    assert info["source"].startswith("jieba 0.42.1") and "MIT" in info["licence"]
    assert info["frequencies"] == {"诗": 100, "行": 90, "我": 70}  # every lexicon word the list has
    # the default reading only (长 zhang3), every reading with heteronyms (+ chang2), as for training characters
    for heteronyms, expected in ((False, {("zh", "ang3")}), (True, {("zh", "ang3"), ("ch", "ang2")})):
        lex2, _ = build_mandarin_lexicon(["常", "掌"])
        add_common_characters(lex2, 1, freq={"长": 5}, heteronyms=heteronyms)
        assert set(lex2.prons["长"]) == expected


def test_char_freq_file_round_trip(tmp_path):
    text = char_freq_text({"的": 5, "了": 9})
    assert text == "了\t9\n的\t5\n"
    (tmp_path / CHAR_FREQ_FILE).write_text(text, encoding="utf-8")
    assert read_char_freq(tmp_path / CHAR_FREQ_FILE) == {"了": 9, "的": 5}
    (tmp_path / "bad.txt").write_text("了 x\n", encoding="utf-8")
    with pytest.raises(SenoneError, match="bad.txt:1"):
        read_char_freq(tmp_path / "bad.txt")


def test_open_lexicon_and_lm_compose_into_a_graph(tmp_path):
    """L (with the added homophones' #k symbols) ∘ G (kaldilm) determinises; G has the new words."""
    texts = ["我是老师", "这是我的事", "他去市场", "银行在哪里", "一个人", "你好世界"]
    train = [to_units(t, "char") for t in texts]
    lex, _ = build_mandarin_lexicon(collect_vocabulary(train))
    info = add_common_characters(lex, 300)
    assert info["added"] > 20  # of 300: most need a phone these six sentences lack
    lang = prepare_lang(lex, tmp_path / "lang", extra_files={CHAR_FREQ_FILE: char_freq_text(info["frequencies"])})
    assert (tmp_path / "lang" / CHAR_FREQ_FILE).is_file()
    train_arpa(train, tmp_path / "closed.arpa")
    freq = read_char_freq(tmp_path / "lang" / CHAR_FREQ_FILE)
    open_vocab_arpa(tmp_path / "closed.arpa", tmp_path / "lm.arpa", freq, weight=0.25)
    G = arpa_to_g(tmp_path / "lm.arpa", lang.words_path, tmp_path / "G.fst")
    olabels = {a.olabel for s in range(G.num_states) for a in kaldifst.ArcIterator(G, s)}
    new = set(lex.words()) - {w for s in train for w in s} - {"<UNK>"}
    assert {lang.words[w] for w in new} <= olabels
    LG = kaldifst.compose(lang.read_L(disambig=True), G)
    assert not kaldifst.determinize_star(LG, max_states=2_000_000)
    with pytest.raises(SenoneError, match="plain file name"):
        prepare_lang(lex, tmp_path / "lang2", extra_files={"phones.txt": ""})


# ----------------------------------------------------------------------------- the stages and the defaults

def _conf(num_chars, weight, unit="char"):
    conf = yaml.safe_load((ROOT / "conf" / "lang.yaml").read_text(encoding="utf-8"))
    conf["lang"].update(unit=unit, open_vocab_chars=num_chars)
    conf["lm"]["open_vocab_weight"] = weight
    conf["language"] = "zh"
    return json.dumps(conf)


def _stages(tmp_path, num_chars, weight, unit="char"):
    import steps.prepare_lang as prepare_step
    import steps.train_lm as lm_step

    train = write_cuts(tmp_path / "train.jsonl.gz", ["我是老师", "这是我的事", "他去市场", "银行在哪里", "你好世界",
                                                      "今天很冷", "小学生", "汽车很多"])
    dev = write_cuts(tmp_path / "dev.jsonl.gz", ["天气很好", "我是学生"])  # 气: not in the training text
    out = tmp_path / f"run_{num_chars}_{weight}_{unit}"
    conf = _conf(num_chars, weight, unit)
    prepare_step.main(argparse.Namespace(conf=conf, train_cuts=str(train), out=str(out / "lang")))
    lm_step.main(argparse.Namespace(conf=conf, lang=str(out / "lang"), train_cuts=str(train), dev_cuts=str(dev),
                                    out=str(out / "lm")))
    return out, json.loads((out / "lm" / "lm_report.json").read_text(encoding="utf-8"))


def test_stages_open_and_closed(tmp_path):
    closed, rc = _stages(tmp_path, 0, 0.25)
    assert not (closed / "lang" / CHAR_FREQ_FILE).exists() and "open_vocab" not in load_lang(closed / "lang").info
    assert "dev_closed" not in rc and rc["dev"]["num_oov"] > 0
    # λ = 0 with an open lexicon: the LM is today's closed one
    lam0, r0 = _stages(tmp_path, 500, 0.0)
    assert (lam0 / "lm" / "lm.arpa").read_bytes() == (closed / "lm" / "lm.arpa").read_bytes()
    opened, ro = _stages(tmp_path, 500, 0.25)
    info = load_lang(opened / "lang").info["open_vocab"]
    assert info["chars"] == 500 and info["added"] > 50 and "MIT" in info["licence"]
    assert ro["dev"]["num_oov"] == 0 and ro["dev_closed"]["num_oov"] == rc["dev"]["num_oov"]
    assert ro["train"]["open_vocab"]["weight"] == 0.25 and not (opened / "lm" / "lm.closed.arpa").exists()
    assert ro["dev"]["perplexity_oov_penalised"] < ro["dev_closed"]["perplexity_oov_penalised"]
    # the real phone ids are those of the closed lexicon: closed-vocabulary models work with the open lang
    real = [ln for ln in (opened / "lang" / "phones.txt").read_text(encoding="utf-8").splitlines() if "#" not in ln]
    assert real == [ln for ln in (closed / "lang" / "phones.txt").read_text(encoding="utf-8").splitlines()
                    if "#" not in ln]
    # word units keep the closed vocabulary
    words, _ = _stages(tmp_path, 500, 0.25, unit="word")
    assert "open_vocab" not in load_lang(words / "lang").info


def test_library_defaults_match_conf():
    from senone.lang.common_chars import DEFAULT_NUM_CHARS
    from senone.lm.open_vocab import DEFAULT_WEIGHT

    conf = yaml.safe_load((ROOT / "conf" / "lang.yaml").read_text(encoding="utf-8"))
    assert conf["lang"]["open_vocab_chars"] == DEFAULT_NUM_CHARS
    assert inspect.signature(add_common_characters).parameters["num_chars"].default == DEFAULT_NUM_CHARS
    assert conf["lm"]["open_vocab_weight"] == DEFAULT_WEIGHT
    assert inspect.signature(open_vocab_arpa).parameters["weight"].default == DEFAULT_WEIGHT
