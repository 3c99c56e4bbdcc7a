"""Mandarin transcript normalisation (senone.data.text)."""

import pytest

from senone.data.text import digits_to_chinese, is_cjk_char, non_cjk_tokens, normalize_zh, normalize_zh_report


@pytest.mark.parametrize(
    "raw, expected",
    [
        # numerals, dates, percentages, decimals, fractions, clock times, identifiers
        ("我有3本书", "我有三本书"),
        ("今天是2023年5月1日。", "今天是二零二三年五月一日"),
        ("增长了50%", "增长了百分之五十"),
        ("约3.5公里", "约三点五公里"),
        ("三分之一是1/3", "三分之一是三分之一"),
        ("10:30开会", "十点三十分开会"),
        ("共计12,345元", "共计一万二千三百四十五元"),
        ("电话13800138000", "电话一三八零零一三八零零零"),
        ("我有2个苹果", "我有两个苹果"),
        ("第2个", "第二个"),
        ("零下3℃", "零下三摄氏度"),
        # full-width forms
        ("１２３个", "一百二十三个"),
        ("增长了３．５％", "增长了百分之三点五"),
        # punctuation and whitespace
        ("老师，您好！", "老师您好"),
        ("“你好”——他说……", "你好他说"),
        ("  你好 \t 世界  ", "你好世界"),
        # Latin words: upper-cased, kept whole, spaced from Chinese, digits inside kept
        ("我用iPhone拍照", "我用 IPHONE 拍照"),
        ("ＡＢＣ和abc", "ABC 和 ABC"),
        ("MP3播放器", "MP3 播放器"),
        ("他说：“don't go”", "他说 DON'T GO"),
        ("", ""),
        ("。！？", ""),
    ],
)
def test_normalize_zh(raw, expected):
    assert normalize_zh(raw) == expected


def test_report_lists_what_was_dropped_and_converted():
    r = normalize_zh_report("老师，您好！今天是2023年。OK吗？😀")
    assert r.text == "老师您好今天是二零二三年 OK 吗"
    assert r.dropped == {",": 1, "!": 1, "。": 1, "?": 1, "😀": 1}  # NFKC made ，！？ half-width
    assert r.latin_words == ["OK"]
    assert r.numbers == ["2023"]
    assert normalize_zh_report("增长了３．５％，10:30到").numbers == ["3.5%", "10:30"]
    assert not r.cjk_only
    assert r.non_cjk == ["OK"]


def test_cjk_only_and_other_scripts():
    assert normalize_zh_report("你好。").cjk_only
    assert not normalize_zh_report("").cjk_only
    r = normalize_zh_report("こんにちは你好")
    assert r.other_words == ["こんにちは"] and not r.cjk_only
    assert normalize_zh("こんにちは你好") == "こんにちは 你好"


def test_helpers():
    assert digits_to_chinese("1100") == "一一零零"
    assert is_cjk_char("中") and is_cjk_char("〇") and not is_cjk_char("A") and not is_cjk_char("，")
    assert non_cjk_tokens("我用 IPHONE 拍照") == ["IPHONE"]
    assert non_cjk_tokens("你好") == []


def test_idempotent():
    for raw in ["今天是2023年5月1日，我用iPhone拍照！", "增长了３．５％", "MP3播放器"]:
        once = normalize_zh(raw)
        assert normalize_zh(once) == once
