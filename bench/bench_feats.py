#!/usr/bin/env python
"""Speed of the feature stage (GMM: MFCC, pitch, both; nn: log-mel + energy, + pitch) in × real time on one core.

Synthesises speech-like 16 kHz audio (harmonic "syllables" with gliding F0, noise bursts, pauses,
a noise floor at about 20 dB SNR) so the benchmark needs no corpus, then times, in one process with
one torch thread:

* Lhotse's MFCC alone, this project's MFCC (with the log-energy column), pitch alone, both;
  Lhotse's Fbank alone (30 bands), the network features (30 log-mel bands + log-energy, ``FbankPitch``)
  with and without pitch; pitch and the "+ pitch" rows also with all utterances in one call (``compute_pitch_batch``,
  ``MfccPitch.extract_many``: one batched Viterbi search, as ``compute_features`` does);
* on one 60 s signal and on the same audio cut into 5 s utterances (per-cut overhead).

``--parallel`` also runs ``compute_features`` on 5 s cuts written as WAV files with 1 and 2 jobs
(wall time, including audio reading and writing Kaldi archives; spawned workers start in seconds),
for the features of ``--kind`` (gmm: MFCC + pitch, nn: the network features of ``features.nn``).

Usage: python bench/bench_feats.py [--seconds 60] [--repeat 5] [--parallel [--kind gmm|nn]]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

SR = 16000


def speech_like(seconds: float, seed: int = 0) -> np.ndarray:
    """Voiced syllables (F0 80–300 Hz glides), fricative-like noise and pauses, 20 dB noise floor."""
    rng = np.random.default_rng(seed)
    out = []
    total = int(seconds * SR)
    n = 0
    while n < total:
        kind = rng.choice(["voiced", "noise", "pause"], p=[0.6, 0.2, 0.2])
        dur = int(rng.uniform(0.08, 0.3) * SR)
        if kind == "voiced":
            f_start, f_end = rng.uniform(80, 300, size=2)
            f0 = np.linspace(f_start, f_end, dur)
            phase = 2 * np.pi * np.cumsum(f0) / SR
            harmonics = sum(np.sin(k * phase) / k for k in range(1, 20))
            seg = 0.3 * harmonics * np.hanning(dur)
        elif kind == "noise":
            seg = 0.05 * rng.standard_normal(dur)
        else:
            seg = np.zeros(dur)
        out.append(seg)
        n += dur
    x = np.concatenate(out)[:total]
    x += 0.1 * np.sqrt(np.mean(x * x)) * rng.standard_normal(total)
    return x.astype(np.float32)


def best_time(fn, repeat: int) -> float:
    fn()  # warm-up (lazy module construction, caches)
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--parallel", action="store_true", help="also time compute_features with 1 and 2 jobs")
    ap.add_argument("--kind", choices=("gmm", "nn"), default="gmm", help="features that --parallel computes")
    args = ap.parse_args()

    import torch
    from lhotse.features.kaldi.extractors import Fbank, FbankConfig, Mfcc, MfccConfig

    from senone.feats.extract import FbankPitch, FbankPitchConfig, MfccPitch, MfccPitchConfig
    from senone.feats.nn import NnFeatureConfig
    from senone.feats.pitch import compute_pitch, compute_pitch_batch

    torch.set_num_threads(1)
    audio = speech_like(args.seconds)
    utts = [audio[i : i + 5 * SR] for i in range(0, len(audio), 5 * SR)]
    utts = [u for u in utts if len(u) >= 400]
    lhotse_mfcc = Mfcc(MfccConfig())
    mfcc_only = MfccPitch(MfccPitchConfig(pitch=False))
    both = MfccPitch(MfccPitchConfig(pitch=True))
    lhotse_fbank = Fbank(FbankConfig(num_filters=30))
    nn_plain = FbankPitch(FbankPitchConfig(pitch=False))
    nn_pitch = FbankPitch(FbankPitchConfig(pitch=True))
    def one_by_one(fn):
        return lambda xs: [fn(x) for x in xs]

    # each job takes a list of signals: one by one, or all at once (batched Viterbi search)
    jobs = {
        "MFCC (Lhotse, no energy)": one_by_one(lambda x: lhotse_mfcc.extract(x, SR)),
        "MFCC (+log-energy)": one_by_one(lambda x: mfcc_only.extract(x, SR)),
        "pitch": one_by_one(lambda x: compute_pitch(x, SR)),
        "pitch, batched": lambda xs: compute_pitch_batch(xs, SR),
        "MFCC + pitch": one_by_one(lambda x: both.extract(x, SR)),
        "MFCC + pitch, batched": lambda xs: both.extract_many(xs, SR),
        "Fbank 30 (Lhotse, no energy)": one_by_one(lambda x: lhotse_fbank.extract(x, SR)),
        "nn: log-mel + energy": lambda xs: nn_plain.extract_many(xs, SR),
        "nn: log-mel + energy + pitch": lambda xs: nn_pitch.extract_many(xs, SR),
    }
    print(f"{args.seconds:.0f} s of speech-like 16 kHz audio, one process, torch threads = 1, best of {args.repeat}")
    print(f"{'':28s} {'one 60 s signal':>22s} {'5 s utterances':>22s}")
    for name, fn in jobs.items():
        t_long = best_time(lambda: fn([audio]), args.repeat)
        t_utts = best_time(lambda: fn(utts), args.repeat)
        print(
            f"{name:28s} {t_long * 1000:8.1f} ms {args.seconds / t_long:8.0f}×RT"
            f" {t_utts * 1000:8.1f} ms {args.seconds / t_utts:8.0f}×RT"
        )

    if args.parallel:
        import logging

        import soundfile as sf
        from lhotse import CutSet, Recording, RecordingSet

        from senone.feats.extract import compute_features

        logging.basicConfig(level=logging.WARNING)
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            recs = []
            for i in range(24):  # 24 × 5 s × (60 s / seconds)…: 10 minutes of audio at the default
                for j, u in enumerate(utts):
                    path = tmp / f"r{i:02d}_{j:02d}.wav"
                    sf.write(path, u, SR)
                    recs.append(Recording.from_file(path))
            cuts = CutSet.from_manifests(recordings=RecordingSet.from_recordings(recs))
            total = sum(c.duration for c in cuts)
            config = NnFeatureConfig().extractor_config() if args.kind == "nn" else MfccPitchConfig()
            for nj in (1, 2):
                t = time.perf_counter()
                compute_features(cuts, tmp / f"out{nj}", split="bench", pitch=config.pitch, num_jobs=nj, config=config)
                wall = time.perf_counter() - t
                print(f"compute_features ({args.kind}), {len(cuts)} cuts, {total:.0f} s audio, {nj} job(s): "
                      f"{wall:.1f} s wall, {total / wall:.0f}×RT")


if __name__ == "__main__":
    main()
