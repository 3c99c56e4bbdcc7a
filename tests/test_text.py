"""Mandarin transcript normalisation (senone.data.text)."""

import pytest

import json
from collections import Counter

from senone.data.text import (
    NormalizationSummary,
    digits_to_chinese,
    is_cjk_char,
    non_cjk_tokens,
    normalize_zh,
    normalize_zh_report,
)


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
        ("电话13800138000", "电话幺三八零零幺三八零零零"),  # identifiers: digit by digit, 1 as 幺
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
        ("MP3播放器", "MP 三播放器"),  # digits attached to letters are read in Chinese
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


@pytest.mark.parametrize(
    "raw, expected",
    [
        # dates: years digit by digit, month and day as numbers, whatever the written form
        ("2004年3月5日", "二零零四年三月五日"),
        ("2004年03月05日", "二零零四年三月五日"),
        ("2004-03-05", "二零零四年三月五日"),
        ("2004/3/5", "二零零四年三月五日"),
        ("会议在2004.3.5举行", "会议在二零零四年三月五日举行"),
        ("1998-2004年", "一九九八到二零零四年"),
        ("20世纪90年代", "二十世纪九十年代"),  # decades are quantities
        ("80后", "八零后"),
        # percentages, per mille, decimals, negatives, ranges
        ("增长了12.5%", "增长了百分之十二点五"),
        ("0.5%", "百分之零点五"),
        ("5‰", "千分之五"),
        ("圆周率约3.14159", "圆周率约三点一四一五九"),
        ("气温-3度", "气温负三度"),
        ("3~5个", "三到五个"),
        ("10%-20%", "百分之十到百分之二十"),
        # clock times
        ("9:05出发", "九点零五分出发"),
        ("12:00", "十二点"),
        ("13:45:30", "十三点四十五分三十秒"),
        # identifiers: digit by digit, 1 as 幺, separators and cue words kept apart
        ("我的电话是12345678", "我的电话是幺二三四五六七八"),
        ("手机号码：13912345678。", "手机号码幺三九幺二三四五六七八"),
        ("请拨打110", "请拨打幺幺零"),
        ("010-12345678", "零幺零幺二三四五六七八"),
        ("400-800-1234", "四零零八零零幺二三四"),
        ("房间301", "房间三零幺"),
        ("邮编100080", "邮编幺零零零八零"),
        # units and currency
        ("重5kg", "重五公斤"),
        ("跑了3.5km", "跑了三点五公里"),
        ("花了¥100", "花了一百元"),
        ("花了￥１００", "花了一百元"),
        ("$5", "五美元"),
        # full-width Latin and digits
        ("ＡＢＣ公司", "ABC 公司"),
        ("ｉＰｈｏｎｅ１２", "IPHONE 十二"),
        # Latin words with digits: split, digits in Chinese (≤2 digits a number, else digit by digit)
        ("5G网络", "五 G 网络"),
        ("空客A380", "空客 A 三八零"),
        ("4S店", "四 S 店"),
        # mixed text
        ("我在2004年用MP3听了3首English歌，花了50%的时间！", "我在二零零四年用 MP 三听了三首 ENGLISH 歌花了百分之五十的时间"),
        ("OK，明天9:30见", "OK 明天九点三十分见"),
    ],
)
def test_numeral_conventions(raw, expected):
    assert normalize_zh(raw) == expected
    assert normalize_zh(expected) == expected  # the normal form is a fixed point


def test_report_numbers_inside_latin_words():
    r = normalize_zh_report("MP3和5G")
    assert r.text == "MP 三和五 G"
    assert r.latin_words == ["MP", "G"]
    assert sorted(r.numbers) == ["3", "5"]


def test_impossible_date_is_not_read_as_a_date():
    assert "月" not in normalize_zh("2004-13-05") and "日" not in normalize_zh("2004-13-05")


def test_digits_to_chinese_one_as_yao():
    assert digits_to_chinese("110", one="幺") == "幺幺零"
    assert digits_to_chinese("2001") == "二零零一"


def test_summary_counts_and_writes(tmp_path):
    summary = NormalizationSummary("toy")
    for i, raw in enumerate(["你好，世界！", "今天是2004年3月5日", "我用iPhone", "你好"]):
        summary.add(normalize_zh_report(raw), f"utt{i}")
    summary.add_markup(Counter({"[NOISE]": 2, "{laugh}": 1}))
    summary.add(normalize_zh_report("さようなら再见"), "utt9", original="<noise>さようなら</noise>再见")
    data = summary.to_dict()
    assert data["transcripts"] == 5 and data["changed"] == 4  # "你好" was already normal
    assert data["characters_dropped"] == {"total": 2, "by_character": {"!": 1, ",": 1}}
    assert data["numerals_converted"]["most_common"] == {"2004": 1, "3": 1, "5": 1}
    assert data["latin_words_kept"] == {"total": 1, "distinct": 1, "most_common": {"IPHONE": 1}}
    assert data["other_script_words_kept"]["most_common"] == {"さようなら": 1}
    assert data["markup_removed"] == {"total": 3, "by_mark": {"[NOISE]": 2, "{laugh}": 1}}
    assert {"item": "utt9", "original": "<noise>さようなら</noise>再见", "normalized": "さようなら 再见"} in data["examples"]
    summary.write(tmp_path / "normalization.json")
    assert json.loads((tmp_path / "normalization.json").read_text(encoding="utf-8")) == data
