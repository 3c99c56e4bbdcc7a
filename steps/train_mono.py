#!/usr/bin/env python3
"""Mono stage: monophone GMM-HMM (Kaldi's train_mono.sh schedule); model, tree and alignments."""

from __future__ import annotations

import logging
from dataclasses import asdict
from pathlib import Path

from lhotse import CutSet

from senone import SenoneError
from senone.cli import base_parser, parse_conf, run
from senone.feats import iter_gmm_features, load_cmvn_stats
from senone.gmm.mono import MonoConfig, train_mono
from senone.io import require_file, write_alignments
from senone.lang import load_lang
from senone.score.report import plot_training_curve
from senone.lang.transcripts import load_transcripts, to_word_ids, transcript_units

log = logging.getLogger("senone.steps.train_mono")


def load_feature_cache(cuts_path: str, cmvn_path: str, feat_conf: dict) -> dict:
    """All training features in memory (float32, Δ+ΔΔ applied): 2 h of audio is about 140 MB."""
    cuts = CutSet.from_file(require_file(cuts_path, "feats"))
    cmvn = load_cmvn_stats(require_file(cmvn_path, "feats"))
    return dict(iter_gmm_features(cuts, cmvn, norm_vars=feat_conf.get("cmvn_norm_vars", False),
                                  delta_order=feat_conf.get("delta_order", 2)))


def main(args) -> None:
    conf = parse_conf(args.conf)
    lang = load_lang(args.lang)
    unit = lang.info.get("unit") or conf["lang"]["unit"]
    units = transcript_units(load_transcripts(args.train_cuts), unit)
    transcripts, num_oov = to_word_ids(units, lang.words, lang.oov_word, args.train_cuts)
    log.info("%d training transcripts, %d OOV tokens mapped to %s", len(transcripts), num_oov, lang.oov_word)
    feats = load_feature_cache(args.feats, args.cmvn, conf["features"]["gmm"])
    if not feats:
        raise SenoneError(f"{args.feats}: no training features")
    missing = set(transcripts) - set(feats)
    if missing:
        log.warning("%d transcripts have no features (skipped at the feature stage)", len(missing))
    dim = next(iter(feats.values())).shape[1]
    mono = dict(conf["gmm"]["mono"])
    mono["realign_iters"] = tuple(mono.get("realign_iters", ()))
    mono.setdefault("num_jobs", args.threads)
    cfg = MonoConfig(**mono)
    result = train_mono(lang.topology(), lang.read_L(), lang.disambig_phones, transcripts, feats, dim, args.out, cfg,
                        phone_sets=lang.phone_sets)
    write_alignments(Path(args.out) / "ali.ark", result.alignments)
    plot_training_curve([asdict(h) for h in result.history], Path(args.out) / "training_curve.png",
                        title=f"monophone: {result.model.num_pdfs} pdfs, {result.model.num_gauss} Gaussians")
    log.info("mono: %d pdfs, %d Gaussians, %d utterances aligned", result.model.num_pdfs, result.model.num_gauss,
             len(result.alignments))


if __name__ == "__main__":
    p = base_parser(__doc__)
    p.add_argument("--lang", required=True)
    p.add_argument("--train-cuts", required=True, help="manifest cuts of the training split (transcripts)")
    p.add_argument("--feats", required=True, help="feature cuts of the training split")
    p.add_argument("--cmvn", required=True)
    p.add_argument("--out", required=True)
    run(main, p)
