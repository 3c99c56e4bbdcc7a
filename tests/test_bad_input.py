"""Bad input in real corpora: skipped with a counted reason in skipped.json, or one clear error.

Every case is built in tmp: an FSDD-like tree for the FSDD reader, a Kaldi data dir and a folder of
audio + .txt for the custom reader. Audio is generated noise (only headers and lengths matter here).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from lhotse import CutSet

from local.custom.prepare import prepare_custom
from local.fsdd.prepare import prepare_fsdd
from senone import SenoneError


def wav(path: Path, seconds: float = 0.5, rate: int = 8000, channels: int = 1, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    x = np.random.default_rng(seed).uniform(-0.3, 0.3, size=(int(seconds * rate), channels)).astype(np.float32)
    sf.write(path, x if channels > 1 else x[:, 0], rate, subtype="PCM_16")
    return path


def skipped(out: Path) -> dict:
    return json.loads((out / "manifests" / "skipped.json").read_text())


def cut_ids(out: Path, corpus: str) -> set[str]:
    return {c.id for s in ("train", "dev", "test")
            for c in CutSet.from_file(out / "manifests" / f"{corpus}_cuts_{s}.jsonl.gz")}


# ---------------------------------------------------------------------------------------------- FSDD

def fsdd_tree(root: Path, speakers=("ann", "bob", "cid", "dan"), digits=range(3), takes=range(2)) -> Path:
    for i, spk in enumerate(speakers):
        for d in digits:
            for t in takes:
                wav(root / "recordings" / f"{d}_{spk}_{t}.wav", seed=100 * i + 10 * d + t)
    (root / "speakers.tsv").write_text("speaker\tgender\taccent\n" + "".join(f"{s}\tmale\tX\n" for s in speakers))
    return root


def test_fsdd_bad_files_are_skipped_with_reasons(tmp_path):
    root = fsdd_tree(tmp_path / "fsdd")
    rec = root / "recordings"
    (rec / "7_ann_9.wav").write_bytes(b"RIFF\x00\x01garbage, not a wave file")      # corrupt
    sf.write(rec / "8_ann_9.wav", np.zeros(0, dtype=np.float32), 8000)              # no samples
    wav(rec / "9_bob_9.wav", rate=16000)                                            # higher rate: resampled
    wav(rec / "9_bob_8.wav", channels=2)                                            # stereo: first channel
    wav(rec / "9_bob_7.wav", rate=4000)                                             # lower rate: skipped
    wav(rec / "seven_cid.wav")                                                      # name not parsable
    wav(rec / "2_dan_05.wav")                                                       # same id as 2_dan_5.wav
    wav(rec / "2_dan_5.wav")
    out = tmp_path / "data"
    cuts = prepare_fsdd(out, corpus_dir=root, dev_speakers=["cid"], test_speakers=["dan"])
    report = skipped(out)
    assert report["counts"] == {"unreadable_audio": 1, "empty_audio": 1, "sample_rate_too_low": 1,
                                "unparsable_file_name": 1, "duplicate_id": 1}
    assert "4000 Hz, below the recipe's 8000 Hz" in report["examples"]["sample_rate_too_low"][0]["detail"]
    assert report["examples"]["duplicate_id"][0]["item"] == "dan-2-05"
    ids = cut_ids(out, "fsdd")
    assert "dan-2-05" not in ids and "ann-7-09" not in ids and "bob-9-07" not in ids
    assert {"bob-9-09", "bob-9-08"} <= ids
    assert {s: len(c) for s, c in cuts.items()} == {"train": 14, "dev": 6, "test": 6}  # both copies of take 5 gone
    assert {c.supervisions[0].text for c in cuts["train"]} == {"ZERO", "ONE", "TWO", "NINE"}
    audio = json.loads((out / "manifests" / "audio.json").read_text())
    assert audio == {"sampling_rate": 8000, "recordings": {"first channel of 2": 1, "resampled 16000 -> 8000 Hz": 1}}
    by_id = {c.id: c for c in cuts["train"]}
    for cid, source in (("bob-9-09", rec / "9_bob_9.wav"), ("bob-9-08", rec / "9_bob_8.wav")):
        samples = by_id[cid].load_audio()
        assert by_id[cid].sampling_rate == 8000 and samples.shape == (1, 4000)  # 0.5 s at the recipe's rate
        original, rate = sf.read(source, dtype="float32", always_2d=True)
        if rate == 8000:  # the stereo file: the first channel, unchanged
            np.testing.assert_allclose(samples[0], original[:, 0], atol=1e-4)


def test_fsdd_errors_where_going_on_would_be_wrong(tmp_path):
    with pytest.raises(SenoneError, match="is not a directory"):
        prepare_fsdd(tmp_path / "o", corpus_dir=tmp_path / "missing")
    (tmp_path / "empty" / "recordings").mkdir(parents=True)
    with pytest.raises(SenoneError, match="no .wav files"):
        prepare_fsdd(tmp_path / "o", corpus_dir=tmp_path / "empty")
    root = fsdd_tree(tmp_path / "fsdd")
    with pytest.raises(SenoneError, match=r"dev speaker\(s\) \['nicolas'\] not found"):
        prepare_fsdd(tmp_path / "o", corpus_dir=root)  # the default split names speakers this corpus lacks
    with pytest.raises(SenoneError, match="in both the dev and the test split"):
        prepare_fsdd(tmp_path / "o", corpus_dir=root, dev_speakers=["ann"], test_speakers=["ann"])
    for f in (root / "recordings").glob("*_dan_*.wav"):  # every test file corrupt: nothing left to test on
        f.write_bytes(b"not audio")
    with pytest.raises(SenoneError, match="nothing left in the test split"):
        prepare_fsdd(tmp_path / "o", corpus_dir=root, dev_speakers=["cid"], test_speakers=["dan"])
    assert skipped(tmp_path / "o")["counts"] == {"unreadable_audio": 6}  # the report is written all the same


# ---------------------------------------------------------------------------------- Kaldi data dirs

def kaldi_dir(tmp_path: Path, speakers=("s1", "s2", "s3"), per_speaker: int = 2) -> Path:
    """A Kaldi data dir with relative wav.scp paths (resolved from two levels above data/train)."""
    recipe = tmp_path / "recipe"
    d = recipe / "data" / "train"
    d.mkdir(parents=True)
    wav_lines, text, utt2spk = [], [], []
    for i, spk in enumerate(speakers):
        for j in range(per_speaker):
            utt = f"{spk}-u{j}"
            wav(recipe / "wav" / f"{utt}.wav", seconds=1.0, rate=16000, seed=10 * i + j)
            wav_lines.append(f"{utt} wav/{utt}.wav")
            text.append(f"{utt} hello world")
            utt2spk.append(f"{utt} {spk}")
    (d / "wav.scp").write_text("\n".join(wav_lines) + "\n")
    (d / "text").write_text("\n".join(text) + "\n")
    (d / "utt2spk").write_text("\n".join(utt2spk) + "\n")
    return d


def test_kaldi_dir_bad_lines_are_skipped(tmp_path):
    d = kaldi_dir(tmp_path)
    rec = d.parent.parent
    wav(rec / "wav" / "long.wav", seconds=3.0, rate=16000, seed=99)
    with open(d / "wav.scp", "a") as f:
        f.write("long wav/long.wav\ngone wav/does_not_exist.wav\n")
    with open(d / "text", "a") as f:
        f.write("seg-ok one two\nseg-over three\nseg-far four\nseg-bad five\nseg-gone six\n"
                "s1-u1 a second line for s1-u1\ns2-u5\n")
    with open(d / "text", "ab") as f:
        f.write(b"s3-u9 \xff\xfe not utf-8\n")
    with open(d / "utt2spk", "a") as f:
        f.write("seg-ok s1\nseg-over s1\nseg-far s2\nseg-bad s2\nseg-gone s3\ns2-u5 s2\n")
    # segments for the long recording; the whole-file utterances need lines too once segments exists
    lines = [f"s{i}-u{j} s{i}-u{j} 0.0 1.0" for i in (1, 2, 3) for j in (0, 1)] + ["s2-u5 s2-u1 0.0 0.5"]
    lines += ["seg-ok long 0.5 1.5", "seg-over long 2.5 3.3",  # ends 0.3 s past the audio: cut at 3.0
              "seg-far long 2.0 4.0", "seg-bad long 1.0 abc", "seg-gone gone 0 1"]
    (d / "segments").write_text("\n".join(lines) + "\n")
    out = tmp_path / "out"
    prepare_custom(out, corpus_dir=d, language="en", dev_speakers=["s2"], test_speakers=["s3"])
    counts = skipped(out)["counts"]
    assert counts == {"duplicate_id": 1, "empty_transcript": 1, "undecodable_line": 1, "segment_past_audio_end": 1,
                      "bad_segment_line": 1, "missing_audio_file": 1}
    ids = cut_ids(out, "custom")
    assert {"seg-ok", "seg-over", "s1-u0", "s3-u0"} <= ids
    assert not ids & {"s1-u1", "s2-u5", "seg-far", "seg-bad", "seg-gone"}
    over = next(c for c in CutSet.from_file(out / "manifests" / "custom_cuts_train.jsonl.gz") if c.id == "seg-over")
    assert over.duration == pytest.approx(0.5) and over.start == pytest.approx(2.5)
    assert over.supervisions[0].text == "THREE"


def test_kaldi_dir_pipes_and_missing_pieces_are_clear_errors(tmp_path):
    d = kaldi_dir(tmp_path)
    scp = (d / "wav.scp").read_text()
    (d / "wav.scp").write_text(scp + "piped sox in.sph -t wav - |\n")
    with pytest.raises(SenoneError, match=r"wav.scp:7: piped is a piped command .* run the command once into"):
        prepare_custom(tmp_path / "o", corpus_dir=d, language="en")
    (d / "wav.scp").write_text(scp + "ark feats/raw.ark:1234\n")
    with pytest.raises(SenoneError, match="archive entry"):
        prepare_custom(tmp_path / "o", corpus_dir=d, language="en")
    (d / "wav.scp").write_text(scp)
    (d / "utt2spk").unlink()
    with pytest.raises(SenoneError, match="no utt2spk"):
        prepare_custom(tmp_path / "o", corpus_dir=d, format="kaldi", language="en")


def test_kaldi_split_dirs_give_the_split(tmp_path):
    base = tmp_path / "corpus"
    for split, speakers in (("train", ("a", "b")), ("dev", ("c",)), ("test", ("d",))):
        d = base / split
        d.mkdir(parents=True)
        utts = [f"{spk}-u{j}" for spk in speakers for j in range(2)]
        (d / "wav.scp").write_text("".join(f"{u} {wav(tmp_path / 'audio' / f'{u}.wav', rate=16000)}\n" for u in utts))
        (d / "text").write_text("".join(f"{u} yes\n" for u in utts))
        (d / "utt2spk").write_text("".join(f"{u} {u[0]}\n" for u in utts))
    out = tmp_path / "out"
    cuts = prepare_custom(out, corpus_dir=base, language="en")
    assert {s: len(c) for s, c in cuts.items()} == {"train": 4, "dev": 2, "test": 2}
    assert {c.supervisions[0].speaker for c in cuts["test"]} == {"d"}
    assert skipped(out)["total"] == 0


# ------------------------------------------------------------------------------ folders of audio+txt

def test_folder_skips_and_split_file(tmp_path):
    root = tmp_path / "mine"
    for spk in ("p1", "p2", "p3"):
        for k in range(2):
            wav(root / spk / f"{spk}_{k}.wav", rate=16000, seed=k)
            (root / spk / f"{spk}_{k}.txt").write_text("你好，世界！\n")
    wav(root / "p1" / "untranscribed.wav", rate=16000)
    wav(root / "loose.wav", rate=16000)
    (root / "loose.txt").write_text("没有说话人")
    wav(root / "p2" / "blank.wav", rate=16000)
    (root / "p2" / "blank.txt").write_text(" 。\n")
    split = tmp_path / "split.txt"
    split.write_text("p1-p1_0 train\np1-p1_1 train\np2-p2_0 dev\np2-p2_1 dev\np3-p3_0 test\n")
    out = tmp_path / "out"
    cuts = prepare_custom(out, corpus_dir=root, language="zh", split_file=str(split))
    assert skipped(out)["counts"] == {"no_transcript": 1, "no_speaker": 1, "empty_transcript": 1,
                                      "not_in_split_file": 1}
    assert {s: len(c) for s, c in cuts.items()} == {"train": 2, "dev": 2, "test": 1}
    sup = next(iter(cuts["train"])).supervisions[0]
    assert sup.text == "你好世界" and sup.custom["raw_text"] == "你好，世界！" and sup.speaker == "p1"
    split.write_text("p1-p1_0 validation\n")
    with pytest.raises(SenoneError, match=r"split.txt:1: expected 'utt-id train\|dev\|test'"):
        prepare_custom(tmp_path / "o2", corpus_dir=root, language="zh", split_file=str(split))


def test_folder_speaker_pattern_and_seeded_speaker_split(tmp_path):
    root = tmp_path / "flat"
    for spk in ("amy", "ben", "cat", "dov"):
        for k in range(2):
            wav(root / f"{spk}_{k}.wav", rate=16000, seed=k)
            (root / f"{spk}_{k}.txt").write_text("Hello, World.")
    runs = [prepare_custom(tmp_path / f"o{i}", corpus_dir=root, language="en", speaker_pattern=r"^(?P<speaker>[a-z]+)_",
                           seed=3) for i in range(2)]
    speakers = [{s: sorted({c.supervisions[0].speaker for c in cs}) for s, cs in r.items()} for r in runs]
    assert speakers[0] == speakers[1]  # seeded
    assert len(speakers[0]["dev"]) == len(speakers[0]["test"]) == 1 and len(speakers[0]["train"]) == 2
    assert next(iter(runs[0]["train"])).supervisions[0].text == "HELLO WORLD"
    with pytest.raises(SenoneError, match="no audio files"):
        prepare_custom(tmp_path / "o", corpus_dir=root, language="en", audio_extensions=[".sph"])
