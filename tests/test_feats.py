"""Tests for senone.feats: deltas, splicing, pitch, MFCC+pitch extraction into Lhotse storage, CMVN."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import soundfile as sf

from senone import SenoneError
from senone.feats import (
    CmvnStats,
    add_deltas,
    apply_cmvn,
    compute_cmvn_stats,
    compute_deltas,
    compute_pitch,
    iter_gmm_features,
    load_cmvn_stats,
    load_gmm_features,
    num_frames,
    process_pitch,
    save_cmvn_stats,
    speaker_of,
    splice,
    track_pitch,
)
from senone.feats.deltas import delta_filters

SR = 16000


def harmonic(f0: np.ndarray, sr: int = SR, n_harm: int = 12, amp: float = 0.3) -> np.ndarray:
    """A harmonic signal following the per-sample F0 track ``f0``."""
    phase = 2 * np.pi * np.cumsum(f0) / sr
    return amp * sum(np.sin(k * phase) / k for k in range(1, n_harm + 1))


def glide_with_noise(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """2 s at 150→250 Hz, 0.5 s of noise, 1 s at 200 Hz; also frame-level true F0 and a voiced mask."""
    rng = np.random.default_rng(seed)
    t1 = np.arange(2 * SR) / SR
    part1 = harmonic(150 + 50 * t1)
    noise = 0.05 * rng.standard_normal(SR // 2)
    part3 = harmonic(np.full(SR, 200.0))
    x = np.concatenate([part1, noise, part3])
    x = (x + 0.003 * rng.standard_normal(len(x))).astype(np.float32)
    n = num_frames(len(x), SR)
    centre = (np.arange(n) + 0.5) * 0.01
    true_f0 = np.where(centre < 2.0, 150 + 50 * centre, 200.0)
    voiced = (centre < 2.0) | (centre >= 2.5)
    return x, true_f0, voiced


# --------------------------------------------------------------------------- deltas / splice


def test_delta_filters_are_kaldis():
    f = delta_filters(2, 2)
    np.testing.assert_allclose(f[1], np.array([-2, -1, 0, 1, 2]) / 10)
    np.testing.assert_allclose(f[2], np.array([4, 4, 1, -4, -10, -4, 1, 4, 4]) / 100)


def test_add_deltas_on_a_ramp():
    t = np.arange(30, dtype=np.float32)[:, None]
    feats = np.hstack([0.5 * t + 3.0, -2.0 * t])
    out = add_deltas(feats)
    assert out.shape == (30, 6) and out.dtype == np.float32
    np.testing.assert_array_equal(out[:, :2], feats)
    interior = slice(4, 26)  # the order-2 filter reaches 4 frames out
    np.testing.assert_allclose(out[interior, 2], 0.5, atol=1e-5)
    np.testing.assert_allclose(out[interior, 3], -2.0, atol=1e-5)
    np.testing.assert_allclose(out[interior, 4:], 0.0, atol=1e-5)
    # edge replication: at t=0 the first-order window sees frames [0, 0, 0, 1, 2]
    expected0 = (-2 * 0 - 1 * 0 + 0 + 1 * 0.5 + 2 * 1.0) / 10
    assert out[0, 2] == pytest.approx(expected0 + 0.0, abs=1e-6)


def test_deltas_of_constant_and_tiny_inputs():
    const = np.full((7, 3), 4.0)
    np.testing.assert_allclose(add_deltas(const)[:, 3:], 0.0, atol=1e-12)
    one = add_deltas(np.ones((1, 2)))
    assert one.shape == (1, 6)
    np.testing.assert_allclose(one[0], [1, 1, 0, 0, 0, 0], atol=1e-12)
    assert add_deltas(np.zeros((0, 5))).shape == (0, 15)
    np.testing.assert_allclose(compute_deltas(np.arange(10.0)[:, None])[3:7, 0], 1.0)


def test_splice_with_edge_replication():
    feats = np.array([[1.0, 10.0], [2.0, 20.0], [3.0, 30.0]])
    out = splice(feats, 1)
    np.testing.assert_array_equal(
        out,
        [
            [1, 10, 1, 10, 2, 20],
            [1, 10, 2, 20, 3, 30],
            [2, 20, 3, 30, 3, 30],
        ],
    )
    assert splice(feats, 2, 0).shape == (3, 6)
    np.testing.assert_array_equal(splice(feats, 0), feats)


# --------------------------------------------------------------------------- pitch


def test_pitch_tracks_a_known_f0():
    x, true_f0, voiced = glide_with_noise()
    f0, nccf = track_pitch(x, SR)
    assert len(f0) == len(true_f0)
    core = voiced.copy()
    core[:3] = core[-3:] = False  # edge frames see the zero padding
    core[195:205] = core[245:255] = False  # transitions into and out of the noise
    rel = np.abs(f0[core] / true_f0[core] - 1)
    assert np.median(rel) < 0.005
    assert rel.max() < 0.03
    noise = ~voiced
    assert nccf[core].mean() > 0.95
    assert nccf[noise].mean() < 0.5


def test_pitch_features_trend_voicing_and_interpolation():
    x, true_f0, voiced = glide_with_noise()
    feats = compute_pitch(x, SR)
    assert feats.shape == (len(true_f0), 3) and feats.dtype == np.float32
    assert np.all(np.isfinite(feats))
    pov, norm_lp, delta = feats.T
    # log-pitch follows the glide: rising during it, and equal to what the true F0 gives
    glide = slice(10, 190)
    assert np.polyfit(np.arange(180), norm_lp[glide], 1)[0] > 0.001
    f0, nccf = track_pitch(x, SR)
    from_truth = process_pitch(true_f0.astype(np.float32), nccf)
    np.testing.assert_allclose(norm_lp[glide], from_truth[glide, 1], atol=0.02)
    # delta log-pitch ≈ 10 * d(log f0)/dframe during the glide (Kaldi's delta_pitch_scale)
    expected_delta = 10 * np.gradient(np.log(true_f0))[glide]
    np.testing.assert_allclose(delta[glide], expected_delta, atol=0.01)
    # Kaldi's POV feature is low (negative) for voiced frames, near 0 for noise
    assert pov[voiced].mean() < pov[~voiced].mean() - 0.5
    # through the noise the log-pitch is interpolated: no jumps, stays between the neighbours
    raw_lp = norm_lp / 2.0  # pitch_scale; the moving mean is smooth, so jumps would show here
    assert np.abs(np.diff(raw_lp[150:300])).max() < 0.05


def test_pitch_frames_match_lhotse_mfcc():
    from lhotse.features.kaldi.extractors import Mfcc, MfccConfig

    rng = np.random.default_rng(1)
    for sr in (8000, 16000):
        mfcc = Mfcc(MfccConfig(sampling_rate=sr))
        for seconds in (0.025, 0.0331, 0.5, 1.2345):
            x = (0.1 * rng.standard_normal(int(seconds * sr))).astype(np.float32)
            expected = mfcc.extract(x, sr).shape[0]
            assert num_frames(len(x), sr) == expected
            assert compute_pitch(x, sr).shape == (expected, 3)


def test_pitch_on_noise_and_silence_is_finite():
    rng = np.random.default_rng(2)
    noise = (0.1 * rng.standard_normal(SR)).astype(np.float32)
    silence = np.zeros(SR, np.float32)
    for x in (noise, silence):
        feats = compute_pitch(x, SR)
        assert feats.shape == (100, 3)
        assert np.all(np.isfinite(feats))
    assert compute_pitch(np.zeros(10, np.float32), SR).shape == (0, 3)
    assert process_pitch(np.zeros(0), np.zeros(0)).shape == (0, 3)


def test_chunked_viterbi_equals_single_pass_on_voiced_frames():
    from senone.feats import pitch as P

    rng = np.random.default_rng(3)
    segments = []
    for _ in range(20):  # 20 syllables with glides separated by pauses: ~8 s
        dur = int(rng.uniform(0.15, 0.3) * SR)
        segments.append(harmonic(np.linspace(*rng.uniform(90, 280, 2), dur)) * np.hanning(dur))
        segments.append(np.zeros(int(rng.uniform(0.05, 0.2) * SR)))
    x = np.concatenate(segments)
    x = (x + 0.003 * rng.standard_normal(len(x))).astype(np.float32)
    opts = P.PitchOptions()
    n = num_frames(len(x), SR)
    down = P._downsample(x, SR, opts.lowpass_cutoff)
    int_lags, grid, left, frac, penalty = P._lag_tables(opts)
    inner, norm = P._frame_nccf(down, n, opts, int_lags)
    local = -(inner / np.sqrt(norm + 1.0))[:, left].astype(np.float32)
    chunked = P._viterbi(local, penalty, chunk=50, overlap=25)
    single = P._viterbi(local, penalty, chunk=10**9)
    voiced = (inner / np.sqrt(norm + 1e-20)).max(axis=1) > 0.9
    assert n > 200 and voiced.sum() > 100
    assert np.mean(chunked[voiced] == single[voiced]) > 0.98


def test_batched_pitch_equals_one_utterance_at_a_time():
    from senone.feats import pitch as P

    rng = np.random.default_rng(4)
    signals = []
    for seconds in (0.3, 1.2, 1.5, 2.6, 4.1, 0.0005, 7.3):  # one and several Viterbi chunks, no frame
        n = int(seconds * SR)
        f0 = np.linspace(*rng.uniform(90, 280, 2), n)
        x = harmonic(f0) * np.hanning(n) + 0.01 * rng.standard_normal(n)
        signals.append(x.astype(np.float32))
    batched = P.compute_pitch_batch(signals, SR)
    assert [len(b) for b in batched] == [num_frames(len(x), SR) for x in signals]
    for x, b in zip(signals, batched):
        np.testing.assert_array_equal(b, compute_pitch(x, SR))  # bit for bit, not just close
    # the Viterbi alone, with short chunks so that several utterances have several chunks
    opts = P.PitchOptions()
    int_lags, grid, left, frac, penalty = P._lag_tables(opts)
    costs = [-rng.random((n, len(grid))).astype(np.float32) for n in (7, 60, 149, 230, 0, 101)]
    joint = P._viterbi_batch(np.concatenate(costs), np.array([len(c) for c in costs]), penalty, chunk=50, overlap=20)
    alone = np.concatenate([P._viterbi(c, penalty, chunk=50, overlap=20) for c in costs if len(c)])
    np.testing.assert_array_equal(joint, alone)


# --------------------------------------------------------------------------- extraction + storage


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Six good 1 s utterances from two speakers plus four bad cuts; features computed once."""
    from lhotse import CutSet, Recording, RecordingSet, SupervisionSegment, SupervisionSet

    from senone.feats import compute_features

    root = tmp_path_factory.mktemp("feats")
    rng = np.random.default_rng(0)
    recs, sups = [], []

    def add(name, samples, sr, speaker):
        path = root / f"{name}.wav"
        sf.write(path, samples, sr)
        rec = Recording.from_file(path, recording_id=name)
        recs.append(rec)
        sups.append(SupervisionSegment(id=name, recording_id=name, start=0, duration=rec.duration, speaker=speaker))
        return path

    for i in range(6):
        f0 = np.linspace(100 + 20 * i, 180 + 10 * i, SR)
        x = harmonic(f0) * (0.4 + 0.1 * i) + 0.01 * rng.standard_normal(SR) + 0.02 * (i % 2)
        add(f"good{i}", x.astype(np.float32), SR, f"spk{i % 2}")
    add("rate8k", rng.standard_normal(8000).astype(np.float32) * 0.1, 8000, "spk0")
    add("empty", np.zeros(0, np.float32), SR, "spk0")
    corrupt = add("corrupt", (0.1 * rng.standard_normal(SR)).astype(np.float32), SR, "spk1")
    corrupt.write_bytes(corrupt.read_bytes()[:60])  # truncated after the header
    gone = add("gone", (0.1 * rng.standard_normal(SR)).astype(np.float32), SR, "spk1")
    gone.unlink()
    cuts = CutSet.from_manifests(RecordingSet.from_recordings(recs), SupervisionSet.from_segments(sups))
    out = compute_features(cuts, root / "out", split="train", pitch=True, num_jobs=1, sampling_rate=SR)
    return root, cuts, out


def test_compute_features_stores_and_skips(corpus):
    root, cuts, out = corpus
    assert [c.recording_id for c in out] == [f"good{i}" for i in range(6)]
    assert (root / "out" / "cuts_train.jsonl.gz").is_file()
    skipped = dict(line.split("\t", 1) for line in (root / "out" / "skipped_train.txt").read_text().splitlines())
    reasons = {cid.split("-")[0]: why for cid, why in skipped.items()}
    assert set(reasons) == {"rate8k", "empty", "corrupt", "gone"}
    assert "8000 Hz" in reasons["rate8k"]
    assert "not found" in reasons["gone"]
    assert "unreadable" in reasons["corrupt"]


def test_storage_is_keyed_by_cut_id_and_reproducible(corpus, tmp_path):
    from senone.feats import compute_features

    root, cuts, out = corpus
    scp = (root / "out" / "feats_train" / "feats.scp").read_text().split()
    assert scp[0::2] == list(out.ids)  # Kaldi utterance ids = cut ids, in input order
    again = compute_features(cuts, tmp_path / "again", split="train", pitch=True, num_jobs=1, sampling_rate=SR)
    assert list(again.ids) == list(out.ids)
    first = (root / "out" / "feats_train" / "feats.ark").read_bytes()
    assert (tmp_path / "again" / "feats_train" / "feats.ark").read_bytes() == first


def test_parallel_shares_give_the_same_features(corpus, tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    from lhotse import CutSet

    from senone.feats import MfccPitch
    from senone.feats.extract import _compute_and_store

    _, cuts, out = corpus
    good = CutSet.from_cuts([c for c in cuts if c.recording_id.startswith("good")] + [c for c in cuts if c.recording_id == "corrupt"])
    with ThreadPoolExecutor(2) as pool:  # the function takes any executor; threads avoid spawn's start-up
        done, skipped = _compute_and_store(good, MfccPitch(), tmp_path, 3, pool)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["feats-0", "feats-1", "feats-2"]
    assert list(done.ids) == list(out.ids)
    assert [cid.split("-")[0] for cid, _ in skipped] == ["corrupt"]
    for a, b in zip(done, out):
        np.testing.assert_array_equal(a.load_features(), b.load_features())


def test_store_load_round_trip_and_frame_count(corpus):
    from lhotse.features.kaldi.extractors import Mfcc, MfccConfig

    from senone.feats import MfccPitch

    _, _, out = corpus
    extractor = MfccPitch()
    lhotse_mfcc = Mfcc(MfccConfig())
    for cut in out:
        stored = cut.load_features()
        audio = cut.load_audio()
        fresh = extractor.extract(audio, SR)
        assert stored.shape == fresh.shape == (cut.num_frames, 16)
        assert stored.shape[0] == lhotse_mfcc.extract(audio[0], SR).shape[0]
        span = float(fresh.max() - fresh.min())
        np.testing.assert_allclose(stored, fresh, atol=span / 30000)  # 16-bit quantisation
        assert cut.features.type == "senone-mfcc-pitch"


def test_extractor_columns_and_pickle():
    import torch
    from lhotse.features.kaldi.extractors import Mfcc, MfccConfig
    from lhotse.features.kaldi.layers import Wav2Win

    from senone.feats import MfccPitch, MfccPitchConfig

    x, _, _ = glide_with_noise()
    both = MfccPitch()
    plain = MfccPitch(MfccPitchConfig(pitch=False))
    assert both.feature_dim(SR) == 16 and plain.feature_dim(SR) == 13
    f_both = both.extract(x, SR)
    f_plain = plain.extract(x, SR)
    np.testing.assert_array_equal(f_both[:, :13], f_plain)
    np.testing.assert_allclose(f_both[:, 13:], compute_pitch(x, SR))
    # C0 is Kaldi's raw log-energy (Lhotse's framing); C1.. are Lhotse's MFCCs
    _, log_e = Wav2Win(sampling_rate=SR, return_log_energy=True)(torch.from_numpy(x)[None])
    np.testing.assert_allclose(f_plain[:, 0], log_e[0].numpy(), atol=1e-4)
    np.testing.assert_allclose(f_plain[:, 1:], Mfcc(MfccConfig()).extract(x, SR)[:, 1:], atol=1e-4)
    many = both.extract_many([x[:SR], x, x[: SR // 3]], SR)
    for got, part in zip(many, (x[:SR], x, x[: SR // 3])):
        np.testing.assert_array_equal(got, both.extract(part, SR))
    clone = pickle.loads(pickle.dumps(both))
    np.testing.assert_array_equal(clone.extract(x, SR), f_both)
    with pytest.raises(SenoneError, match="shorter than one"):
        both.extract(np.zeros(100, np.float32), SR)
    with pytest.raises(SenoneError, match="NaN"):
        both.extract(np.full(1000, np.nan, np.float32), SR)


def test_compute_features_resumes_and_rejects_all_bad(corpus, monkeypatch):
    from lhotse import CutSet

    from senone.feats import compute_features
    from senone.feats import extract as extract_mod

    root, cuts, out = corpus
    # resumable: the cuts file exists, nothing is recomputed
    monkeypatch.setattr(extract_mod, "_compute_and_store", lambda *a, **k: pytest.fail("recomputed"))
    again = compute_features(cuts, root / "out", split="train", pitch=True, num_jobs=1, sampling_rate=SR)
    assert list(again.ids) == list(out.ids)
    monkeypatch.undo()
    bad = CutSet.from_cuts([c for c in cuts if c.recording_id in ("rate8k", "gone")])
    with pytest.raises(SenoneError, match="no cut of split 'bad'"):
        compute_features(bad, root / "out", split="bad", pitch=False, num_jobs=1, sampling_rate=SR)


# --------------------------------------------------------------------------- CMVN + GMM features


def test_cmvn_gives_zero_mean_per_speaker(corpus, tmp_path):
    _, _, out = corpus
    stats = compute_cmvn_stats(out)
    assert set(stats) == {"spk0", "spk1"}
    assert stats["spk0"].count == sum(c.num_frames for c in out if speaker_of(c) == "spk0")
    for norm_vars in (False, True):
        for spk in stats:
            normed = np.concatenate(
                [apply_cmvn(c.load_features(), stats[spk], norm_vars=norm_vars) for c in out if speaker_of(c) == spk]
            )
            np.testing.assert_allclose(normed.mean(axis=0), 0.0, atol=1e-3)
            if norm_vars:
                np.testing.assert_allclose(normed.var(axis=0), 1.0, atol=1e-3)

    path = tmp_path / "cmvn.npz"
    save_cmvn_stats(path, stats)
    loaded = load_cmvn_stats(path)
    assert set(loaded) == set(stats)
    for spk in stats:
        assert loaded[spk].count == stats[spk].count
        np.testing.assert_array_equal(loaded[spk].sum, stats[spk].sum)
        np.testing.assert_array_equal(loaded[spk].sumsq, stats[spk].sumsq)
    with pytest.raises(SenoneError, match="not found"):
        load_cmvn_stats(tmp_path / "missing.npz")


def test_gmm_features(corpus):
    _, _, out = corpus
    stats = compute_cmvn_stats(out)
    cut = out[0]
    feats = load_gmm_features(cut, stats)
    assert feats.shape == (cut.num_frames, 48) and feats.dtype == np.float32
    expected = add_deltas(apply_cmvn(cut.load_features(), stats[speaker_of(cut)]))
    np.testing.assert_allclose(feats, expected, rtol=1e-6, atol=1e-6)
    assert load_gmm_features(cut, stats, deltas=False).shape == (cut.num_frames, 16)
    ids = [cid for cid, _ in iter_gmm_features(out, stats)]
    assert ids == list(out.ids)
    with pytest.raises(SenoneError, match="no CMVN statistics for speaker"):
        load_gmm_features(cut, {"other": CmvnStats(1.0, np.zeros(16), np.zeros(16))})
