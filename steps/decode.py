#!/usr/bin/env python3
"""Decode stage: 1-best lattice-faster decoding of one split through HCLG, then scoring.

Acoustic scores come from the GMM of ``--model-dir`` (its features: Δ+ΔΔ, LDA+MLLT, two-pass
fMLLR for SAT), or, with ``--nn``, from a trained network: its log-posteriors over whole
utterances minus ``nn.prior_scale`` × the log senone priors (the hybrid approach), decoded through
the graph and transition model of the GMM stage whose alignments it learned (``--model-dir``).

With ``--sweep`` (dev) the LM weight (acoustic scale = 1 / LM weight) is chosen among
``decode.lm_weights`` and up to ``decode.lm_weight_extend`` ×1.2 steps beyond either end, each
weight tried being one decode: ``decode.lm_weight_search: bracket`` (default) searches
them for a unimodal error curve from ``decode.lm_weight_start`` (≤ 5 decodes when the optimum is in
the list, never past a weight that did worse), ``grid`` decodes every listed weight and extends
while the best is at an edge (senone/decode/sweep.py). The weights tried and their error rates and
the best are written to ``best_lm_weight.json``. The search decodes at most
``decode.lm_weight_search_hours`` of the split (every k-th utterance in id order); the chosen weight
is then decoded on the whole split, which gives its reported error rates. With ``--lm-weight-from``
(test) the split is decoded once with dev's choice, so test never tunes anything.

No word insertion penalty is swept (Kaldi scores lattices with 0, 0.5 and 1): the decoder returns
the best path only, so each penalty would be another full decode per LM weight of a graph whose
word arcs carry the penalty; and on synth_zh insertions and deletions are 10 of mono's 379 dev
character errors and 1-3 of tri1-tri3's ~300: the errors a penalty trades are almost absent.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
from lhotse import CutSet

from senone import SenoneError
from senone.cli import base_parser, parse_conf, run
from senone.decode import DecodeStats, GmmScorer, NnScorer, decode_dataset, sweep_acoustic_scale
from senone.decode.decoder import search_options
from senone.decode.sweep import (DEFAULT_LM_WEIGHT_SEARCH, DEFAULT_LM_WEIGHT_SEARCH_HOURS, DEFAULT_LM_WEIGHT_START,
                                 search_subset)
from senone.decode.fmllr import first_pass_transforms
from senone.feats.adapted import TRANSFORMS_FILE, adapted_features, append_adapted
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

Items = Callable[[], Iterable[tuple[str, np.ndarray]]]


def gmm_scores(args, conf: dict, model: GmmHmm, feats_cuts: CutSet, out: Path) -> tuple[GmmScorer, Items]:
    """The GMM's scorer and the stage's features (with first-pass fMLLR for a SAT system)."""
    dconf = conf["decode"]
    graph = Path(args.graph)
    if not args.cmvn:
        raise SenoneError("--cmvn (the GMM features' CMVN statistics) is required to decode a GMM system")
    cmvn = load_cmvn_stats(require_file(args.cmvn, "feats"))
    # the features the stage was trained on: Δ+ΔΔ, or spliced LDA+MLLT (final.mat), + fMLLR for SAT
    feats = load_stage_features(args.model_dir, feats_cuts, cmvn, conf["features"]["gmm"])
    fmllr = json.loads((Path(args.model_dir) / PIPELINE_FILE).read_text()).get("fmllr") \
        if (Path(args.model_dir) / PIPELINE_FILE).is_file() else None
    if fmllr:
        utt2spk = {c.id: speaker_of(c) for c in feats_cuts}
        silence = {i for p, i in read_symbol_table(graph / "phones.txt").items() if p in ("SIL", "SPN")}
        transforms = first_pass_transforms(Path(args.model_dir).parent / fmllr["si_system"], model, feats, utt2spk,
                                           silence, search=search_options(dconf), num_jobs=args.threads,
                                           min_count=fmllr.get("min_count", 500.0),
                                           silence_weight=fmllr.get("silence_weight", 0.0))
        out.mkdir(parents=True, exist_ok=True)
        write_fmllr_transforms(out / "trans.ark", transforms)
        feats = adapt(feats, utt2spk, transforms)
    items = list(feats.items())
    return GmmScorer(model.am, model.trans_model), lambda: items


def nn_scores(args, conf: dict, model: GmmHmm, feats_cuts: CutSet, timing: dict) -> tuple[NnScorer, Items]:
    """The network's pseudo log-likelihoods (log-posterior − prior_scale × log-prior) per utterance.

    They are computed once and kept for the whole LM-weight sweep when they fit in
    ``nn.max_loglike_memory_gb``; otherwise the network runs again for every weight. The network's
    time is added to ``timing["nn_forward_seconds"]``.
    """
    import time

    import torch

    from senone.feats.nn import iter_nn_inputs, load_nn_cmvn
    from senone.nn.infer import DecodeChunking, log_posteriors
    from senone.nn.priors import log_priors, pseudo_loglikes
    from senone.nn.stage import PDF_COUNTS, load_trained, read_pdf_counts
    from senone.nn.train import pick_device

    nn_dir = Path(args.nn)
    torch.set_num_threads(max(1, int(conf.get("nn", {}).get("threads", 1))))  # see nn.threads in conf/nn.yaml
    # the GPU when there is one: the paper's best network at full width runs at 350-500 frames/s on one CPU
    # thread (BENCHMARKS.md), about 15 minutes per hour of speech before the search starts
    device = pick_device()
    net, info = load_trained(nn_dir / "final.pt", device)
    if info["num_pdfs"] != model.num_pdfs:
        raise SenoneError(f"{nn_dir}: the network has {info['num_pdfs']} outputs but {args.model_dir} has "
                          f"{model.num_pdfs} pdfs; decode with the GMM stage whose alignments it was trained on "
                          f"({info.get('alignments')})")
    # nn.decode.chunked: whole utterances, or the chunks a network trained with a state reset per chunk saw
    chunking = DecodeChunking.from_conf(conf.get("decode") or {})
    for problem in chunking.mismatches(info.get("training_chunks"), bool(getattr(net, "is_recurrent", False))):
        log.warning("%s: %s", nn_dir, problem)
    log.info("network run over %s", chunking.describe())
    log_prior = log_priors(read_pdf_counts(require_file(nn_dir / PDF_COUNTS, "nn_train")))
    prior_scale = float(conf.get("nn", {}).get("prior_scale", 1.0))
    fconf = info["features"]
    cmvn = load_nn_cmvn(Path(args.feats).parent, args.split, fconf)
    # longest first: batches of similar lengths waste little padding
    ordered = sorted(feats_cuts, key=lambda c: -c.num_frames)

    adapted = None
    if info.get("fmllr"):
        # trained with the SAT stage's adapted features appended: this split's speakers' transforms come from
        # that stage's own decode of the split (Kaldi nnet1's --transform-dir)
        if not (args.gmm_feats and args.cmvn and args.transform_dir):
            raise SenoneError(f"{nn_dir} was trained with {info['fmllr']['stage']}'s fMLLR features appended: give "
                              "--gmm-feats, --cmvn and --transform-dir (that stage's decode of this split)")
        if info["fmllr"]["stage"] != Path(args.model_dir).name:
            raise SenoneError(f"{nn_dir} was trained with {info['fmllr']['stage']}'s fMLLR features, but --model-dir is "
                              f"{args.model_dir}; decode it with that stage")
        adapted = adapted_features(Path(args.model_dir), CutSet.from_file(require_file(args.gmm_feats, "feats")),
                                   load_cmvn_stats(require_file(args.cmvn, "feats")),
                                   require_file(Path(args.transform_dir) / TRANSFORMS_FILE, "the SAT stage's decode"))
        log.info("network inputs: + %s's speaker-adapted features (%d per frame), transforms from %s",
                 info["fmllr"]["stage"], info["fmllr"]["dim"], Path(args.transform_dir) / TRANSFORMS_FILE)

    def compute() -> Iterable[tuple[str, np.ndarray]]:
        inputs = iter_nn_inputs(ordered, cmvn, fconf)
        if adapted is not None:
            inputs = ((utt, append_adapted(utt, x, adapted[utt])) for utt, x in inputs)
        t0 = time.perf_counter()
        for utt, logp in log_posteriors(net, inputs, int(info["label_delay"]), device=device, **chunking.kwargs()):
            ll = pseudo_loglikes(logp, log_prior, prior_scale)
            timing["nn_forward_seconds"] += time.perf_counter() - t0
            yield utt, ll
            t0 = time.perf_counter()

    frames = sum(c.num_frames for c in ordered)
    if frames * model.num_pdfs * 4 <= float(conf.get("nn", {}).get("max_loglike_memory_gb", 2.0)) * 2**30:
        items = list(compute())
        return NnScorer(model.trans_model), lambda: items
    return NnScorer(model.trans_model), compute


def main(args) -> None:
    conf = parse_conf(args.conf)
    dconf = conf["decode"]
    language = conf.get("language", "zh")
    out = Path(args.out)
    model = GmmHmm.load(args.model_dir)
    graph = Path(args.graph)
    feats_cuts = CutSet.from_file(require_file(args.feats, "feats"))
    timing = {"nn_forward_seconds": 0.0}
    if args.nn:
        scorer, items = nn_scores(args, conf, model, feats_cuts, timing)
    else:
        scorer, items = gmm_scores(args, conf, model, feats_cuts, out)
    audio_seconds = sum(c.duration for c in feats_cuts)
    transcripts = load_transcripts(args.cuts)
    refs = {t.utt: t.text for t in transcripts}
    ref_syllables = {t.utt: t.syllables for t in transcripts if t.syllables} if language == "zh" else None
    if ref_syllables is not None and len(ref_syllables) != len(refs):
        ref_syllables = None  # the corpus did not record what was spoken for every utterance: use pypinyin
    decode_seconds = 0.0

    durations = {c.id: c.duration for c in feats_cuts}
    decoded_audio = 0.0

    def decode(scale: float, only: set[str] | None = None) -> dict:
        """One decode of the split (or of the utterances in ``only``) at acoustic scale ``scale``."""
        nonlocal decode_seconds, decoded_audio
        stats = DecodeStats()
        todo = items() if only is None else ((u, x) for u, x in items() if u in only)
        res = decode_dataset(graph / "HCLG.fst", graph / "words.txt", model.trans_model, scorer, todo,
                             acoustic_scale=scale, num_jobs=args.threads, stats=stats, **search_options(dconf))
        decode_seconds += stats.seconds
        decoded_audio += sum(durations[u] for u in res)
        log.info("decoded %d utterances at acoustic scale %.4f in %.1f s wall (%d partial, %d failed)",
                 stats.num_utts, scale, stats.seconds, stats.num_partial, stats.num_failed)
        return res

    def hyp_text(words: list[str]) -> str:
        return " ".join(words)

    tokenizer = Tokenizer(unit="char" if language == "zh" else "word")
    cache: dict[float, dict] = {}

    searched = None
    if args.sweep:
        weights = [float(w) for w in dconf["lm_weights"]]
        # the search decodes at most decode.lm_weight_search_hours of the split; the chosen weight then all of it
        subset = search_subset(durations, dconf.get("lm_weight_search_hours", DEFAULT_LM_WEIGHT_SEARCH_HOURS))
        only = None if len(subset) == len(durations) else set(subset)
        searched = {"utterances": len(subset), "of": len(durations),
                    "hours": round(sum(durations[u] for u in subset) / 3600, 4)}
        if only is not None:
            log.info("LM-weight search on %d of %d utterances (%.2f of %.2f h: every %s-th in id order); the chosen "
                     "weight is decoded on all of them", len(subset), len(durations), searched["hours"],
                     audio_seconds / 3600, round(len(durations) / len(subset)))

        def decode_cached(scale: float) -> dict:
            cache[scale] = decode(scale, only)
            return {u: hyp_text(r.words) for u, r in cache[scale].items()}

        def score(hyps: dict, refs_: dict) -> float:
            res = compute_error_rate({u: tokenizer(t) for u, t in refs_.items()},
                                     {u: tokenizer(h) for u, h in hyps.items()}, log_mismatches=False)
            return res.total.rate

        start = float(dconf.get("lm_weight_start", DEFAULT_LM_WEIGHT_START))
        best_scale, rates = sweep_acoustic_scale(decode_cached, {u: refs[u] for u in subset if u in refs},
                                                 [1.0 / w for w in weights], score,
                                                 extend=int(dconf.get("lm_weight_extend", 0)), start=1.0 / start,
                                                 search=str(dconf.get("lm_weight_search", DEFAULT_LM_WEIGHT_SEARCH)))
        best = cache[best_scale] if only is None else decode(best_scale)
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
    rtf = decode_seconds / max(decoded_audio, 1e-9) * args.threads
    write_json(out / "decode.json", {"lm_weight": best_weight, "acoustic_scale": 1.0 / best_weight,
                                     "sweep_error_rate_by_lm_weight": sweep, "sweep_searched_on": searched,
                                     "audio_seconds": audio_seconds,
                                     "decode_wall_seconds": decode_seconds, "jobs": args.threads,
                                     "cpu_seconds_per_audio_second_upper_bound": rtf,
                                     **({"nn_forward_seconds": timing["nn_forward_seconds"],
                                         "nn_forward_real_time_factor": timing["nn_forward_seconds"] / audio_seconds}
                                        if args.nn else {}),
                                     "num_not_final": num_partial})
    if args.sweep:
        write_json(out / "best_lm_weight.json", {"lm_weight": best_weight, "chosen_on": str(args.cuts),
                                                 "searched_on": searched, "error_rate_by_lm_weight": sweep})
    metric = scores.get("metric", "cer").lower()
    log.info("%s: %s %.2f%% with LM weight %g", out, metric.upper(), scores[metric]["rate"], best_weight)


if __name__ == "__main__":
    p = base_parser(__doc__)
    p.add_argument("--model-dir", required=True)
    p.add_argument("--graph", required=True)
    p.add_argument("--cuts", required=True, help="manifest cuts (references)")
    p.add_argument("--feats", required=True)
    p.add_argument("--cmvn", help="CMVN statistics of the GMM features (GMM systems; networks with fMLLR inputs)")
    p.add_argument("--gmm-feats", help="a network trained with fMLLR inputs: the split's GMM feature cuts")
    p.add_argument("--transform-dir", help="a network trained with fMLLR inputs: the SAT stage's decode of the "
                   "split (its trans.ark)")
    p.add_argument("--nn", help="a trained network's directory (exp/<recipe>/nn/<model>): decode with it")
    p.add_argument("--split", default=None, help="the split being decoded (nn: finds its CMVN statistics)")
    p.add_argument("--out", required=True)
    p.add_argument("--sweep", action="store_true", help="choose the LM weight on this split (dev): "
                   "decode.lm_weight_search over decode.lm_weights")
    p.add_argument("--lm-weight-from", help="best_lm_weight.json written by the dev sweep (test)")
    run(main, p)
