#!/usr/bin/env python3
"""Feats stage: MFCC (+ pitch) for one split with Lhotse, stored as Kaldi archives; speaker CMVN stats."""

from __future__ import annotations

import logging
from pathlib import Path

from lhotse import CutSet

from senone.cli import base_parser, parse_conf, run
from senone.feats import compute_cmvn_stats, compute_features, save_cmvn_stats
from senone.feats.extract import MfccPitchConfig
from senone.io import require_file

log = logging.getLogger("senone.steps.compute_feats")


def main(args) -> None:
    conf = parse_conf(args.conf)
    cuts = CutSet.from_file(require_file(args.cuts, "prepare"))
    out = Path(args.out)
    cfg = MfccPitchConfig(num_ceps=conf.get("num_ceps", 13), pitch=conf.get("pitch", True))
    with_feats = compute_features(cuts, out, split=args.split, pitch=cfg.pitch, num_jobs=args.threads, config=cfg,
                                  sampling_rate=args.sampling_rate)
    stats = compute_cmvn_stats(with_feats)
    save_cmvn_stats(out / f"cmvn_{args.split}.npz", stats)
    log.info("%s: features for %d cuts, CMVN stats for %d speakers", args.split, len(with_feats), len(stats))


if __name__ == "__main__":
    p = base_parser(__doc__)
    p.add_argument("--cuts", required=True)
    p.add_argument("--split", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--sampling-rate", type=int, default=16000)
    run(main, p)
