#!/usr/bin/env python3
"""Feats stage: features of one split with Lhotse, stored as Kaldi archives; per-speaker CMVN statistics.

``--kind gmm``: 13 MFCC (+ 3 pitch), the GMM stages' features (``features.gmm``).
``--kind nn``: 30 log-mel bands + log-energy (+ 3 pitch), the networks' features (``features.nn``),
frame for frame the same frames as the GMM features.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from lhotse import CutSet

from senone.cli import base_parser, parse_conf, run
from senone.feats import compute_cmvn_stats, compute_features, save_cmvn_stats
from senone.feats.extract import FbankPitchConfig, MfccPitchConfig
from senone.feats.nn import NnFeatureConfig
from senone.io import require_file, write_json

log = logging.getLogger("senone.steps.compute_feats")

KINDS = ("gmm", "nn")


def extractor_config(kind: str, conf: dict) -> MfccPitchConfig | FbankPitchConfig:
    """The extractor settings of ``features.<kind>`` (checked: a bad ``features.nn`` fails here, before any work)."""
    if kind == "gmm":
        # mel options a recipe may set (e.g. for 8 kHz telephone/FSDD audio); the rest keep Kaldi's defaults
        mel = {k: conf[k] for k in ("num_filters", "low_freq", "high_freq") if k in conf}
        return MfccPitchConfig(num_ceps=conf.get("num_ceps", 13), pitch=conf.get("pitch", True), **mel)
    return NnFeatureConfig.from_conf(conf).extractor_config()


def main(args) -> None:
    conf = dict(parse_conf(args.conf))
    # the recipe's rate (features.<kind>.sampling_rate, e.g. 8000 for telephone corpora) wins over the option;
    # cuts at another rate are skipped and listed
    sampling_rate = int(conf.pop("sampling_rate", args.sampling_rate))
    cfg = extractor_config(args.kind, conf)
    cuts = CutSet.from_file(require_file(args.cuts, "prepare"))
    out = Path(args.out)
    done_before = (out / f"cuts_{args.split}.jsonl.gz").is_file()
    wall, cpu = time.perf_counter(), time.process_time()
    with_feats = compute_features(cuts, out, split=args.split, pitch=cfg.pitch, num_jobs=args.threads, config=cfg,
                                  sampling_rate=sampling_rate)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    if not done_before:
        audio = sum(c.duration for c in with_feats)
        # in one process, CPU time is what one core spent: audio decoding, features, pitch and storage
        write_json(out / f"extract_{args.split}.json",
                   {"audio_seconds": audio, "wall_seconds": wall, "cpu_seconds": cpu, "jobs": args.threads,
                    "x_real_time_per_core": audio / max(cpu, 1e-9) if args.threads == 1 else None})
        log.info("%s: %.0f s of audio in %.1f s (%.0f× real time, %d job(s))", args.split, audio, wall,
                 audio / max(wall, 1e-9), args.threads)
    # per speaker for every split; global CMVN (features.nn.cmvn) pools the training split's file when loading
    stats = compute_cmvn_stats(with_feats)
    save_cmvn_stats(out / f"cmvn_{args.split}.npz", stats)
    log.info("%s: %s features for %d cuts, CMVN stats for %d speakers", args.split, args.kind, len(with_feats),
             len(stats))


if __name__ == "__main__":
    p = base_parser(__doc__)
    p.add_argument("--kind", choices=KINDS, default="gmm", help="gmm: MFCC (+ pitch); nn: log-mel + energy (+ pitch)")
    p.add_argument("--cuts", required=True)
    p.add_argument("--split", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--sampling-rate", type=int, default=16000, help="used when the conf has no sampling_rate")
    run(main, p)
