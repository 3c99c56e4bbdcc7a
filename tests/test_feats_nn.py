"""Tests for the network features: log-mel + energy extraction (FbankPitch), storage, CMVN modes and
the network input layout (senone.feats.nn), and the feats step with ``--kind nn``."""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from senone import SenoneError
from senone.feats import add_deltas, apply_cmvn, compute_cmvn_stats, num_frames, save_cmvn_stats, speaker_of
from senone.feats.nn import (
    NnFeatureConfig,
    iter_nn_inputs,
    load_nn_cmvn,
    load_nn_inputs,
    nn_cmvn_path,
    nn_input,
    nn_input_layout,
)
from tests.test_feats import harmonic

ROOT = Path(__file__).resolve().parent.parent
FSDD = Path("/work/shared/corpora/fsdd/recordings")  # real 8 kHz speech where the shared corpora are mounted


def speechlike(seconds: float, sr: int, seed: int, gain: float = 1.0) -> np.ndarray:
    """Gliding harmonic 'syllables' with pauses and a weak noise floor."""
    rng = np.random.default_rng(seed)
    n = int(round(seconds * sr))
    f0 = np.interp(np.arange(n), [0, n], rng.uniform(90, 280, 2))
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * np.arange(n) / sr * rng.uniform(2, 5)) ** 2
    x = harmonic(f0, sr) * envelope + 0.003 * rng.standard_normal(n)
    return (gain * x).astype(np.float32)


def odd_lengths(sr: int) -> list[int]:
    """Sample counts around frame boundaries (Lhotse rounds to whole shifts), shortest = one frame."""
    shift = sr // 100
    out = [int(0.025 * sr), int(0.025 * sr) + 1]
    for frames in (7, 50, 123):
        base = frames * shift
        out += [base - shift // 2 - 1, base - shift // 2, base - 1, base, base + 1, base + shift // 2 - 1,
                base + shift // 2]
    return out


# --------------------------------------------------------------------------- extraction


@pytest.mark.parametrize("sr", [8000, 16000])
def test_frames_equal_the_gmm_features(sr):
    """The networks train on pdf-ids of GMM alignments: one network frame per GMM frame, always."""
    from senone.feats import FbankPitch, FbankPitchConfig, MfccPitch

    mfcc, fbank = MfccPitch(), FbankPitch(FbankPitchConfig(pitch=True))
    lengths = odd_lengths(sr)
    signals = [speechlike(n / sr, sr, seed=i) for i, n in enumerate(lengths)]
    assert [len(x) for x in signals] == lengths
    for x, m, f in zip(signals, mfcc.extract_many(signals, sr), fbank.extract_many(signals, sr)):
        assert len(f) == len(m) == num_frames(len(x), sr)
        assert f.shape[1] == 34 and m.shape[1] == 16


@pytest.mark.skipif(not FSDD.is_dir(), reason="shared FSDD corpus not mounted")
def test_real_8khz_speech_frames_and_values():
    """Real 8 kHz recordings (odd lengths): frame counts as the GMM features, values as kaldi-native-fbank."""
    from senone.feats import FbankPitch, MfccPitch

    files = sorted(FSDD.glob("*.wav"))[::150]
    assert len(files) >= 15
    fbank, mfcc = FbankPitch(), MfccPitch()
    for path in files:
        x, sr = sf.read(path, dtype="float32")
        assert sr == 8000
        f = fbank.extract(x, sr)
        assert len(f) == len(mfcc.extract(x, sr))
        np.testing.assert_allclose(f, knf_fbank(x, sr), atol=2e-3)


def knf_fbank(x: np.ndarray, sr: int) -> np.ndarray:
    """Kaldi's compute-fbank-feats, as kaldi-native-fbank computes it, with this project's settings."""
    import kaldi_native_fbank as knf

    opts = knf.FbankOptions()
    opts.frame_opts.samp_freq = sr
    opts.frame_opts.dither = 0.0
    opts.frame_opts.snip_edges = False
    opts.mel_opts.num_bins = 30
    opts.mel_opts.high_freq = -400  # Lhotse's default (knf's is 0 = Nyquist)
    opts.use_energy = True
    opts.energy_floor = 1e-10
    fb = knf.OnlineFbank(opts)
    fb.accept_waveform(sr, x.tolist())
    fb.input_finished()
    return np.stack([fb.get_frame(i) for i in range(fb.num_frames_ready)])


@pytest.mark.parametrize("sr", [8000, 16000])
def test_log_mel_values_match_kaldi_native_fbank(sr):
    """Independent reference: kaldi-native-fbank (C++ port of Kaldi's FbankComputer).

    Tolerance 2e-3 (natural log): both compute in float32 with different FFTs; the largest
    difference measured was 3.3e-4, in the quietest bands (a 0.001-amplitude noise floor, 60 dB
    under the voice), where rounding of the frame's total power weighs most. A real mismatch is
    far larger: the top mel edge 100 Hz off (-300 instead of -400) moves the upper bands by
    0.05-0.16 in the median and up to 2.6.
    """
    from senone.feats import FbankPitch

    rng = np.random.default_rng(sr)
    n = int(1.37 * sr)
    x = (harmonic(np.linspace(120, 220, n), sr) * np.hanning(n) + 0.001 * rng.standard_normal(n)).astype(np.float32)
    ours, ref = FbankPitch().extract(x, sr), knf_fbank(x, sr)
    assert ours.shape == ref.shape == (num_frames(n, sr), 31)
    np.testing.assert_allclose(ours, ref, atol=2e-3)
    # the energy column is Kaldi's raw log-energy (first column, as Kaldi's --use-energy puts it)
    np.testing.assert_allclose(ours[:, 0], ref[:, 0], atol=1e-4)


def test_energy_and_bands_follow_the_gain():
    """4× louder audio: +2 ln 4 on the energy and on every mel band (no band near the log floor)."""
    from senone.feats import FbankPitch, MfccPitch

    x = speechlike(1.3, 16000, seed=3)
    quiet, loud = FbankPitch().extract(x, 16000), FbankPitch().extract(4 * x, 16000)
    assert np.all(loud[:, 0] > quiet[:, 0])
    np.testing.assert_allclose(loud - quiet, 2 * np.log(4.0), atol=1e-3)
    # the energy column is the GMM features' C0, computed by the same code
    np.testing.assert_array_equal(quiet[:, 0], MfccPitch().extract(x, 16000)[:, 0])
    # louder frames of one signal have larger energy: a rising ramp gives a rising energy track
    ramp = (speechlike(1.0, 16000, seed=4) * np.linspace(0.05, 1.0, 16000)).astype(np.float32)
    energy = FbankPitch().extract(ramp, 16000)[:, 0]
    assert np.polyfit(np.arange(len(energy)), energy, 1)[0] > 0


def test_pitch_columns_are_the_gmm_pitch_columns():
    from senone.feats import FbankPitch, FbankPitchConfig, MfccPitch

    signals = [speechlike(s, 16000, seed=i) for i, s in enumerate((0.7, 2.31, 1.05))]
    with_pitch = FbankPitch(FbankPitchConfig(pitch=True)).extract_many(signals, 16000)
    without = FbankPitch().extract_many(signals, 16000)
    gmm = MfccPitch().extract_many(signals, 16000)
    for w, wo, g in zip(with_pitch, without, gmm):
        np.testing.assert_array_equal(w[:, :31], wo)
        np.testing.assert_array_equal(w[:, 31:], g[:, 13:])


# --------------------------------------------------------------------------- config and layout


def test_layout_and_config_checks():
    assert nn_input_layout({}) == (31, 3, 0)
    assert nn_input_layout({"pitch": True}) == (31, 3, 3)
    assert nn_input_layout({"use_energy": False, "delta_order": 1}) == (30, 2, 0)
    assert nn_input_layout({"features": {"nn": {"num_mel_bins": 40}}}) == (41, 3, 0)  # a whole config
    assert NnFeatureConfig.from_conf({"pitch": True}).input_dim == 96
    from senone.config import load_config

    cfg = load_config("hkust")
    assert nn_input_layout(cfg) == (31, 3, 0)  # conf/features.yaml: the paper's input, as the HKUST recipe keeps it
    assert NnFeatureConfig.from_conf(cfg).input_dim == 93
    cfg = load_config("synth_zh")
    assert nn_input_layout(cfg) == (31, 3, 3)  # synth_zh appends pitch: its errors are mostly tones
    assert NnFeatureConfig.from_conf(cfg).input_dim == 96
    bad = [
        ({"cmvn": "utterance"}, "features.nn.cmvn = 'utterance': expected one of speaker, global"),
        ({"num_mel_bins": "30"}, "features.nn.num_mel_bins = '30': expected an integer"),
        ({"num_mel_bins": 2}, "features.nn.num_mel_bins = 2: expected 3 to 128"),
        ({"norm_vars": "yes"}, "features.nn.norm_vars = 'yes': expected true or false"),
        ({"delta_order": True}, "features.nn.delta_order = True: expected an integer"),
        ({"num_bins": 30}, "features.nn: unknown key(s) num_bins; known: num_mel_bins"),
        ({"features": {"gmm": {}}}, "configuration key 'features.nn' is missing"),
    ]
    for conf, message in bad:
        with pytest.raises(SenoneError) as err:
            nn_input_layout(conf)
        assert message in str(err.value)


# --------------------------------------------------------------------------- storage, CMVN, inputs


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """train: 2 speakers × 3 utterances (odd lengths, speaker gains 0.3 and 2.0), dev: 1 speaker (gain 6);
    nn features with pitch, and GMM features, computed once."""
    from lhotse import CutSet, Recording, RecordingSet, SupervisionSegment, SupervisionSet

    from senone.feats import FbankPitchConfig, compute_features

    root = tmp_path_factory.mktemp("nnfeats")
    sets = {}
    for split, speakers in (("train", {"spkA": 0.3, "spkB": 2.0}), ("dev", {"spkC": 6.0})):
        recs, sups = [], []
        for s, (spk, gain) in enumerate(speakers.items()):
            for i, seconds in enumerate((0.8137, 1.4451, 2.0066)):
                name = f"{spk}-{i}"
                path = root / f"{name}.wav"
                sf.write(path, speechlike(seconds, 16000, seed=10 * s + i, gain=gain), 16000, subtype="FLOAT")
                rec = Recording.from_file(path, recording_id=name)
                recs.append(rec)
                sups.append(SupervisionSegment(id=name, recording_id=name, start=0, duration=rec.duration, speaker=spk))
        sets[split] = CutSet.from_manifests(RecordingSet.from_recordings(recs), SupervisionSet.from_segments(sups))
    nn_conf = NnFeatureConfig(pitch=True)
    out = {}
    for split, cuts in sets.items():
        out[split] = compute_features(cuts, root / "nn", split=split, pitch=True, config=nn_conf.extractor_config())
        save_cmvn_stats(root / "nn" / f"cmvn_{split}.npz", compute_cmvn_stats(out[split]))
    gmm = compute_features(sets["train"], root / "gmm", split="train", pitch=True)
    return root, sets, out, gmm


def test_stored_features_and_frames(corpus):
    root, sets, out, gmm = corpus
    assert [c.num_frames for c in out["train"]] == [c.num_frames for c in gmm]
    for cut in out["train"]:
        assert cut.features.type == "senone-fbank-pitch"
        assert cut.load_features().shape == (cut.num_frames, 34)
    assert (root / "nn" / "cuts_dev.jsonl.gz").is_file() and (root / "nn" / "feats_dev" / "feats.scp").is_file()
    # stored pitch = stored GMM pitch, up to the 16-bit storage (step: range / 65535 per matrix)
    for nn_cut, gmm_cut in zip(out["train"], gmm):
        a, b = nn_cut.load_features(), gmm_cut.load_features()
        np.testing.assert_allclose(a[:, 31:], b[:, 13:], atol=2 * (b.max() - b.min()) / 65535)


def test_speaker_cmvn_and_input_layout(corpus):
    root, sets, out, _ = corpus
    conf = NnFeatureConfig(pitch=True)
    stats = load_nn_cmvn(root / "nn", "train", conf)
    assert set(stats) == {"spkA", "spkB"}
    inputs = load_nn_inputs(out["train"], stats, conf)
    assert list(inputs) == list(out["train"].ids)
    for spk in ("spkA", "spkB"):
        x = np.concatenate([inputs[c.id] for c in out["train"] if speaker_of(c) == spk])
        assert x.shape[1] == 96 and x.dtype == np.float32
        np.testing.assert_allclose(x[:, :31].mean(axis=0), 0.0, atol=1e-4)  # statics: zero mean per speaker
        np.testing.assert_allclose(x[:, :31].std(axis=0), 1.0, atol=1e-4)  # norm_vars: true (default)
        np.testing.assert_allclose(x[:, 93:].mean(axis=0), 0.0, atol=1e-4)  # pitch normalised too
    # layout: [31 static | 31 Δ | 31 ΔΔ | 3 pitch], deltas of the normalised bands only
    cut = out["train"][4]
    normed = apply_cmvn(cut.load_features(), stats[speaker_of(cut)], norm_vars=True)
    x = inputs[cut.id]
    np.testing.assert_allclose(x[:, :93], add_deltas(normed[:, :31]), atol=1e-5)
    np.testing.assert_allclose(x[:, 93:], normed[:, 31:], atol=1e-6)
    # mean-only CMVN keeps each speaker's spread: the loud speaker's energy varies as it does stored
    mean_only = load_nn_inputs(out["train"], stats, NnFeatureConfig(pitch=True, norm_vars=False))
    np.testing.assert_allclose(mean_only[cut.id][:, :31], normed[:, :31] * np.sqrt(stats[speaker_of(cut)].var[:31]),
                               rtol=1e-4, atol=1e-4)


def test_global_cmvn_uses_the_training_statistics_on_dev(corpus):
    root, sets, out, _ = corpus
    conf = NnFeatureConfig(pitch=True, cmvn="global")
    assert nn_cmvn_path(root / "nn", "dev", conf) == root / "nn" / "cmvn_train.npz"
    assert nn_cmvn_path(root / "nn", "dev", {"cmvn": "speaker"}) == root / "nn" / "cmvn_dev.npz"
    pooled = load_nn_cmvn(root / "nn", "dev", conf)
    train = np.concatenate([c.load_features() for c in out["train"]]).astype(np.float64)
    assert pooled.count == len(train)
    np.testing.assert_allclose(pooled.mean, train.mean(axis=0), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(np.sqrt(pooled.var), train.std(axis=0), rtol=1e-5)
    dev = load_nn_inputs(out["dev"], pooled, conf)
    for cut in out["dev"]:
        expected = (cut.load_features() - train.mean(axis=0)) / train.std(axis=0)
        np.testing.assert_allclose(dev[cut.id][:, :31], expected[:, :31], atol=1e-3)
    # dev is louder than training (gain 6): with training statistics its energy stays above 0 on average,
    # with its own (speaker mode) it would be 0
    dev_static = np.concatenate([x[:, :31] for x in dev.values()])
    assert dev_static[:, 0].mean() > 0.5
    train_inputs = np.concatenate(list(load_nn_inputs(out["train"], pooled, conf).values()))
    np.testing.assert_allclose(train_inputs[:, :31].mean(axis=0), 0.0, atol=1e-4)
    np.testing.assert_allclose(train_inputs[:, :31].std(axis=0), 1.0, atol=1e-4)


def test_inputs_are_lazy_and_bad_inputs_are_clear(corpus, tmp_path):
    from lhotse import CutSet
    from lhotse.utils import fastcopy

    root, sets, out, _ = corpus
    conf = NnFeatureConfig(pitch=True)
    stats = load_nn_cmvn(root / "nn", "train", conf)
    gen = iter_nn_inputs(root / "nn" / "cuts_train.jsonl.gz", stats, conf)  # a path: read lazily
    assert inspect.isgenerator(gen)
    assert next(gen)[0] == out["train"][0].id
    # a missing archive: the cuts before it come out, then one error naming the file and the stage
    cuts = list(out["train"])
    broken = fastcopy(cuts[2], features=fastcopy(cuts[2].features, storage_path=str(tmp_path / "feats_train" / "x.scp")))
    gen = iter_nn_inputs(CutSet.from_cuts(cuts[:2] + [broken]), stats, conf)
    assert [next(gen)[0], next(gen)[0]] == [cuts[0].id, cuts[1].id]
    with pytest.raises(SenoneError) as err:
        next(gen)
    msg = str(err.value)
    assert str(tmp_path / "feats_train" / "x.scp") in msg and cuts[2].id in msg
    assert f"re-run the feats stage for it (delete {tmp_path / 'cuts_train.jsonl.gz'}" in msg
    # settings that do not match the stored features
    with pytest.raises(SenoneError, match=r"features.nn \(30 bands \+ energy\) has 31 per frame"):
        load_nn_inputs(out["train"], stats, NnFeatureConfig(pitch=False))
    with pytest.raises(SenoneError, match="'global': give the training split's pooled statistics"):
        load_nn_inputs(out["train"], stats, NnFeatureConfig(pitch=True, cmvn="global"))
    with pytest.raises(SenoneError, match="'speaker': give per-speaker statistics"):
        load_nn_inputs(out["train"], load_nn_cmvn(root / "nn", "train", {"pitch": True, "cmvn": "global"}), conf)
    with pytest.raises(SenoneError, match="no CMVN statistics for speaker 'spkC'"):
        load_nn_inputs(out["dev"], stats, conf)
    with pytest.raises(SenoneError, match="cmvn_train.npz: CMVN statistics not found; test needs the train split's"):
        load_nn_cmvn(tmp_path, "test", {"cmvn": "global"})
    with pytest.raises(SenoneError, match="missing; it is written by the 'feats' stage"):
        next(iter_nn_inputs(tmp_path / "cuts_dev.jsonl.gz", stats, conf))
    with pytest.raises(SenoneError, match="re-run the feats stage"):
        nn_input(np.zeros((5, 31), np.float32), stats["spkA"], conf)


def test_features_are_deterministic(corpus, tmp_path):
    from senone.feats import compute_features

    root, sets, out, _ = corpus
    again = compute_features(sets["dev"], tmp_path, split="dev", pitch=True,
                             config=NnFeatureConfig(pitch=True).extractor_config())
    assert list(again.ids) == list(out["dev"].ids)
    assert (tmp_path / "feats_dev" / "feats.ark").read_bytes() == (root / "nn" / "feats_dev" / "feats.ark").read_bytes()


# --------------------------------------------------------------------------- the step


def run_step(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "steps.compute_feats", *args], capture_output=True, text=True,
                          cwd=cwd, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=300)


def test_step_end_to_end(corpus, tmp_path):
    from lhotse import CutSet

    root, sets, out, gmm = corpus
    sets["train"].to_file(tmp_path / "cuts.jsonl.gz")
    conf = json.dumps({"num_mel_bins": 30, "use_energy": True, "delta_order": 2, "cmvn": "global", "norm_vars": True,
                       "pitch": False})
    proc = run_step("--kind", "nn", "--conf", conf, "--cuts", str(tmp_path / "cuts.jsonl.gz"), "--split", "train",
                    "--out", str(tmp_path / "nn"), "--log", str(tmp_path / "log" / "feats.log"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    for name in ("cuts_train.jsonl.gz", "cmvn_train.npz", "extract_train.json", "skipped_train.txt",
                 "feats_train/feats.ark", "feats_train/feats.scp"):
        assert (tmp_path / "nn" / name).is_file(), name
    cuts = CutSet.from_file(tmp_path / "nn" / "cuts_train.jsonl.gz")
    assert [c.num_frames for c in cuts] == [c.num_frames for c in gmm]
    stats = load_nn_cmvn(tmp_path / "nn", "dev", json.loads(conf))  # global: dev reads train's pooled file
    x = np.concatenate([m for _, m in iter_nn_inputs(cuts, stats, json.loads(conf))])
    assert x.shape[1] == 93
    np.testing.assert_allclose(x[:, :31].mean(axis=0), 0.0, atol=1e-3)
    record = json.loads((tmp_path / "nn" / "extract_train.json").read_text())
    assert record["audio_seconds"] == pytest.approx(sum(c.duration for c in sets["train"]))
    # a bad features.nn fails before any work, in one line
    proc = run_step("--kind", "nn", "--conf", json.dumps({"cmvn": "per-utterance"}), "--cuts",
                    str(tmp_path / "cuts.jsonl.gz"), "--split", "dev", "--out", str(tmp_path / "bad"), cwd=tmp_path)
    assert proc.returncode == 2
    assert "features.nn.cmvn = 'per-utterance'" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "bad").exists()
