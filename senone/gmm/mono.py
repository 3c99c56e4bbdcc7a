"""Monophone GMM-HMM training in the manner of Kaldi's ``steps/train_mono.sh``.

Flat start: every pdf gets one Gaussian with the global mean and variance (``gmm-init-mono``),
the first statistics come from equal alignments (``align-equal-compiled``), then ``num_iters``
passes of Viterbi training, realigning on ``realign_iters`` and mixing up linearly to
``tot_gauss`` Gaussians over the first ``max_iter_inc`` passes. Each pass is checkpointed, so a
killed run resumes at the pass it was in; the checkpoint is keyed by the settings and by the content
of every input (:func:`mono_inputs`), so a run on other features or transcripts starts afresh.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Mapping

import kaldi_hmm_gmm as khg
import kaldifst
import numpy as np

from senone import SenoneError
from senone.feats.source import num_frames
from senone.gmm.align import compile_training_graphs, equal_align
from senone.gmm.passes import (FeatureSource, InputFingerprint, PassConfig, PassRecord, accumulate, final_alignment,
                               gmm_est, load_checkpoint, run_passes, save_checkpoint)
from senone.hmm.model import GmmHmm
from senone.io import write_json

log = logging.getLogger(__name__)

#: Kaldi's train_mono.sh realignment schedule.
KALDI_MONO_REALIGN_ITERS = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 12, 14, 16, 18, 20, 23, 26, 29, 32, 35, 38)


@dataclass
class MonoConfig(PassConfig):
    """train_mono.sh: 40 passes, dense realignment, 1000 Gaussians, a narrow first beam."""

    num_iters: int = 40
    max_iter_inc: int = 30
    tot_gauss: int = 1000
    realign_iters: tuple[int, ...] = KALDI_MONO_REALIGN_ITERS
    first_beam: float = 6.0
    first_min_gaussian_occupancy: float = 3.0
    init_subset: int = 10


@dataclass
class MonoResult:
    model: GmmHmm
    alignments: dict[str, np.ndarray]
    history: list[PassRecord] = field(default_factory=list)


def init_mono_model(topo: khg.HmmTopology, feats: FeatureSource, dim: int, subset: int,
                    phone_sets: list[list[int]] | None = None) -> GmmHmm:
    """``gmm-init-mono``: a monophone tree and one global-statistics Gaussian per pdf.

    ``phone_sets`` (Kaldi's ``--shared-phones=phones/sets.int``): phones of one set share their pdfs,
    e.g. the five tones of a Mandarin final, as Kaldi's Mandarin recipes do; the triphone tree
    later splits them again with tone questions.
    """
    phones = list(topo.phones)
    if phone_sets and any(len(s) > 1 for s in phone_sets):
        ctx_dep = khg.monophone_context_dependency_shared([sorted(s) for s in phone_sets],
                                                          topo.get_phone_to_num_pdf_classes())
    else:
        ctx_dep = khg.monophone_context_dependency(phones, topo.get_phone_to_num_pdf_classes())
    trans_model = khg.TransitionModel(ctx_dep, topo)
    count, s1, s2 = 0, np.zeros(dim), np.zeros(dim)
    for i, (_utt, x) in enumerate(feats.items()):
        if i >= subset:
            break
        x = np.asarray(x, dtype=np.float64)
        count += x.shape[0]
        s1 += x.sum(axis=0)
        s2 += (x * x).sum(axis=0)
    if count == 0:
        raise SenoneError("no training features to initialise the monophone model; check the feature stage output")
    mean = s1 / count
    var = np.maximum(s2 / count - mean * mean, 1e-3)
    gmm = khg.DiagGmm(1, dim)
    gmm.set_weights(np.ones(1, dtype=np.float32))
    gmm.set_invvars((1.0 / var).astype(np.float32)[None, :])
    gmm.set_means(mean.astype(np.float32)[None, :])
    gmm.compute_gconsts()
    am = khg.AmDiagGmm()
    am.init(gmm, trans_model.num_pdfs)
    return GmmHmm(ctx_dep=ctx_dep, trans_model=trans_model, am=am)


def warn_unseen_pdfs(model: GmmHmm, occupancies: np.ndarray) -> list[int]:
    """Log the pdfs no training frame was aligned to, naming their phones; returns them.

    A phone that never occurs in the training transcripts (or whose every utterance was skipped)
    keeps the flat-start Gaussian: decoding can still hypothesise it, badly. Kaldi's gmm-est says
    only that Gaussians had too little data; naming the phones tells the user what to fix
    (the lexicon, the phone set or the data).
    """
    unseen = np.flatnonzero(np.asarray(occupancies) <= 0.0).tolist()
    if unseen:
        log.warning("%d of %d pdfs have no training frames; phones %s never occur in the training alignments and "
                    "keep the flat-start Gaussian (check the lexicon and transcripts if they should)", len(unseen),
                    model.num_pdfs, model.phones_of_pdfs(unseen))
    return unseen


def _feature_frames(feats: FeatureSource) -> dict[str, int]:
    return {utt: num_frames(feats, utt) for utt in feats.keys()}


def mono_inputs(topo: khg.HmmTopology, lexicon_fst: kaldifst.StdVectorFst, disambig_phones: list[int],
                transcripts: Mapping[str, list[int]], feats: FeatureSource, dim: int,
                phone_sets: list[list[int]] | None, num_jobs: int = 1) -> str:
    """The fingerprint of everything a monophone run trains on besides its settings (the resume key's
    second half): topology, lexicon FST, disambiguation phones, phone sets, transcripts, features."""
    fp = InputFingerprint().add_object("topology", topo).add_fst("L", lexicon_fst)
    fp.add_object("disambig", [int(p) for p in disambig_phones]).add_object("dim", int(dim))
    fp.add_object("phone_sets", [sorted(int(p) for p in s) for s in phone_sets or []])
    fp.add_arrays("transcripts", transcripts)
    return fp.add_features("features", feats, num_jobs).hexdigest()


def train_mono(topo: khg.HmmTopology, lexicon_fst: kaldifst.StdVectorFst, disambig_phones: list[int],
               transcripts: Mapping[str, list[int]], feats: FeatureSource, dim: int, out_dir: str | Path,
               config: MonoConfig = MonoConfig(), phone_sets: list[list[int]] | None = None,
               streaming: bool = False) -> MonoResult:
    """Train a monophone system; writes ``final.{mdl,pkl}``, ``tree``, ``history.json`` into ``out_dir``.

    ``transcripts`` maps utterance ids to word-id sequences (OOV words already mapped to the OOV
    id). Resumes from ``out_dir/checkpoint.pkl`` when a previous run with the same settings and inputs
    was interrupted (the workflow deletes it when the stage has finished, so a finished stage never
    satisfies a later run; a library caller may keep it to continue with more passes). ``streaming``:
    ``feats`` are read from storage on every pass; training graphs are then compiled when needed.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ckpt_path = out_dir / "checkpoint.pkl"
    history: list[PassRecord] = []
    start_iter = 0
    model: GmmHmm | None = None
    alignments: dict[str, np.ndarray] = {}
    num_gauss = 0

    inputs = mono_inputs(topo, lexicon_fst, disambig_phones, transcripts, feats, dim, phone_sets, config.num_jobs)
    ck = load_checkpoint(ckpt_path, config, inputs)
    if ck is not None:
        model, alignments, num_gauss, start_iter = ck["model"], ck["alignments"], ck["num_gauss"], ck["next_iter"]
        history = ck["history"]
        log.info("resuming monophone training at pass %d", start_iter)

    if model is None:
        model = init_mono_model(topo, feats, dim, config.init_subset, phone_sets)
        num_gauss = model.am.num_gauss
    inc_gauss = max((config.tot_gauss - model.num_pdfs) // max(config.max_iter_inc, 1), 0)

    t0 = time.time()
    graphs = compile_training_graphs(model, lexicon_fst, disambig_phones, transcripts, lazy=streaming)
    log.info("compiled %d training graphs in %.1fs", len(graphs), time.time() - t0)
    missing = len(transcripts) - len(graphs)
    if missing:
        log.warning("%d utterances have no training graph and are skipped", missing)

    if start_iter == 0:
        t0 = time.time()
        frames = _feature_frames(feats)
        alignments = {}
        too_short = 0
        for i, (utt, graph) in enumerate(graphs.items()):
            n = frames.get(utt)
            if n is None:
                continue
            ali = equal_align(graph, n, config.seed + i)
            if ali is None:
                too_short += 1
                continue
            alignments[utt] = np.asarray(ali, dtype=np.int32)
        if too_short:
            log.warning("equal alignment impossible for %d utterances (shorter than their HMM path); skipped", too_short)
        if not alignments:
            raise SenoneError("equal alignment failed for every utterance: are the features and transcripts of the same cuts?")
        stats = accumulate(model, feats, alignments, config.batch_frames, config.num_jobs)
        warn_unseen_pdfs(model, stats.pdf_occupancies())
        gmm_est(model, stats, mixup=num_gauss, power=config.power, perturb_factor=config.perturb_factor,
                mixup_min_count=config.mixup_min_count, min_gaussian_occupancy=config.first_min_gaussian_occupancy,
                seed=config.seed)
        history.append(PassRecord(0, model.am.num_gauss, stats.tot_loglike / max(stats.num_frames, 1),
                                  stats.num_frames, False, too_short, time.time() - t0))
        start_iter = 1
        save_checkpoint(ckpt_path, model, alignments, num_gauss, start_iter, history, config=config, inputs=inputs)

    alignments, num_gauss, feats = run_passes(
        model, graphs, feats, alignments, config, start_iter=start_iter, num_gauss=num_gauss, inc_gauss=inc_gauss,
        history=history, desc="mono pass",
        checkpoint=lambda *a: save_checkpoint(ckpt_path, *a, config=config, inputs=inputs))
    alignments, astats = final_alignment(model, graphs, feats, config)
    model.save(out_dir)
    write_json(out_dir / "history.json", {"config": asdict(config), "passes": [asdict(h) for h in history],
                                          "final_alignment": asdict(astats) | {"like_per_frame": astats.like_per_frame}})
    return MonoResult(model=model, alignments=alignments, history=history)


