"""AISHELL-1 preparation through Lhotse's recipe on a tiny fake AISHELL tree built here."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from local.aishell1.prepare import TRANSCRIPT, manifest_path, prepare_aishell1
from senone import SenoneError

SR = 16000
SPEAKERS = {"train": ["S0002", "S0003"], "dev": ["S0724"], "test": ["S0764"]}
TEXTS = ["而 对 楼市 成交 抑制 作用 最 大 的 限 购", "也 成为 地方 政府 的 眼中 钉", "今年 增长 了 5%",
         "我 用 ｉＰｈｏｎｅ 拍照"]


def utt(spk: str, i: int) -> str:
    return f"BAC009{spk}W{i:04d}"


def build_tree(root: Path, with_bad: bool = True) -> dict:
    """data_aishell/wav/<split>/<speaker>/*.wav + transcript/aishell_transcript_v0.8.txt, with bad cases."""
    rng = np.random.default_rng(0)
    lines, ids = [], {}
    for split, speakers in SPEAKERS.items():
        for spk in speakers:
            for i in range(3):
                u = utt(spk, i)
                path = root / "data_aishell" / "wav" / split / spk / f"{u}.wav"
                path.parent.mkdir(parents=True, exist_ok=True)
                sf.write(path, 0.1 * rng.standard_normal(int(SR * (1.0 + 0.25 * i))), SR)
                lines.append(f"{u} {TEXTS[i]}")
                ids[u] = split
    if not with_bad:
        (root / TRANSCRIPT).parent.mkdir(parents=True)
        (root / TRANSCRIPT).write_text("\n".join(lines) + "\n", encoding="utf-8")
        return {"ids": ids, "bad": {}}
    train = root / "data_aishell" / "wav" / "train" / "S0002"
    bad = {
        "sample_rate": utt("S0002", 10), "unreadable_audio": utt("S0002", 11), "empty_audio": utt("S0002", 12),
        "no_words": utt("S0002", 13), "no_transcript": utt("S0002", 14), "duplicate_utterance_id": utt("S0002", 0),
    }
    sf.write(train / f"{bad['sample_rate']}.wav", 0.1 * rng.standard_normal(8000), 8000)
    (train / f"{bad['unreadable_audio']}.wav").write_bytes(b"RIFF" + rng.bytes(400))
    (train / f"{bad['empty_audio']}.wav").write_bytes(b"")
    sf.write(train / f"{bad['no_words']}.wav", 0.1 * rng.standard_normal(SR), SR)
    sf.write(train / f"{bad['no_transcript']}.wav", 0.1 * rng.standard_normal(SR), SR)
    for name in ("sample_rate", "unreadable_audio", "empty_audio"):
        lines.append(f"{bad[name]} 你 好")
    lines.append(f"{bad['no_words']} ， 。")
    lines.append(f"{utt('S0002', 0)} 重复 的 一 行")  # the same id again: the first line wins
    (root / TRANSCRIPT).parent.mkdir(parents=True)
    (root / TRANSCRIPT).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return {"ids": ids, "bad": bad}


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    root = tmp_path_factory.mktemp("aishell")
    tree = build_tree(root / "corpus")
    cuts = prepare_aishell1(root / "data", corpus_dir=root / "corpus")
    return root, tree, cuts


def test_splits_speakers_and_audio(prepared):
    root, tree, cuts = prepared
    for split, speakers in SPEAKERS.items():
        assert {c.id for c in cuts[split]} == {u for u, s in tree["ids"].items() if s == split}
        assert {c.supervisions[0].speaker for c in cuts[split]} == set(speakers)
        assert [c.id for c in cuts[split]] == sorted(c.id for c in cuts[split])
    cut = next(c for c in cuts["train"] if c.id == utt("S0003", 2))
    assert cut.duration == 1.5 and cut.sampling_rate == SR
    assert cut.load_audio().shape == (1, int(1.5 * SR))
    # the recordings point at the copy's wavs, not at the temporary view Lhotse read them through
    source = Path(cut.recording.sources[0].source)
    assert source == (root / "corpus/data_aishell/wav/train/S0003" / f"{cut.id}.wav").resolve()
    again = json.loads((root / "data/manifests/aishell1_report.json").read_text())
    assert again["splits"]["train"] == {"utterances": 6, "speakers": 2, "hours": round(2 * 3.75 / 3600, 4)}
    assert manifest_path(root / "data", "cuts", "test").is_file()


def test_transcripts_normalised(prepared):
    _, _, cuts = prepared
    text = {c.id: c.supervisions[0].text for s in cuts.values() for c in s}
    assert text[utt("S0003", 0)] == "而对楼市成交抑制作用最大的限购"
    assert text[utt("S0003", 2)] == "今年增长了百分之五"
    assert text[utt("S0002", 0)] == "而对楼市成交抑制作用最大的限购"  # first of two lines with this id


def test_bad_input_skipped_with_reasons(prepared):
    root, tree, cuts = prepared
    skipped = json.loads((root / "data/manifests/skipped.json").read_text())
    assert skipped["counts"] == {reason: 1 for reason in tree["bad"]}
    for reason, u in tree["bad"].items():
        assert skipped["examples"][reason][0]["item"] == u
    kept = {c.id for s in cuts.values() for c in s}
    assert not kept & (set(tree["bad"].values()) - {utt("S0002", 0)})
    norm = json.loads((root / "data/manifests/normalization.json").read_text())
    assert norm["numerals_converted"]["most_common"] == {"5%": 4}  # 4 speakers read TEXTS[2]


def test_clean_copy_read_in_place(tmp_path):
    tree = build_tree(tmp_path / "corpus", with_bad=False)
    cuts = prepare_aishell1(tmp_path / "data", corpus_dir=tmp_path / "corpus" / "data_aishell")
    assert {c.id for s in cuts.values() for c in s} == set(tree["ids"])
    assert json.loads((tmp_path / "data/manifests/skipped.json").read_text())["total"] == 0
    source = Path(cuts["dev"][0].recording.sources[0].source)
    assert source.is_file() and (tmp_path / "corpus") in source.parents
    assert not list((tmp_path / "data").glob(".aishell_view*"))


def test_same_id_in_two_splits_is_an_error(tmp_path):
    build_tree(tmp_path / "corpus")
    wav = tmp_path / "corpus/data_aishell/wav/train/S0002" / f"{utt('S0002', 1)}.wav"
    dest = tmp_path / "corpus/data_aishell/wav/test/S0764" / wav.name
    dest.write_bytes(wav.read_bytes())
    with pytest.raises(SenoneError, match="found twice"):
        prepare_aishell1(tmp_path / "data", corpus_dir=tmp_path / "corpus")


def test_missing_copy_and_offline_download_are_clear_errors(tmp_path):
    with pytest.raises(SenoneError, match="corpus_dir"):
        prepare_aishell1(tmp_path / "data")
    with pytest.raises(SenoneError, match="no AISHELL-1 copy"):
        prepare_aishell1(tmp_path / "data", corpus_dir=tmp_path)
    # port 9 on this machine refuses the connection, as an unreachable openslr.org would
    with pytest.raises(SenoneError, match="offline.*corpus_dir"):
        prepare_aishell1(tmp_path / "data", download=True, download_dir=tmp_path / "dl", base_url="http://127.0.0.1:9")
    assert not (tmp_path / "dl").exists()
