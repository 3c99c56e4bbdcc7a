#!/usr/bin/env python3
"""Triphone stage (tri1: Δ+ΔΔ features, Kaldi's train_deltas.sh) from the previous stage's alignments."""

from __future__ import annotations

import logging
from dataclasses import asdict
from pathlib import Path

from senone.cli import base_parser, parse_conf, run
from senone.gmm.triphone import TriConfig, train_triphone
from senone.hmm.model import GmmHmm
from senone.io import read_alignments, write_alignments
from senone.lang import load_lang
from senone.score.report import plot_training_curve
from steps.stage_common import add_stage_args, stage_config, training_transcripts
from steps.train_mono import delta_features

log = logging.getLogger("senone.steps.train_tri")


def main(args) -> None:
    conf = parse_conf(args.conf)
    lang = load_lang(args.lang)
    transcripts = training_transcripts(lang, conf, args.train_cuts)
    feats, memory = delta_features(args.feats, args.cmvn, conf, args.stage)
    prev = GmmHmm.load(args.prev)
    prev_ali = read_alignments(Path(args.prev) / "ali.ark")
    cfg = stage_config(conf, args.stage, TriConfig, args.threads)
    result = train_triphone(lang, lang.read_L(), transcripts, feats, prev, prev_ali, args.out, cfg, name=args.stage,
                            streaming=not memory.in_memory)
    write_alignments(Path(args.out) / "ali.ark", result.alignments)
    plot_training_curve([asdict(h) for h in result.history], Path(args.out) / "training_curve.png",
                        title=f"{args.stage}: {result.model.num_pdfs} leaves, {result.model.num_gauss} Gaussians")
    log.info("%s: %d leaves, %d Gaussians, %d utterances aligned", args.stage, result.model.num_pdfs,
             result.model.num_gauss, len(result.alignments))


if __name__ == "__main__":
    run(main, add_stage_args(base_parser(__doc__), "tri1", "previous stage's directory (final.pkl, ali.ark)"))
