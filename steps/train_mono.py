#!/usr/bin/env python3
"""Mono stage: monophone GMM-HMM (Kaldi's train_mono.sh schedule); model, tree and alignments."""

from __future__ import annotations

import logging
from dataclasses import asdict
from pathlib import Path

from typing import Mapping

from senone.cli import base_parser, parse_conf, run
from senone.feats.source import FeatureMemory, through, training_features
from senone.feats.transform import StageFeatures
from senone.gmm.mono import MonoConfig, train_mono
from senone.io import write_alignments
from senone.lang import load_lang
from senone.score.report import plot_training_curve
from senone.lang.transcripts import load_transcripts, to_word_ids, transcript_units

log = logging.getLogger("senone.steps.train_mono")


def delta_features(cuts_path: str, cmvn_path: str, conf: dict, stage: str) -> tuple[Mapping, FeatureMemory]:
    """Δ+ΔΔ training features (float32): in memory (2 h of audio is about 140 MB) unless they exceed
    ``gmm.max_feature_memory_gb``, then read and computed from storage on every pass."""
    feat_conf = conf["features"]["gmm"]
    norm_vars = bool(feat_conf.get("cmvn_norm_vars", False))
    static = training_features(cuts_path, cmvn_path, norm_vars)
    pipeline = StageFeatures(kind="deltas", cmvn_norm_vars=norm_vars, delta_order=int(feat_conf.get("delta_order", 2)))
    memory = FeatureMemory.for_stage(static, pipeline.output_dim(static.static_dim),
                                     conf["gmm"].get("max_feature_memory_gb"), stage)
    return through(static, lambda _utt, x: pipeline.apply(x), memory), memory


def main(args) -> None:
    conf = parse_conf(args.conf)
    lang = load_lang(args.lang)
    unit = lang.info.get("unit") or conf["lang"]["unit"]
    units = transcript_units(load_transcripts(args.train_cuts), unit)
    transcripts, num_oov = to_word_ids(units, lang.words, lang.oov_word, args.train_cuts)
    log.info("%d training transcripts, %d OOV tokens mapped to %s", len(transcripts), num_oov, lang.oov_word)
    feats, memory = delta_features(args.feats, args.cmvn, conf, "mono")
    missing = set(transcripts) - set(feats.keys())
    if missing:
        log.warning("%d transcripts have no features (skipped at the feature stage)", len(missing))
    dim = feats[next(iter(feats.keys()))].shape[1]
    mono = dict(conf["gmm"]["mono"])
    mono["realign_iters"] = tuple(mono.get("realign_iters", ()))
    mono.setdefault("num_jobs", args.threads)
    cfg = MonoConfig(**mono)
    result = train_mono(lang.topology(), lang.read_L(), lang.disambig_phones, transcripts, feats, dim, args.out, cfg,
                        phone_sets=lang.phone_sets, streaming=not memory.in_memory)
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
