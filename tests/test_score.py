"""Tests for senone.score: Kaldi-style CER tokens and counts, syllable rates, report files, plots."""

from __future__ import annotations

import csv
import json
import math
import random

import kaldialign
import pytest

from senone import SenoneError
from senone.score import (
    ErrorStats,
    Tokenizer,
    compute_error_rate,
    format_per_utt,
    normalize_syllable,
    parse_syllables,
    plot_acwt_sweep,
    plot_results,
    read_text_map,
    results_row,
    score_and_write,
    strip_tone,
    syllable_error_rates,
    text_to_syllables,
    tokenize_text,
    write_results_table,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


# --- tokenisation -------------------------------------------------------------------------------


def test_cjk_split_one_per_token_with_or_without_spaces():
    assert tokenize_text("今天天气很好") == list("今天天气很好")
    assert tokenize_text("今天 天气  很好") == list("今天天气很好")


def test_latin_words_and_numbers_kept_whole():
    assert tokenize_text("我用 IPHONE 手机") == ["我", "用", "IPHONE", "手", "机"]
    assert tokenize_text("我用IPHONE手机") == ["我", "用", "IPHONE", "手", "机"]
    assert tokenize_text("花了3.5元买T-shirt") == ["花", "了", "3.5", "元", "买", "T-shirt"]


def test_noise_marks_filtered():
    text = "<UNK> 今天 [NOISE] 天气 [LAUGHTER] <sil> !SIL 很<unk>好"
    assert tokenize_text(text) == list("今天天气很好")
    assert tokenize_text("hello <UNK> world [laughter] !sil", unit="word") == ["hello", "world"]


def test_noise_mark_set_is_configurable():
    tok = Tokenizer("char", noise_marks=frozenset({"UH"}), drop_bracketed=False)
    # 'uh' dropped case-insensitively; a bracketed token not in the set is kept as one token.
    assert tok("uh 你好 [X] <UNK>") == ["你", "好", "[X]", "<UNK>"]
    with pytest.raises(SenoneError):
        Tokenizer("syllable")  # type: ignore[arg-type]


def test_punctuation_kept_unless_asked():
    assert tokenize_text("你好，世界") == ["你", "好", "，", "世", "界"]
    assert Tokenizer("char", drop_punctuation=True)("你好，世界。") == list("你好世界")


# --- counting -----------------------------------------------------------------------------------


def test_hand_worked_example():
    res = compute_error_rate({"u": tokenize_text("今天天气很好")}, {"u": tokenize_text("今天天七很好啊")})
    t = res.total
    assert (t.subs, t.ins, t.dels, t.ref_count) == (1, 1, 0, 6)
    assert t.rate == pytest.approx(100 * 2 / 6)
    assert t.line() == "%CER 33.33 [ 2 / 6, 1 ins, 0 del, 1 sub ]"
    assert t.ser_line() == "%SER 100.00 [ 1 / 1 ]"
    assert res.per_utt["u"].ops == ["C", "C", "C", "S", "C", "C", "I"]


def test_counts_agree_with_kaldialign_edit_distance():
    rng = random.Random(0)
    for _ in range(300):
        ref = [rng.choice("abcd") for _ in range(rng.randint(0, 7))]
        hyp = [rng.choice("abcd") for _ in range(rng.randint(0, 7))]
        t = compute_error_rate({"u": ref}, {"u": hyp}).total
        ed = kaldialign.edit_distance(ref, hyp)
        assert (t.ins, t.dels, t.subs) == (ed["ins"], ed["del"], ed["sub"])


def test_stats_add_up_over_utterances():
    refs = {"a": list("今天"), "b": list("天气好")}
    hyps = {"a": list("今"), "b": list("天汽好啊")}
    res = compute_error_rate(refs, hyps)
    summed = res.per_utt["a"].stats + res.per_utt["b"].stats
    assert (summed.errors, summed.ref_count, summed.num_sent) == (res.total.errors, 5, 2)
    assert res.total.errors == 3  # 1 del + 1 sub + 1 ins


def test_missing_hypotheses_by_mode():
    refs = {"a": list("你好"), "b": list("再见")}
    hyps = {"a": list("你好"), "z": list("多")}
    all_ = compute_error_rate(refs, hyps, mode="all")
    assert all_.total.dels == 2 and all_.total.ref_count == 4 and all_.total.num_absent == 1
    assert all_.total.line().endswith("[PARTIAL]")
    assert all_.missing_hyp == ["b"] and all_.extra_hyp == ["z"]
    present = compute_error_rate(refs, hyps, mode="present")
    assert present.total.errors == 0 and present.total.ref_count == 2
    assert "1 not present in hyp" in present.total.scored_line()
    with pytest.raises(SenoneError):
        compute_error_rate(refs, hyps, mode="strict")


def test_empty_references_do_not_crash():
    only_ins = compute_error_rate({"u": []}, {"u": ["啊"]}).total
    assert only_ins.ins == 1 and math.isinf(only_ins.rate)
    assert only_ins.line() == "%CER inf [ 1 / 0, 1 ins, 0 del, 0 sub ]"
    nothing = compute_error_rate({}, {}).total
    assert math.isnan(nothing.rate) and nothing.line().startswith("%CER nan [ 0 / 0")
    d = nothing.to_dict()
    assert d["rate"] is None and "note" in d
    json.dumps(d, allow_nan=False)  # strict JSON


# --- syllables ----------------------------------------------------------------------------------


def test_text_to_syllables_phrase_aware_and_latin_whole():
    assert text_to_syllables("银行 行走") == ["yin2", "hang2", "xing2", "zou3"]
    assert text_to_syllables("我的IPHONE <UNK>") == ["wo3", "de5", "IPHONE"]


def test_syllable_helpers():
    assert strip_tone("qi4") == "qi" and strip_tone("lv3") == "lv"
    assert strip_tone("123") == "123" and strip_tone("IPHONE") == "IPHONE"
    assert normalize_syllable("LÜ4") == "lv4" and normalize_syllable("lu:4") == "lv4"
    assert normalize_syllable("de") == "de5"
    assert parse_syllables("ni3 <sil> hao3") == ["ni3", "hao3"]


def test_homophone_hypothesis_has_zero_syllable_error():
    refs, hyps = {"u": "今天天气很好"}, {"u": "今天天汽很好"}  # 气 and 汽 are both qi4
    assert compute_error_rate({"u": tokenize_text(refs["u"])}, {"u": tokenize_text(hyps["u"])}).total.rate > 0
    syl = syllable_error_rates(refs, hyps)
    assert syl.tonal.total.errors == 0 and syl.toneless.total.errors == 0


def test_tone_only_difference():
    syl = syllable_error_rates({"u": "今天天气很好"}, {"u": "今天天七很好"})  # qi4 vs qi1
    assert syl.tonal.total.subs == 1 and syl.tonal.total.rate == pytest.approx(100 / 6)
    assert syl.toneless.total.errors == 0


def test_supplied_reference_syllables_are_used():
    # Converting both texts the same way cannot find an error ...
    assert syllable_error_rates({"u": "一个"}, {"u": "一个"}).tonal.total.errors == 0
    # ... but what was spoken (neutral ge5) differs from pypinyin's reading of the text (yi2 ge4).
    syl = syllable_error_rates({"u": "一个"}, {"u": "一个"}, ref_syllables={"u": "yi2 ge5"})
    assert syl.ref_source == "supplied"
    assert syl.tonal.total.subs == 1 and syl.toneless.total.errors == 0
    with pytest.raises(SenoneError):
        syllable_error_rates({"u": "一个", "v": "好"}, {"u": "一个"}, ref_syllables={"u": ["yi2", "ge5"]})


# --- report files -------------------------------------------------------------------------------


REFS = {"u1": "今天天气很好", "u2": "我用 IPHONE 手机", "u3": "<UNK> 你好"}
HYPS = {"u1": "今天天七很好啊", "u2": "我用 IPHONE 手机", "u3": "你好"}


def test_score_and_write_files_and_numbers(tmp_path):
    out = tmp_path / "decode_dev"
    scores = score_and_write(REFS, HYPS, out, bootstrap_replications=200)
    names = sorted(p.name for p in out.iterdir())
    # exactly the promised files: no temporary files left behind
    assert names == sorted(["cer.txt", "syllable_er.txt", "per_utt.txt", "ref.txt", "hyp.txt", "scores.json"])
    assert all(p.stat().st_size > 0 for p in out.iterdir())

    cer = (out / "cer.txt").read_text(encoding="utf-8").splitlines()
    assert cer[0] == "%CER 15.38 [ 2 / 13, 1 ins, 0 del, 1 sub ]"
    assert cer[1] == "%SER 33.33 [ 1 / 3 ]"
    syl = (out / "syllable_er.txt").read_text(encoding="utf-8")
    # u1: 七 qi1 for 气 qi4 is a tonal substitution only; 啊 a5 is inserted either way
    assert "%SylER-tonal 15.38 [ 2 / 13, 1 ins, 0 del, 1 sub ]" in syl
    assert "%SylER-toneless 7.69 [ 1 / 13, 1 ins, 0 del, 0 sub ]" in syl

    on_disk = json.loads((out / "scores.json").read_text(encoding="utf-8"))
    assert on_disk == scores
    assert on_disk["cer"]["rate"] == pytest.approx(15.3846, abs=1e-3)
    assert on_disk["per_utt"]["u1"]["sub"] == 1 and on_disk["per_utt"]["u1"]["ins"] == 1
    assert on_disk["cer"]["bootstrap"]["low"] <= on_disk["cer"]["rate"] <= on_disk["cer"]["bootstrap"]["high"]
    assert read_text_map(out / "ref.txt") == {"u1": "今天天气很好", "u2": "我用 IPHONE 手机", "u3": "<UNK> 你好"}
    assert read_text_map(out / "hyp.txt") == HYPS


def test_per_utt_format(tmp_path):
    score_and_write(REFS, HYPS, tmp_path, bootstrap_replications=0)
    lines = (tmp_path / "per_utt.txt").read_text(encoding="utf-8").splitlines()
    assert len(lines) == 4 * len(REFS)
    u1 = [ln.split() for ln in lines if ln.split()[0] == "u1"]
    assert u1[0] == ["u1", "ref", *"今天天气很好", "***"]
    assert u1[1] == ["u1", "hyp", *"今天天七很好啊"]
    assert u1[2] == ["u1", "op", "C", "C", "C", "S", "C", "C", "I"]
    assert u1[3] == ["u1", "#csid", "5", "1", "1", "0"]
    u2 = [ln.split() for ln in lines if ln.split()[0] == "u2"]
    assert u2[0] == ["u2", "ref", "我", "用", "IPHONE", "手", "机"] and u2[3][2:] == ["5", "0", "0", "0"]
    # columns line up on screen (CJK characters are two cells wide): token centres agree
    ref_c, hyp_c, op_c = (_centres(ln) for ln in lines[:3])
    assert len(ref_c) == len(hyp_c) == len(op_c) == 9
    for a, b, c in zip(ref_c[2:], hyp_c[2:], op_c[2:]):
        assert abs(a - b) <= 0.5 and abs(a - c) <= 0.5


def _centres(line: str) -> list[float]:
    """Display-cell centre of each whitespace-separated token of ``line``."""
    import unicodedata

    out, col, start, width = [], 0, None, 0
    for ch in line + " ":
        w = 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1
        if ch == " ":
            if start is not None:
                out.append(start + width / 2)
                start, width = None, 0
        else:
            if start is None:
                start = col
            width += w
        col += w
    return out


def test_per_utt_of_empty_set_is_empty():
    assert format_per_utt({}) == ""


def test_english_scores_words_without_syllables(tmp_path):
    scores = score_and_write(
        {"a": "the cat sat [noise]"}, {"a": "the bat sat down"}, tmp_path, language="en", bootstrap_replications=0
    )
    assert (tmp_path / "wer.txt").read_text().splitlines()[0] == "%WER 66.67 [ 2 / 3, 1 ins, 0 del, 1 sub ]"
    assert not (tmp_path / "syllable_er.txt").exists() and "syllables" not in scores
    with pytest.raises(SenoneError):
        score_and_write({"a": "x"}, {"a": "x"}, tmp_path, language="fr")  # type: ignore[arg-type]


def test_fully_empty_set_writes_files(tmp_path):
    scores = score_and_write({}, {}, tmp_path)
    assert scores["cer"]["rate"] is None and "note" in scores["cer"]
    assert (tmp_path / "cer.txt").read_text().startswith("%CER nan [ 0 / 0")


# --- tables and plots ---------------------------------------------------------------------------


def _rows():
    dev = {"metric": "CER", "cer": {"rate": 19.3}, "syllables": {"tonal": {"rate": 15.7}, "toneless": {"rate": 4.3}}}
    test = {"metric": "CER", "cer": {"rate": 21.8}, "syllables": {"tonal": {"rate": 17.0}, "toneless": {"rate": 5.1}}}
    mono = results_row("mono", {"dev": dev, "test": test}, params="1.2M")
    tri1 = {"system": "tri1", "params": "2M", "dev_cer": 18.0, "test_cer": None}
    return [mono, tri1]


def test_results_row_columns():
    row = _rows()[0]
    assert list(row) == [
        "system", "params", "dev_cer", "test_cer",
        "dev_syl_tonal", "test_syl_tonal", "dev_syl_toneless", "test_syl_toneless",
    ]  # fmt: skip
    assert row["dev_syl_tonal"] == 15.7


def test_write_results_table(tmp_path):
    rows = _rows()
    cols = write_results_table(rows, tmp_path / "t.md", tmp_path / "t.csv", title="RESULTS")
    md = (tmp_path / "t.md").read_text(encoding="utf-8").splitlines()
    assert md[0] == "## RESULTS"
    assert md[2] == "| " + " | ".join(cols) + " |"
    assert md[3].startswith("|---|---|---:|")
    assert md[4].startswith("| mono | 1.2M | 19.30 | 21.80 |")
    assert md[5].startswith("| tri1 | 2M | 18.00 | - |")
    with open(tmp_path / "t.csv", encoding="utf-8", newline="") as f:
        got = list(csv.DictReader(f))
    assert list(got[0]) == cols and got[0]["dev_cer"] == "19.3" and got[1]["test_cer"] == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.csv", "t.md"]
    with pytest.raises(SenoneError):
        write_results_table([], tmp_path / "e.md", tmp_path / "e.csv")


def test_plots_written(tmp_path):
    metrics = plot_results(_rows(), tmp_path / "results.png", title="CER")
    assert metrics == ["dev_cer", "test_cer", "dev_syl_tonal", "test_syl_tonal"]
    plot_acwt_sweep({0.05: 22.0, 0.0833: 19.3, 0.1: 19.9, 0.125: 21.0}, 0.0833, tmp_path / "acwt.png")
    for name in ("results.png", "acwt.png"):
        data = (tmp_path / name).read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 2000
    assert sorted(p.name for p in tmp_path.iterdir()) == ["acwt.png", "results.png"]
    with pytest.raises(SenoneError):
        plot_results([{"system": "x", "note": "n/a"}], tmp_path / "bad.png")
    with pytest.raises(SenoneError):
        plot_acwt_sweep({}, 0.1, tmp_path / "bad2.png")


def test_error_stats_default_name_and_ser():
    s = ErrorStats(ref_count=4, subs=1, num_sent=2, sent_errs=1)
    assert s.line() == "%CER 25.00 [ 1 / 4, 0 ins, 0 del, 1 sub ]" and s.ser == 50.0


def test_training_curve_plot(tmp_path):
    from senone.score.report import plot_training_curve

    passes = [{"iteration": i, "like_per_frame": -90 + 5 * i ** 0.5, "realigned": i % 2 == 1} for i in range(10)]
    plot_training_curve(passes, tmp_path / "curve.png")
    assert (tmp_path / "curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(SenoneError):
        plot_training_curve([], tmp_path / "empty.png")


def test_syllable_rates_from_decoder_phone_keys():
    """Given keys on both sides (decoder path vs spoken), only tone differences are tonal errors."""
    from senone.score.syllables import syllable_error_rates

    refs = {"a": "你好是"}
    res = syllable_error_rates(refs, {"a": "你好事"}, ref_syllables={"a": ["n_i3", "h_ao3", "sh_ix4"]},
                               hyp_syllables={"a": ["n_i2", "h_ao3", "sh_ix4"]})
    assert res.hyp_source == "decoder path"
    assert res.tonal.total.errors == 1 and res.toneless.total.errors == 0
    with pytest.raises(SenoneError):
        syllable_error_rates(refs, {"a": "你"}, hyp_syllables={"a": ["n_i3"]})
