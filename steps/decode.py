#!/usr/bin/env python3
"""Decode stage: 1-best lattice-faster decoding of one split through HCLG, then scoring.

With ``--sweep`` (dev) every LM weight of ``decode.lm_weights`` is tried (acoustic scale = 1 / LM
weight), and up to ``decode.lm_weight_extend`` more beyond the grid while the best is at its edge;
the best is written to ``best_lm_weight.json``. With ``--lm-weight-from`` (test) the split is
decoded once with dev's choice, so test never tunes anything.

No word insertion penalty is swept (Kaldi scores lattices with 0, 0.5 and 1): the decoder returns
the best path only, so each penalty would be another full decode per LM weight of a graph whose
word arcs carry the penalty; and on synth_zh insertions and deletions are 10 of mono's 379 dev
character errors and 1-3 of tri1-tri3's ~300: the errors a penalty trades are almost absent.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from lhotse import CutSet

from senone.cli import base_parser, parse_conf, run
from senone.decode import DecodeStats, GmmScorer, decode_dataset, sweep_acoustic_scale
from senone.decode.fmllr import first_pass_transforms
from senone.feats import load_cmvn_stats, speaker_of
from senone.feats.fmllr import write_fmllr_transforms
from senone.feats.transform import PIPELINE_FILE, load_stage_features
from senone.gmm.sat import adapt
from senone.hmm.model import GmmHmm
from senone.decode.phones import hyp_syllables_batch, ref_syllable_keys
from senone.io import read_symbol_table, require_file, write_json
from senone.lang.transcripts import load_transcripts
from senone.score import Tokenizer, compute_error_rate, score_and_write, text_to_syllables
from senone.score.report import plot_acwt_sweep

log = logging.getLogger("senone.steps.decode")


def main(args) -> None:
    conf = parse_conf(args.conf)
    dconf = conf["decode"]
    fconf = conf["features"]["gmm"]
    language = conf.get("language", "zh")
    out = Path(args.out)
    model = GmmHmm.load(args.model_dir)
    graph = Path(args.graph)
    feats_cuts = CutSet.from_file(require_file(args.feats, "feats"))
    cmvn = load_cmvn_stats(require_file(args.cmvn, "feats"))
    # the features the stage was trained on: Δ+ΔΔ, or spliced LDA+MLLT (final.mat), + fMLLR for SAT
    feats = load_stage_features(args.model_dir, feats_cuts, cmvn, fconf)
    fmllr = json.loads((Path(args.model_dir) / PIPELINE_FILE).read_text()).get("fmllr") \
        if (Path(args.model_dir) / PIPELINE_FILE).is_file() else None
    if fmllr:
        utt2spk = {c.id: speaker_of(c) for c in feats_cuts}
        silence = {i for p, i in read_symbol_table(graph / "phones.txt").items() if p in ("SIL", "SPN")}
        transforms = first_pass_transforms(Path(args.model_dir).parent / fmllr["si_system"], model, feats, utt2spk,
                                           silence, beam=dconf["beam"], lattice_beam=dconf["lattice_beam"],
                                           max_active=dconf["max_active"], num_jobs=args.threads,
                                           min_count=fmllr.get("min_count", 500.0),
                                           silence_weight=fmllr.get("silence_weight", 0.0))
        out.mkdir(parents=True, exist_ok=True)
        write_fmllr_transforms(out / "trans.ark", transforms)
        feats = adapt(feats, utt2spk, transforms)
    items = list(feats.items())
    audio_seconds = sum(c.duration for c in feats_cuts)
    transcripts = load_transcripts(args.cuts)
    refs = {t.utt: t.text for t in transcripts}
    ref_syllables = {t.utt: t.syllables for t in transcripts if t.syllables} if language == "zh" else None
    if ref_syllables is not None and len(ref_syllables) != len(refs):
        ref_syllables = None  # the corpus did not record what was spoken for every utterance: use pypinyin
    scorer = GmmScorer(model.am, model.trans_model)
    decode_seconds = 0.0

    def decode(scale: float) -> dict:
        nonlocal decode_seconds
        stats = DecodeStats()
        res = decode_dataset(graph / "HCLG.fst", graph / "words.txt", model.trans_model, scorer, items,
                             acoustic_scale=scale, beam=dconf["beam"], lattice_beam=dconf["lattice_beam"],
                             max_active=dconf["max_active"], num_jobs=args.threads, stats=stats)
        decode_seconds += stats.seconds
        log.info("decoded %d utterances at acoustic scale %.4f in %.1f s wall (%d partial, %d failed)",
                 stats.num_utts, scale, stats.seconds, stats.num_partial, stats.num_failed)
        return res

    def hyp_text(words: list[str]) -> str:
        return " ".join(words)

    tokenizer = Tokenizer(unit="char" if language == "zh" else "word")
    cache: dict[float, dict] = {}

    if args.sweep:
        weights = [float(w) for w in dconf["lm_weights"]]

        def decode_cached(scale: float) -> dict:
            cache[scale] = decode(scale)
            return {u: hyp_text(r.words) for u, r in cache[scale].items()}

        def score(hyps: dict, refs_: dict) -> float:
            res = compute_error_rate({u: tokenizer(t) for u, t in refs_.items()},
                                     {u: tokenizer(h) for u, h in hyps.items()}, log_mismatches=False)
            return res.total.rate

        best_scale, rates = sweep_acoustic_scale(decode_cached, refs, [1.0 / w for w in weights], score,
                                                 extend=int(dconf.get("lm_weight_extend", 0)))
        best = cache[best_scale]
        sweep = {f"{1.0 / s:g}": r for s, r in rates.items()}
        best_weight = round(1.0 / best_scale, 6)
        out.mkdir(parents=True, exist_ok=True)
        plot_acwt_sweep({1.0 / s: r for s, r in rates.items()}, best_weight, out / "lm_weight_sweep.png",
                        xlabel="LM weight (1 / acoustic scale)")
    else:
        chosen = json.loads(require_file(args.lm_weight_from, "decode_dev").read_text())
        best_weight = float(chosen["lm_weight"])
        best = decode(1.0 / best_weight)
        sweep = None
    hyps = {u: hyp_text(r.words) for u, r in best.items()}
    syllables = {}
    if language == "zh":
        # both sides as lexicon phone keys: the reference as spoken (or pypinyin's reading of the text),
        # the hypothesis as the pronunciations on the decoder's best path
        id2phone = {i: p for p, i in read_symbol_table(graph / "phones.txt").items()}
        hyp_keys, _ = hyp_syllables_batch(model.trans_model, {u: r.alignment for u, r in best.items()}, id2phone)
        ref_src = ref_syllables if ref_syllables is not None else {u: text_to_syllables(t) for u, t in refs.items()}
        ref_keys, _ = ref_syllable_keys(ref_src)
        syllables = {"ref_syllables": ref_keys, "hyp_syllables": hyp_keys}
    scores = score_and_write(refs, hyps, out, language=language, **syllables)
    num_partial = sum(1 for r in best.values() if r.status != "ok")
    rtf = decode_seconds / max(audio_seconds, 1e-9) / max(len(cache) or 1, 1) * args.threads
    write_json(out / "decode.json", {"lm_weight": best_weight, "acoustic_scale": 1.0 / best_weight,
                                     "sweep_error_rate_by_lm_weight": sweep, "audio_seconds": audio_seconds,
                                     "decode_wall_seconds": decode_seconds, "jobs": args.threads,
                                     "cpu_seconds_per_audio_second_upper_bound": rtf,
                                     "num_not_final": num_partial})
    if args.sweep:
        write_json(out / "best_lm_weight.json", {"lm_weight": best_weight, "chosen_on": str(args.cuts),
                                                 "error_rate_by_lm_weight": sweep})
    metric = scores.get("metric", "cer").lower()
    log.info("%s: %s %.2f%% with LM weight %g", out, metric.upper(), scores[metric]["rate"], best_weight)


if __name__ == "__main__":
    p = base_parser(__doc__)
    p.add_argument("--model-dir", required=True)
    p.add_argument("--graph", required=True)
    p.add_argument("--cuts", required=True, help="manifest cuts (references)")
    p.add_argument("--feats", required=True)
    p.add_argument("--cmvn", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--sweep", action="store_true", help="try every decode.lm_weights value (dev)")
    p.add_argument("--lm-weight-from", help="best_lm_weight.json written by the dev sweep (test)")
    run(main, p)
