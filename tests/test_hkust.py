"""HKUST preparation on a small LDC-style tree built here: two-channel a-law SPHERE calls, GBK
transcripts with the corpus's mark-up, the official train/dev layout, and the bad input real
copies hold."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from local.hkust.prepare import NN_VALID_NAME, manifest_path, prepare_hkust
from local.hkust.transcript import clean_markup, decode_transcript
from senone import SenoneError
from senone.data.sphere import read_sphere_header

SR = 8000
CALL_SECONDS = 30.0
FREQS = {"A": 440.0, "B": 1250.0}  # one tone per side, so the channel a cut reads can be told apart

# Lines of every good call: (start, end, side, text); 20.75 s of speech.
LINES = [
    (0.5, 3.25, "A", "<noise>喂</noise>你好((是))，{laugh}我用ｉＰｈｏｎｅ打了3个电话"),
    (3.5, 6.0, "B", "%呃 <foreign language=\"English\">ok</foreign> 我知道了。"),
    (6.25, 9.0, "A", "[LAUGHTER] 今天是2004年3月5日 %HESITATION"),
    (9.5, 12.0, "B", "{breath} 嗯 (( )) 对对对"),
    (12.5, 15.0, "A", "~A ~B ~C 是字母吗"),
    (15.5, 18.25, "B", "我们-- 去北京吧？"),
    (18.5, 21.0, "A", "好的好的"),
    (21.5, 24.0, "B", "再见"),
    (24.25, 26.0, "A", "拜拜"),
]
SPEECH = sum(e - s for s, e, _, _ in LINES)

# Bad lines added to the first training call's transcript, with the reason each is skipped for.
BAD_LINES = [
    (b"1O.25 12.00 A: \xbb\xb5\xca\xb1\xbc\xe4", "bad_timestamp"),            # "坏时间", O for 0
    ("12.0 11.0 A: 反了".encode("gbk"), "end_not_after_start"),
    ("28.0 45.0 B: 太长了".encode("gbk"), "segment_past_audio_end"),
    ("5.0 6.0 C: 第三方".encode("gbk"), "bad_channel_label"),
    ("26.5 28.0 A: 你好 B: 我好".encode("gbk"), "speaker_label_in_text"),
    ("27.0 27.5 B: {laugh}".encode("gbk"), "no_words"),
    ("27.6 27.65 A: 短".encode("gbk"), "segment_too_short"),
    (b"28.1 28.9 A: \xff\xff\xff", "undecodable_line"),
    ("这一行没有时间".encode("gbk"), "bad_transcript_line"),
    ("18.5000 21.0000 A: 又一次".encode("gbk"), "duplicate_utterance_id"),  # same side and times as a good line
]
CLIPPED_LINE = "29.8 30.3 A: 最后一句".encode("gbk")  # 0.3 s past the end: clipped, kept


def call_id(i: int, split: str = "train") -> str:
    day = 10 + i if split == "train" else 28
    return f"200405{day:02d}_21{i:04d}_A{900 + i:06d}_B{950 + i:06d}"


def write_call(path: Path, seconds: float = CALL_SECONDS, sr: int = SR, channels: int = 2) -> None:
    t = np.arange(int(seconds * sr)) / sr
    sides = [0.3 * np.sin(2 * np.pi * FREQS[s] * t) for s in "AB"][:channels]
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, np.stack(sides, axis=1), sr, format="NIST", subtype="ALAW")


def write_transcript(path: Path, call: str, extra: list[bytes] = ()) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [f"# {call}".encode("gbk"), b""]
    lines += [f"{s:.4f} {e:.4f} {side}: {text}".encode("gbk") for s, e, side, text in LINES]
    lines += list(extra)
    path.write_bytes(b"\r\n".join(lines) + b"\r\n")


def build_tree(root: Path, num_train: int = 8) -> dict:
    """LDC2005S15 + LDC2005T32 as LDC ships them, with the bad cases listed in the returned dict."""
    audio = root / "LDC2005S15" / "hkust_mcts_p1" / "data" / "audio"
    trans = root / "LDC2005T32" / "hkust_mcts_p1tr" / "data" / "trans"
    good = [call_id(i) for i in range(num_train)]
    for i, call in enumerate(good):
        write_call(audio / "train" / f"{call}.sph")
        extra = [b for b, _ in BAD_LINES] + [CLIPPED_LINE] if i == 0 else []
        write_transcript(trans / "train" / f"{call}.txt", call, extra)
    bad = {name: call_id(num_train + k) for k, name in enumerate(
        ["sample_rate", "empty_audio", "unreadable_audio", "no_transcript", "no_audio", "channel_count"])}
    write_call(audio / "train" / f"{bad['sample_rate']}.sph", sr=16000)
    (audio / "train" / f"{bad['empty_audio']}.sph").write_bytes(b"")
    (audio / "train" / f"{bad['unreadable_audio']}.sph").write_bytes(np.random.default_rng(0).bytes(5000))
    write_call(audio / "train" / f"{bad['no_transcript']}.sph")
    write_call(audio / "train" / f"{bad['channel_count']}.sph", channels=1)
    for name in ("sample_rate", "empty_audio", "unreadable_audio", "no_audio", "channel_count"):
        write_transcript(trans / "train" / f"{bad[name]}.txt", bad[name])
    dev = [call_id(i, "dev") for i in range(2)]
    for call in dev:
        write_call(audio / "dev" / f"{call}.sph")
        write_transcript(trans / "dev" / f"{call}.txt", call)
    (root / "LDC2005S15" / "docs").mkdir()
    (root / "LDC2005S15" / "docs" / "readme.txt").write_text("not a transcript")
    return {"audio_dir": root / "LDC2005S15", "trans_dir": root / "LDC2005T32", "good": good, "dev": dev, "bad": bad}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("ldc")
    tree = build_tree(root)
    out = root / "data"
    # dev: 2 calls' worth of speech (41.5 s, over 30 s), held out; the networks' validation set: the next 3 calls
    # (about 62 s, over 50 s), kept in train
    cuts = prepare_hkust(out, audio_dir=tree["audio_dir"], trans_dir=tree["trans_dir"], seed=0,
                         nn_valid_hours=50 / 3600, dev_hours=30 / 3600)
    return tree, out, cuts


def _calls(cuts) -> set[str]:
    return {c.recording_id for c in cuts}


def _nn_valid(out: Path) -> list[str]:
    return (out / "manifests" / NN_VALID_NAME).read_text().splitlines()


def test_official_split_dev_carve_out_and_network_validation_list(corpus):
    tree, out, cuts = corpus
    assert set(cuts) == {"train", "dev", "test"}
    assert not manifest_path(out, "cuts", "valid").exists()  # validation is a list over train, not a split
    assert _calls(cuts["test"]) == set(tree["dev"])  # official dev is the test set
    train, dev = _calls(cuts["train"]), _calls(cuts["dev"])
    assert train | dev == set(tree["good"]) and not train & dev and len(dev) == 2  # dev: out of all training
    # the networks' validation set: whole training calls, every utterance of them, and they stay in train
    listed = _nn_valid(out)
    assert listed == sorted(listed) and len(set(listed)) == len(listed)
    valid_calls = {u.split("-")[0] for u in listed}
    assert len(valid_calls) == 3 and valid_calls <= train and not valid_calls & dev
    assert set(listed) == {c.id for c in cuts["train"] if c.recording_id in valid_calls}
    report = json.loads((out / "manifests" / "hkust_report.json").read_text())
    assert report["splits"]["train"]["calls"] == 6 and report["splits"]["dev"]["calls"] == 2
    assert report["splits"]["nn_valid"]["calls"] == 3 and report["splits"]["nn_valid"]["utterances"] == len(listed)
    assert sorted(report["split_calls"]["nn_valid"]) == sorted(valid_calls)
    assert report["splits"]["test"] == {"calls": 2, "speakers": 4, "utterances": 2 * len(LINES),
                                        "speech_hours": round(2 * SPEECH / 3600, 4),
                                        "audio_hours": round(2 * 2 * CALL_SECONDS / 3600, 4)}
    # whole calls: speakers never straddle dev, test and train, nor the validation list and the rest of train
    speakers = {s: {c.supervisions[0].speaker for c in cuts[s]} for s in cuts}
    assert not speakers["train"] & (speakers["dev"] | speakers["test"])
    valid_spk = {c.supervisions[0].speaker for c in cuts["train"] if c.id in set(listed)}
    assert not valid_spk & {c.supervisions[0].speaker for c in cuts["train"] if c.id not in set(listed)}
    # each held-out set reaches its target and its last call was needed to reach it
    for calls, target in ((dev, 30), (valid_calls, 50)):
        per_call = {c: sum(x.duration for x in cuts["train"] + cuts["dev"] if x.recording_id == c) for c in calls}
        assert sum(per_call.values()) >= target and sum(per_call.values()) - max(per_call.values()) < target


def test_validation_draw_is_seeded(corpus, tmp_path):
    tree, out, cuts = corpus
    again = prepare_hkust(tmp_path / "a", audio_dir=tree["audio_dir"], trans_dir=tree["trans_dir"], seed=0,
                          nn_valid_hours=50 / 3600, dev_hours=30 / 3600)
    assert _calls(again["dev"]) == _calls(cuts["dev"]) and _nn_valid(tmp_path / "a") == _nn_valid(out)
    for split in ("train", "dev", "test"):  # byte-identical manifests (paths differ only by out dir)
        a = manifest_path(out, "supervisions", split).read_bytes()
        assert a == manifest_path(tmp_path / "a", "supervisions", split).read_bytes()
    draws = set()
    for seed in (1, 2, 3):
        prepare_hkust(tmp_path / f"s{seed}", corpus_dir=tree["audio_dir"].parent, seed=seed,
                      nn_valid_hours=50 / 3600, dev_hours=30 / 3600)
        draws.add(tuple(_nn_valid(tmp_path / f"s{seed}")))
    assert len(draws | {tuple(_nn_valid(out))}) > 1


def test_no_network_validation_hours_and_stale_valid_split(tmp_path):
    tree = build_tree(tmp_path, num_train=3)
    out = tmp_path / "out"
    stale = manifest_path(out, "cuts", "valid")  # what the earlier layout wrote
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"")
    cuts = prepare_hkust(out, corpus_dir=tmp_path, nn_valid_hours=0, dev_hours=1 / 3600)
    assert _nn_valid(out) == [] and len(_calls(cuts["train"])) == 2 and not stale.exists()
    with pytest.raises(SenoneError, match="takes every one of the 2 training calls"):
        prepare_hkust(tmp_path / "out2", corpus_dir=tmp_path, nn_valid_hours=1.0, dev_hours=1 / 3600)


def test_segments_become_supervisions_on_their_side(corpus):
    tree, _, cuts = corpus
    call = tree["dev"][0]
    by_id = {c.id: c for c in cuts["test"]}
    first = by_id[f"{call}-A-000050-000325"]
    assert (first.start, first.duration, first.channel) == (0.5, 2.75, 0)
    sup = first.supervisions[0]
    assert (sup.start, sup.duration, sup.channel, sup.speaker) == (0.0, 2.75, 0, f"{call}-A")
    assert sup.custom["raw_text"] == LINES[0][3]
    second = by_id[f"{call}-B-000350-000600"]
    assert second.channel == 1 and second.supervisions[0].speaker == f"{call}-B"
    for cut, side in ((first, "A"), (second, "B")):  # the cut reads its own side's channel
        audio = cut.load_audio()
        assert audio.shape == (1, int(round(cut.duration * SR)))
        peak = np.argmax(np.abs(np.fft.rfft(audio[0]))) * SR / audio.shape[1]
        assert abs(peak - FREQS[side]) < 5, (side, peak)
    # a call's recording is the two-channel SPHERE file, read in place through a link
    rec = first.recording
    assert rec.num_channels == 2 and rec.sampling_rate == SR and rec.duration == CALL_SECONDS
    assert Path(rec.sources[0].source).resolve() == (tree["audio_dir"] / "hkust_mcts_p1/data/audio/dev" / f"{call}.sph").resolve()


def test_transcripts_cleaned_and_normalised(corpus):
    tree, out, cuts = corpus
    texts = {c.id.split("-", 1)[1]: c.supervisions[0].text for c in cuts["test"] if c.recording_id == tree["dev"][0]}
    assert texts["A-000050-000325"] == "喂你好是我用 IPHONE 打了三个电话"
    assert texts["B-000350-000600"] == "呃 OK 我知道了"
    assert texts["A-000625-000900"] == "今天是二零零四年三月五日"
    assert texts["B-000950-001200"] == "嗯对对对"
    assert texts["A-001250-001500"] == "A B C 是字母吗"
    assert texts["B-001550-001825"] == "我们去北京吧"
    norm = json.loads((out / "manifests" / "normalization.json").read_text())
    marks = norm["markup_removed"]["by_mark"]
    for mark in ("<noise>…</noise>", "((…))", "(( ))", "{laugh}", "{breath}", "[LAUGHTER]", "%HESITATION",
                 "%filler", "<foreign>…</foreign>"):
        assert marks.get(mark, 0) >= 1, mark
    assert norm["latin_words_kept"]["most_common"]["IPHONE"] >= 1


def test_bad_input_skipped_with_reasons(corpus):
    tree, out, cuts = corpus
    skipped = json.loads((out / "manifests" / "skipped.json").read_text())
    counts = skipped["counts"]
    for _, reason in BAD_LINES:
        assert counts.get(reason) == 1, (reason, counts)
    for reason, call in tree["bad"].items():
        assert counts.get(reason) == 1, (reason, counts)
        assert any(e["item"] == call for e in skipped["examples"][reason])
    assert skipped["total"] == sum(counts.values()) == len(BAD_LINES) + len(tree["bad"])
    kept = {c.id: c for s in cuts.values() for c in s}
    clipped = kept[f"{tree['good'][0]}-A-002980-003030"]  # 29.8–30.3 s on a 30 s call: clipped to the end
    assert abs(clipped.end - CALL_SECONDS) < 1e-6
    assert not any(cid.endswith("001850-002100") and "又一次" in c.supervisions[0].text for cid, c in kept.items())
    report = json.loads((out / "manifests" / "hkust_report.json").read_text())
    assert report["notes"]["segments_clipped_to_audio_end"] == 1
    assert report["notes"]["sample_coding:alaw"] >= 10


def test_features_at_8khz_from_one_channel(corpus, tmp_path):
    from senone.feats import compute_features

    _, _, cuts = corpus
    few = cuts["test"].subset(first=3)
    done = compute_features(few, tmp_path, split="test", pitch=True, sampling_rate=SR)
    assert len(done) == 3
    feats = done[0].load_features()
    assert feats.shape == (done[0].num_frames, 16) and np.isfinite(feats).all()


def test_network_features_at_8khz_fill_every_mel_band(corpus, tmp_path):
    """The recipe's features.nn (the paper's 30 bands + energy) at 8 kHz: a 25 ms frame has a 256-point FFT,
    31.25 Hz per bin; a mel filter with no bin between its edges would give the constant log(eps)."""
    from senone.config import load_config
    from senone.feats import compute_features
    from senone.feats.extract import extractor_for
    from senone.feats.nn import NnFeatureConfig

    fconf = NnFeatureConfig.from_conf(load_config("hkust")["features"]["nn"])
    assert (fconf.num_mel_bins, fconf.use_energy, fconf.pitch, fconf.input_dim) == (30, True, False, 93)
    noise = np.random.default_rng(0).normal(0, 0.1, 2 * SR).astype(np.float32)
    feats = extractor_for(fconf.extractor_config()).extract(noise, SR)
    assert feats.shape == (200, 31)
    bands = feats[:, 1:]
    assert bands.mean(axis=0).min() > np.log(np.finfo(np.float32).eps) + 5 and bands.std(axis=0).min() > 0.1
    _, _, cuts = corpus
    done = compute_features(cuts["test"].subset(first=2), tmp_path, split="test", config=fconf.extractor_config(),
                            pitch=False, sampling_rate=SR)
    assert done[0].load_features().shape == (done[0].num_frames, 31)


def test_shorten_compressed_sphere_names_sph2pipe(tmp_path):
    tree = build_tree(tmp_path, num_train=2)
    path = tree["audio_dir"] / "hkust_mcts_p1/data/audio/train" / f"{tree['good'][0]}.sph"
    header = ("NIST_1A\n   1024\nchannel_count -i 2\nsample_rate -i 8000\nsample_count -i 24000\n"
              "sample_n_bytes -i 1\nsample_coding -s26 alaw,embedded-shorten-v2.00\nend_head\n")
    path.write_bytes(header.encode().ljust(1024, b" ") + b"\x00" * 3000)
    assert read_sphere_header(path).compressed
    with pytest.raises(SenoneError, match="sph2pipe"):
        prepare_hkust(tmp_path / "out", corpus_dir=tmp_path, nn_valid_hours=0, dev_hours=1 / 3600)


def test_call_in_two_places_and_missing_paths_are_errors(tmp_path):
    tree = build_tree(tmp_path, num_train=2)
    src = tree["audio_dir"] / "hkust_mcts_p1/data/audio/train" / f"{tree['good'][0]}.sph"
    (tree["audio_dir"] / "hkust_mcts_p1/data/audio/dev" / src.name).write_bytes(src.read_bytes())
    with pytest.raises(SenoneError, match="found twice"):
        prepare_hkust(tmp_path / "out", corpus_dir=tmp_path)
    with pytest.raises(SenoneError, match="audio_dir"):
        prepare_hkust(tmp_path / "out")
    with pytest.raises(SenoneError, match="not a folder"):
        prepare_hkust(tmp_path / "out", audio_dir=tmp_path / "nowhere", trans_dir=tmp_path)


def test_markup_and_encodings():
    text, marks = clean_markup("<noise>喂</noise> {cough} ((嗯)) %UM %啊 <noise> [NOISE] ~B")
    assert text == "喂 嗯 啊 B"
    assert marks == {"<noise>…</noise>": 1, "{cough}": 1, "((…))": 1, "%UM": 1, "%filler": 1, "<noise>": 1,
                     "[NOISE]": 1}
    assert decode_transcript("1.0 2.0 A: 你好\n".encode("gbk")) == ["1.0 2.0 A: 你好", ""]
    assert decode_transcript("\ufeff1.0 2.0 A: 你好".encode("utf-8")) == ["1.0 2.0 A: 你好"]
    assert decode_transcript("你好\n".encode("gbk") + b"\xff\xfe\n") == ["你好", None, ""]


def test_truncated_audio_keeps_what_is_there(tmp_path):
    tree = build_tree(tmp_path, num_train=3)
    path = tree["audio_dir"] / "hkust_mcts_p1/data/audio/train" / f"{tree['good'][1]}.sph"
    header = read_sphere_header(path)
    path.write_bytes(path.read_bytes()[: header.header_bytes + 2 * SR * 20])  # 20 of 30 s left, both channels
    assert read_sphere_header(path).truncated and read_sphere_header(path).num_samples == 20 * SR
    cuts = prepare_hkust(tmp_path / "out", corpus_dir=tmp_path, nn_valid_hours=0, dev_hours=1 / 3600)
    kept = [c for s in cuts.values() for c in s if c.recording_id == tree["good"][1]]
    assert kept and max(c.end for c in kept) <= 20.0 and kept[0].recording.duration == 20.0
    assert kept[-1].load_audio().shape[1] == int(round(kept[-1].duration * SR))
    report = json.loads((tmp_path / "out/manifests/hkust_report.json").read_text())
    skipped = json.loads((tmp_path / "out/manifests/skipped.json").read_text())
    assert report["notes"]["audio_truncated"] == 1
    # lines after 20.5 s (20 s + the 0.5 s overshoot Kaldi allows) no longer have audio
    assert skipped["counts"]["segment_past_audio_end"] == 1 + sum(1 for _, e, _, _ in LINES if e > 20.5)


def _job_inputs(dry_run: str, rule: str) -> str:
    """The ``input:`` line of ``rule``'s job in a Snakemake dry run."""
    block = dry_run.split(f"rule {rule}:", 1)[1]
    return next(line for line in block.splitlines() if line.strip().startswith("input:"))


def test_recipe_runs_networks_at_the_paper_scale():
    from senone.config import load_config
    from senone.nn.model import InputLayout, count_params
    from senone.nn.stage import model_entry

    cfg = load_config("hkust")
    nn = cfg["nn"]
    assert Path(nn["valid_from"]) == Path("data", "hkust", "manifests", NN_VALID_NAME)  # what prepare writes
    entry = model_entry(nn, nn["default"])
    assert (entry.spec, entry.width_scale) == ("CLstm384P256+Pooling+Lstm2000P750+3xReLU2000", 1.0)
    t = entry.train
    assert (t.optimizer, t.num_streams, t.chunk_len, t.overlap, t.label_delay) == ("sgd", 20, 15, 5, 5)
    assert t.lr_initial > t.lr_final and t.momentum == 0.9
    assert abs(count_params(entry.spec, InputLayout(31, 3, 0), 5529, entry.width_scale) - 44.9e6) < 0.03 * 44.9e6
    assert nn["tables"]["width_scale"] == 1.0 and all(m["width_scale"] == 1.0 for m in nn["models"].values())
    assert nn["alignments_from"] in cfg["systems"] and cfg["gmm"][nn["alignments_from"]]["num_leaves"] > 5529
    aishell = load_config("aishell1")["nn"]
    assert model_entry(aishell, aishell["default"]).width_scale == 1.0 and aishell["valid_by"] == "speaker"


def test_workflow_wires_the_validation_list(tmp_path):
    from lhotse import CutSet

    from tests.e2e import snakemake

    build_tree(tmp_path / "ldc", num_train=4)
    work = tmp_path / "run"
    work.mkdir()
    # dev: 1 call (18 s of 20.75), the networks' validation: the next 2 calls (36 s)
    corpus = f"corpus={{corpus_dir: {tmp_path / 'ldc'}, dev_hours: 0.005, nn_valid_hours: 0.01}}"
    config = ["--config", "recipe=hkust", corpus]
    listed = f"data/hkust/manifests/{NN_VALID_NAME}"
    proc = snakemake(work, listed, *config, cores=1)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ids = (work / listed).read_text().split()
    train = CutSet.from_file(work / "data/hkust/manifests/hkust_cuts_train.jsonl.gz")
    assert ids and set(ids) < {c.id for c in train} and len({u.split("-")[0] for u in ids}) == 2

    dry = snakemake(work, "-n", "exp/hkust/nn/clstm/final.pt", *config, cores=1)
    assert dry.returncode == 0, dry.stderr[-3000:]
    assert listed in _job_inputs(dry.stdout, "nn_train") and "rule prepare:" not in dry.stdout  # made by prepare
    assert "exp/hkust/tri4/final.pkl" in _job_inputs(dry.stdout, "senone_ali")  # the paper's senone count
    dry = snakemake(work, "-n", "exp/hkust/nn/clstm/final.pt", *config, "nn={valid_from: null}", cores=1)
    assert NN_VALID_NAME not in _job_inputs(dry.stdout, "nn_train")

    # a list under the manifests folder that this recipe's prepare does not write: one clear error
    mine = "data/hkust/manifests/mine.txt"
    proc = snakemake(work, mine, *config, f"nn={{valid_from: {mine}}}", cores=1)
    assert proc.returncode != 0
    assert "local/hkust/prepare.py writes no such file" in (work / "exp/hkust/log/prepare.log").read_text()


def test_network_training_holds_out_the_listed_calls(corpus, tmp_path):
    """steps.train_nn on the prepared training split with the recipe's list: exactly the listed utterances
    are the validation set; a list naming an utterance from outside the training split stops with one line."""
    import os
    import subprocess
    import sys

    from senone.config import load_config
    from senone.feats import compute_cmvn_stats, compute_features, save_cmvn_stats
    from senone.feats.nn import NnFeatureConfig
    from senone.io import write_alignments

    _, out, cuts = corpus
    feats_dir = tmp_path / "feats"
    fconf = load_config("hkust")["features"]["nn"]
    extractor = NnFeatureConfig.from_conf(fconf).extractor_config()
    done = compute_features(cuts["train"], feats_dir, split="train", config=extractor, pitch=False, sampling_rate=SR)
    save_cmvn_stats(feats_dir / "cmvn_train.npz", compute_cmvn_stats(done))
    rng = np.random.default_rng(0)  # targets the network can partly learn: the label follows the side's tone
    labels = {c.id: (0 if "-A-" in c.id else 1) + 2 * rng.integers(0, 2, c.num_frames) for c in done}
    write_alignments(tmp_path / "pdf.ark", labels)
    (tmp_path / "senones.json").write_text(json.dumps({"num_pdfs": 4, "source": "synthetic"}))

    def train(listed: Path, name: str) -> subprocess.CompletedProcess:
        cfg = load_config("hkust")
        nn = {**cfg["nn"], "valid_from": str(listed), "models": {"tiny": {"spec": "Lstm2000P750+3xReLU2000",
                                                                            "width_scale": 0.01}}}
        nn["train"] = {**nn["train"], "num_epochs": 1, "log_every": 0}
        conf = json.dumps({"nn": nn, "features": {"nn": fconf}})
        root = Path(__file__).resolve().parent.parent
        return subprocess.run([sys.executable, "-m", "steps.train_nn", "--conf", conf, "--model", "tiny", "--feats-dir",
                               str(feats_dir), "--ali", str(tmp_path / "pdf.ark"), "--senones",
                               str(tmp_path / "senones.json"), "--out", str(tmp_path / name)],
                              capture_output=True, text=True, cwd=root, env={**os.environ, "PYTHONPATH": str(root)})

    listed = out / "manifests" / NN_VALID_NAME
    proc = train(listed, "nn")
    assert proc.returncode == 0, proc.stderr[-3000:]
    info = json.loads((tmp_path / "nn" / "model.json").read_text())
    n_listed = len(_nn_valid(out))
    assert info["valid_utterances"] == n_listed and info["train_utterances"] == len(done) - n_listed
    assert str(listed) in info["validation"]
    foreign = tmp_path / "foreign.txt"
    foreign.write_text(_nn_valid(out)[0] + "\n" + cuts["test"][0].id + "\n")  # a test utterance: not in training
    proc = train(foreign, "nn_foreign")
    assert proc.returncode != 0 and "1 of 2 listed ids are not utterances of the training split" in proc.stderr
    assert "Traceback" not in proc.stderr
