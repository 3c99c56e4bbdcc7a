"""cv_zh preparation on a Common Voice tree built here: MP3 clips it writes, TSVs, every kind of bad input.

The tree: 2 training speakers and 4 dev speakers (client ids chosen so that their sorted order is known),
48 kHz MP3 clips of noise (only lengths, headers and decoding matter here) and one 44.1 kHz clip.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from local.cv_zh.prepare import Row, dev_halves, prepare_cv_zh, read_tsv, speaker_prefixes
from senone import SenoneError
from senone.data.skips import SkipReport

HEADER = "client_id\tpath\tsentence\tup_votes\tdown_votes\tage\tgender\taccent"
TRAIN = {"aa11" * 16: 3, "bb22" * 16: 3}
DEV = {"c333" * 16: 2, "d444" * 16: 2, "e555" * 16: 2, "f666" * 16: 2}  # sorted: c, d, e, f
SENTENCE = "今天天气很好，我们去公园。"


def mp3(path: Path, seconds: float = 1.0, rate: int = 48000, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    x = (0.1 * np.random.default_rng(seed).standard_normal(int(seconds * rate))).astype(np.float32)
    sf.write(path, x, rate, format="MP3")
    return path


def build_release(root: Path, with_test: bool = False) -> Path:
    """``root/zh-CN/{train,dev[,test]}.tsv`` and ``clips/``; returns the release folder ``root``."""
    lang = root / "zh-CN"
    n = 0
    tables = {"train": TRAIN, "dev": DEV, **({"test": {"9999" * 16: 2}} if with_test else {})}
    for split, speakers in tables.items():
        lines = [HEADER]
        for spk, count in speakers.items():
            for _ in range(count):
                name = f"common_voice_zh-CN_{1000 + n}.mp3"
                mp3(lang / "clips" / name, seed=n)
                lines.append(f"{spk}\t{name}\t{SENTENCE}\t2\t0\ttwenties\tmale\t")
                n += 1
        (lang / f"{split}.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


def manifests(out: Path, name: str) -> dict:
    return json.loads((out / "manifests" / name).read_text())


def test_splits_speakers_metadata_and_resampling(tmp_path):
    root = build_release(tmp_path / "cv")
    out = tmp_path / "data"
    cuts = prepare_cv_zh(out, corpus_dir=root)  # the release folder; its zh-CN/ is found
    spk = {s: sorted({c.supervisions[0].speaker for c in cs}) for s, cs in cuts.items()}
    assert spk == {"train": sorted(TRAIN), "dev": ["c333" * 16, "e555" * 16], "test": ["d444" * 16, "f666" * 16]}
    cut = next(iter(cuts["train"]))
    sup = cut.supervisions[0]
    assert sup.text == "今天天气很好我们去公园" and sup.custom["raw_text"] == SENTENCE
    assert sup.custom["gender"] == "male" and sup.custom["age"] == "twenties" and "accent" not in sup.custom
    assert cut.id.startswith(sup.speaker[:8] + "-common_voice_zh-CN_")
    assert cut.sampling_rate == 16000 and cut.recording.transforms  # resampled on load, no copy on disk
    samples = cut.load_audio()
    assert samples.shape == (1, 16000)  # 1 s: the MP3's decoded length, at the recipe's rate
    assert manifests(out, "audio.json")["recordings"] == {"resampled 48000 -> 16000 Hz": 14}
    report = manifests(out, "cv_zh_report.json")
    assert report["test_from"].startswith("dev.tsv") and report["splits"]["test"]["utterances"] == 4
    assert manifests(out, "skipped.json")["total"] == 0
    # pointing at zh-CN itself works the same
    again = prepare_cv_zh(tmp_path / "data2", corpus_dir=root / "zh-CN")
    assert {s: len(c) for s, c in again.items()} == {s: len(c) for s, c in cuts.items()}


def test_official_test_split_replaces_the_second_dev_half(tmp_path):
    root = build_release(tmp_path / "cv", with_test=True)
    cuts = prepare_cv_zh(tmp_path / "data", corpus_dir=root)
    assert {c.supervisions[0].speaker for c in cuts["test"]} == {"9999" * 16}
    assert {c.supervisions[0].speaker for c in cuts["dev"]} == {"c333" * 16, "e555" * 16}  # the same tuning half
    assert manifests(tmp_path / "data", "cv_zh_report.json")["test_from"] == "test.tsv"


def test_bad_input_is_counted_and_nothing_else_is_lost(tmp_path):
    root = build_release(tmp_path / "cv")
    lang = root / "zh-CN"
    clips = lang / "clips"
    lines = (lang / "train.tsv").read_text(encoding="utf-8").splitlines()
    a = "aa11" * 16
    extra = [
        f"{a}\tmissing.mp3\t{SENTENCE}\t2\t0\t\tmale\t",                      # listed, not on disk
        f"{a}\ttruncated.mp3\t{SENTENCE}\t2\t0\t\tmale\t",                    # cut short on disk
        f"{a}\tcorrupt.mp3\t{SENTENCE}\t2\t0\t\tmale\t",                      # not audio
        f"{a}\tblank.mp3\t。，！\t2\t0\t\tmale\t",                             # nothing left of the sentence
        f"{a}\tshort.mp3\t{SENTENCE * 3}\t2\t0\t\tmale\t",                    # 0.5 s for 33 characters
        f"{a}\tcommon_voice_zh-CN_1000.mp3\t另一句话\t2\t0\t\tmale\t",          # path listed twice
        f"{a}\tfew_fields.mp3\t{SENTENCE}",                                    # a malformed line
        f"{a}\tcd.mp3\t{SENTENCE}\t2\t0\t\tmale\t",                           # 44.1 kHz: resampled, kept
    ]
    (lang / "train.tsv").write_text("\n".join(lines + extra) + "\n", encoding="utf-8")
    data = mp3(clips / "truncated.mp3", seconds=2.0).read_bytes()
    (clips / "truncated.mp3").write_bytes(data[: len(data) // 2])
    (clips / "corrupt.mp3").write_bytes(b"ID3\x04" + bytes(range(256)) * 20)
    mp3(clips / "blank.mp3")
    mp3(clips / "short.mp3", seconds=0.5)
    mp3(clips / "cd.mp3", rate=44100)
    out = tmp_path / "data"
    cuts = prepare_cv_zh(out, corpus_dir=root)
    report = manifests(out, "skipped.json")
    assert report["counts"] == {"missing_audio_file": 1, "truncated_audio": 1, "unreadable_audio": 1,
                                "empty_transcript": 1, "audio_too_short_for_text": 1, "duplicate_path": 1,
                                "bad_tsv_line": 1}
    assert report["examples"]["duplicate_path"][0]["detail"].startswith("listed 2 times (train.tsv:2, train.tsv:")
    assert "train.tsv:" in report["examples"]["bad_tsv_line"][0]["detail"]
    assert len(cuts["train"]) == 3 + 3 - 1 + 1  # the duplicated clip's both rows go; the 44.1 kHz clip stays
    cd = next(c for c in cuts["train"] if c.id.endswith("-cd"))
    assert cd.sampling_rate == 16000 and cd.load_audio().shape == (1, 16000)
    assert manifests(out, "audio.json")["recordings"] == {"resampled 44100 -> 16000 Hz": 1,
                                                          "resampled 48000 -> 16000 Hz": 13}


def test_a_missing_column_or_folder_is_one_clear_error(tmp_path):
    root = build_release(tmp_path / "cv")
    tsv = root / "zh-CN" / "dev.tsv"
    tsv.write_text(tsv.read_text().replace("sentence", "text", 1))
    with pytest.raises(SenoneError, match=r"dev.tsv: no column sentence in its header"):
        prepare_cv_zh(tmp_path / "data", corpus_dir=root)
    with pytest.raises(SenoneError, match="no zh-CN/train.tsv and dev.tsv under"):
        prepare_cv_zh(tmp_path / "data", corpus_dir=tmp_path)
    with pytest.raises(SenoneError, match="is not a directory"):
        prepare_cv_zh(tmp_path / "data", corpus_dir=tmp_path / "nowhere")
    tsv.write_bytes(b"client_id\tpath\tsentence\n\xff\xfe\n")
    with pytest.raises(SenoneError, match=r"dev.tsv: not UTF-8"):
        read_tsv(tsv, "dev", SkipReport("cv_zh"))


def test_speaker_prefixes_and_halves():
    ids = {"abcdefgh1234", "abcdefgh5678", "zzzzzzzz0000"}
    prefixes = speaker_prefixes(ids)
    assert len(set(prefixes.values())) == 3 and all(len(p) == 12 for p in prefixes.values())
    rows = [Row(split="dev", lineno=i, client_id=c, path=f"{i}.mp3", sentence="好", gender="", metadata={})
            for i, c in enumerate(["d", "a", "c", "b", "a", "e"])]
    tune, test = dev_halves(rows)  # the halves depend only on the sorted client ids
    assert (tune, test) == (["a", "c", "e"], ["b", "d"])


SHARED = Path(__file__).resolve().parents[2] / "shared" / "corpora" / "cv_zh"


@pytest.mark.skipif(not (SHARED / "zh-CN" / "dev.tsv").is_file(), reason="the shared cv_zh copy is not beside the checkout")
def test_the_shared_copy_gives_the_fixed_halves():
    """The issue's numbers for the shared copy: dev 12 speakers / 954 clips, test 12 / 1000."""
    rows = read_tsv(SHARED / "zh-CN" / "dev.tsv", "dev", SkipReport("cv_zh"))
    tune, test = dev_halves(rows)
    assert (len(tune), len(test)) == (12, 12)
    assert sum(r.client_id in set(tune) for r in rows) == 954 and sum(r.client_id in set(test) for r in rows) == 1000
