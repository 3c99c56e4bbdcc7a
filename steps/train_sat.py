#!/usr/bin/env python3
"""SAT stage (tri3, Kaldi's train_sat.sh): per-speaker fMLLR on the LDA+MLLT features of the previous stage."""

from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import asdict
from pathlib import Path

from senone import SenoneError
from senone.cli import base_parser, parse_conf, run
from senone.feats.source import FeatureMemory, through, training_features
from senone.feats.transform import MATRIX_FILE, PIPELINE_FILE, stage_features
from senone.gmm.sat import SatConfig, train_sat
from senone.hmm.model import GmmHmm
from senone.io import atomic_path, read_alignments, require_file, write_alignments, write_json
from senone.lang import load_lang
from senone.score.report import plot_training_curve
from steps.stage_common import add_stage_args, stage_config, training_transcripts

log = logging.getLogger("senone.steps.train_sat")


def main(args) -> None:
    t0 = time.time()
    conf = parse_conf(args.conf)
    lang = load_lang(args.lang)
    transcripts = training_transcripts(lang, conf, args.train_cuts)
    prev_dir, out = Path(args.prev), Path(args.out)
    pipeline = stage_features(prev_dir, conf["features"]["gmm"])
    if pipeline.kind != "lda":
        raise SenoneError(f"{prev_dir}: SAT runs on LDA+MLLT features; point --prev at the LDA+MLLT stage (tri2)")
    static = training_features(args.feats, args.cmvn, pipeline.cmvn_norm_vars)
    utt2spk = {utt: static.speaker(static.cut(utt)) for utt in static}
    # the LDA+MLLT features, the adapted ones, and briefly the newly adapted ones after an fMLLR update
    memory = FeatureMemory.for_stage(static, 3 * pipeline.output_dim(static.static_dim),
                                     conf["gmm"].get("max_feature_memory_gb"), args.stage)
    base = through(static, lambda _utt, x: pipeline.apply(x), memory)
    prev = GmmHmm.load(prev_dir)
    prev_ali = read_alignments(require_file(prev_dir / "ali.ark", "the previous GMM stage"))
    cfg = stage_config(conf, args.stage, SatConfig, args.threads)
    result, transforms = train_sat(lang, lang.read_L(), transcripts, base, utt2spk, prev, prev_ali, out, cfg, memory)
    # the stage's input features are the previous stage's: its matrix, plus per-speaker fMLLR on top
    with atomic_path(out / MATRIX_FILE) as tmp:
        shutil.copyfile(prev_dir / MATRIX_FILE, tmp)
    record = json.loads((prev_dir / PIPELINE_FILE).read_text(encoding="utf-8"))
    write_json(out / PIPELINE_FILE, record | {"fmllr": {"si_system": prev_dir.name, "silence_weight": cfg.silence_weight,
                                                        "min_count": cfg.fmllr_min_count}})
    write_alignments(out / "ali.ark", result.alignments)
    plot_training_curve([asdict(h) for h in result.history], out / "training_curve.png",
                        title=f"{args.stage} (SAT): {result.model.num_pdfs} leaves, {result.model.num_gauss} Gaussians")
    log.info("%s: %d leaves, %d Gaussians, %d speakers adapted, %d utterances aligned (%.0f s)", args.stage,
             result.model.num_pdfs, result.model.num_gauss, len(transforms), len(result.alignments), time.time() - t0)


if __name__ == "__main__":
    run(main, add_stage_args(base_parser(__doc__), "tri3",
                             "the LDA+MLLT stage's directory (final.pkl, ali.ark, final.mat)"))
