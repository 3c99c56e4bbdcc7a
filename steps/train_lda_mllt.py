#!/usr/bin/env python3
"""LDA+MLLT triphone stage (tri2, Kaldi's train_lda_mllt.sh) from the previous stage's alignments."""

from __future__ import annotations

import logging
import time
from dataclasses import asdict
from pathlib import Path

from senone.cli import base_parser, parse_conf, run
from senone.feats.source import FeatureMemory, training_features
from senone.gmm.lda_mllt import LdaMlltConfig, train_lda_mllt
from senone.hmm.model import GmmHmm
from senone.io import read_alignments, require_file, write_alignments
from senone.lang import load_lang
from senone.score.report import plot_training_curve
from steps.stage_common import add_stage_args, stage_config, training_transcripts

log = logging.getLogger("senone.steps.train_lda_mllt")


def main(args) -> None:
    t0 = time.time()
    conf = parse_conf(args.conf)
    lang = load_lang(args.lang)
    transcripts = training_transcripts(lang, conf, args.train_cuts)
    fconf = conf.get("features", {}).get("gmm", {})
    norm_vars = bool(fconf.get("cmvn_norm_vars", False))
    cfg = stage_config(conf, args.stage, LdaMlltConfig, args.threads)
    static = training_features(args.feats, args.cmvn, norm_vars)
    # static features, stage features, and briefly the re-transformed ones after an MLLT update
    memory = FeatureMemory.for_stage(static, static.static_dim + 2 * cfg.lda_dim,
                                     conf["gmm"].get("max_feature_memory_gb"), args.stage)
    prev = GmmHmm.load(args.prev)
    prev_ali = read_alignments(require_file(Path(args.prev) / "ali.ark", "the previous GMM stage"))
    cfg.cmvn_norm_vars = norm_vars
    result = train_lda_mllt(lang, lang.read_L(), transcripts, memory.hold(static), prev, prev_ali, args.out, cfg,
                            name=args.stage, memory=memory)
    write_alignments(Path(args.out) / "ali.ark", result.alignments)
    plot_training_curve([asdict(h) for h in result.history], Path(args.out) / "training_curve.png",
                        title=f"{args.stage} (LDA+MLLT): {result.model.num_pdfs} leaves, "
                              f"{result.model.num_gauss} Gaussians")
    log.info("%s: %d leaves, %d Gaussians, %d-dim features, %d MLLT updates, %d utterances aligned (%.0f s)",
             args.stage, result.model.num_pdfs, result.model.num_gauss, result.model.dim, len(result.mllt_updates),
             len(result.alignments), time.time() - t0)


if __name__ == "__main__":
    run(main, add_stage_args(base_parser(__doc__), "tri2", "previous stage's directory (final.pkl, ali.ark)"))
