"""Monophone GMM-HMM training in the manner of Kaldi's ``steps/train_mono.sh``.

Flat start: every pdf gets one Gaussian with the global mean and variance (``gmm-init-mono``),
the first statistics come from equal alignments (``align-equal-compiled``), then ``num_iters``
passes of Viterbi training, realigning on ``realign_iters`` and mixing up linearly to
``tot_gauss`` Gaussians over the first ``max_iter_inc`` passes. Each pass is checkpointed, so a
killed run resumes at the pass it was in.
"""

from __future__ import annotations

import logging
import multiprocessing
import pickle
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Mapping, Protocol

import kaldi_hmm_gmm as khg
import kaldifst
import numpy as np
from tqdm import tqdm

from senone import SenoneError
from senone.gmm.align import AlignStats, align, compile_training_graphs, equal_align
from senone.gmm.mixup import split_by_count
from senone.gmm.stats import GaussStats
from senone.hmm.model import GmmHmm
from senone.io import atomic_open, write_json

log = logging.getLogger(__name__)

#: Kaldi's train_mono.sh realignment schedule.
KALDI_MONO_REALIGN_ITERS = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 12, 14, 16, 18, 20, 23, 26, 29, 32, 35, 38)


class FeatureSource(Protocol):
    """Random access to per-utterance features (``keys()``, ``items()``, ``[utt]``), re-iterable.

    A plain dict works for corpora that fit in memory; a lazy reader over Lhotse cuts
    provides the same methods for large corpora.
    """

    def keys(self) -> Iterable[str]: ...

    def items(self) -> Iterable[tuple[str, np.ndarray]]: ...

    def __getitem__(self, utt: str) -> np.ndarray: ...


@dataclass
class MonoConfig:
    num_iters: int = 40
    max_iter_inc: int = 30
    tot_gauss: int = 1000
    realign_iters: tuple[int, ...] = KALDI_MONO_REALIGN_ITERS
    power: float = 0.25
    perturb_factor: float = 0.01
    mixup_min_count: float = 20.0
    first_min_gaussian_occupancy: float = 3.0
    first_beam: float = 6.0
    beam: float = 10.0
    retry_beam_factor: float = 4.0
    acoustic_scale: float = 0.1
    transition_scale: float = 1.0
    self_loop_scale: float = 0.1
    init_subset: int = 10
    batch_frames: int = 200_000
    seed: int = 0
    num_jobs: int = 1


@dataclass
class PassRecord:
    iteration: int
    num_gauss: int
    like_per_frame: float
    frames: int
    realigned: bool
    align_failed: int
    seconds: float


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


def accumulate(model: GmmHmm, feats: FeatureSource, alignments: Mapping[str, np.ndarray],
               batch_frames: int, num_jobs: int = 1) -> GaussStats:
    """``gmm-acc-stats-ali`` over all aligned utterances, batched for the vectorised E-step.

    With ``num_jobs > 1`` forked workers accumulate shards of the utterances and the parent sums
    their statistics (Kaldi's ``gmm-sum-accs``).
    """
    utts = [u for u in feats.keys() if u in alignments]
    if num_jobs <= 1 or len(utts) < 2 * num_jobs:
        return _accumulate_serial(model, feats, alignments, utts, batch_frames)
    _SHARED.update(model=model, feats=feats, alignments=alignments, batch_frames=batch_frames)
    try:
        with multiprocessing.get_context("fork").Pool(num_jobs) as pool:
            parts = pool.map(_accumulate_shard, [utts[i::num_jobs] for i in range(num_jobs)])
    finally:
        _SHARED.clear()
    total = parts[0]
    for part in parts[1:]:
        total.add(part)
    return total


_SHARED: dict = {}


def _accumulate_shard(utts: list[str]) -> GaussStats:
    stats = _accumulate_serial(_SHARED["model"], _SHARED["feats"], _SHARED["alignments"], utts, _SHARED["batch_frames"])
    stats._params = []  # parameters need not travel back to the parent
    return stats


def _accumulate_serial(model: GmmHmm, feats: FeatureSource, alignments: Mapping[str, np.ndarray], utts: list[str],
                       batch_frames: int) -> GaussStats:
    stats = GaussStats.zeros(model.am, model.trans_model.num_transition_ids)
    tid2pdf = model.tid2pdf()
    buf_x: list[np.ndarray] = []
    buf_t: list[np.ndarray] = []
    buffered = 0

    def flush() -> None:
        nonlocal buffered
        if buffered:
            tids = np.concatenate(buf_t)
            stats.accumulate(np.concatenate(buf_x), tid2pdf[tids], tids)
            buf_x.clear()
            buf_t.clear()
            buffered = 0

    for utt in utts:
        ali = alignments[utt]
        buf_x.append(feats[utt])
        buf_t.append(ali)
        buffered += len(ali)
        stats.num_utts += 1
        if buffered >= batch_frames:
            flush()
    flush()
    return stats


def gmm_est(model: GmmHmm, stats: GaussStats, *, mixup: int, power: float, perturb_factor: float,
            mixup_min_count: float, min_gaussian_occupancy: float = 10.0, seed: int = 0) -> tuple[float, float]:
    """``gmm-est``: transition and GMM updates (Kaldi's code), then mixing up by occupancy."""
    tcfg = khg.MleTransitionUpdateConfig()
    model.trans_model.mle_update(stats.trans_counts.reshape(-1, 1), tcfg)
    flags = khg.str_to_gmm_flags("mvw")
    kaldi_acc = stats.to_kaldi(model.am, flags)
    opts = khg.MleDiagGmmOptions()
    opts.min_gaussian_occupancy = min_gaussian_occupancy
    objf_impr, count = khg.mle_am_diag_gmm_update(opts, kaldi_acc, flags, model.am)
    if mixup > model.am.num_gauss:
        split_by_count(model.am, stats.pdf_occupancies(), mixup, perturb_factor=perturb_factor, power=power,
                       min_count=mixup_min_count, seed=seed)
    model.am.compute_gconsts()
    return objf_impr, count


def _feature_frames(feats: FeatureSource) -> dict[str, int]:
    return {utt: int(x.shape[0]) for utt, x in feats.items()}


def train_mono(topo: khg.HmmTopology, lexicon_fst: kaldifst.StdVectorFst, disambig_phones: list[int],
               transcripts: Mapping[str, list[int]], feats: FeatureSource, dim: int, out_dir: str | Path,
               config: MonoConfig = MonoConfig(), phone_sets: list[list[int]] | None = None) -> MonoResult:
    """Train a monophone system; writes ``final.{mdl,pkl}``, ``tree``, ``history.json`` into ``out_dir``.

    ``transcripts`` maps utterance ids to word-id sequences (OOV words already mapped to the OOV
    id). Resumes from ``out_dir/checkpoint.pkl`` when a previous run was interrupted.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ckpt_path = out_dir / "checkpoint.pkl"
    history: list[PassRecord] = []
    start_iter = 0
    model: GmmHmm | None = None
    alignments: dict[str, np.ndarray] = {}
    num_gauss = 0

    if ckpt_path.exists():
        with open(ckpt_path, "rb") as f:
            ck = pickle.load(f)
        model = GmmHmm(ctx_dep=_ctx_from_state(ck["ctx_dep"]), trans_model=ck["trans_model"], am=ck["am"])
        alignments, num_gauss, start_iter = ck["alignments"], ck["num_gauss"], ck["next_iter"]
        history = [PassRecord(**h) for h in ck["history"]]
        log.info("resuming monophone training at pass %d", start_iter)

    if model is None:
        model = init_mono_model(topo, feats, dim, config.init_subset, phone_sets)
        num_gauss = model.am.num_gauss
    inc_gauss = max((config.tot_gauss - model.num_pdfs) // max(config.max_iter_inc, 1), 0)

    t0 = time.time()
    graphs = compile_training_graphs(model, lexicon_fst, disambig_phones, transcripts)
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
        gmm_est(model, stats, mixup=num_gauss, power=config.power, perturb_factor=config.perturb_factor,
                mixup_min_count=config.mixup_min_count, min_gaussian_occupancy=config.first_min_gaussian_occupancy,
                seed=config.seed)
        history.append(PassRecord(0, model.am.num_gauss, stats.tot_loglike / max(stats.num_frames, 1),
                                  stats.num_frames, False, too_short, time.time() - t0))
        start_iter = 1
        _checkpoint(ckpt_path, model, alignments, num_gauss, start_iter, history)

    for it in tqdm(range(start_iter, config.num_iters), desc="mono passes", initial=start_iter,
                   total=config.num_iters, disable=None):
        t0 = time.time()
        realigned = it in config.realign_iters
        astats = AlignStats()
        if realigned:
            beam = config.first_beam if it == 1 else config.beam
            new_ali, astats = align(model, graphs, feats, num_jobs=config.num_jobs, beam=beam, retry_beam=beam * config.retry_beam_factor,
                                    acoustic_scale=config.acoustic_scale, transition_scale=config.transition_scale,
                                    self_loop_scale=config.self_loop_scale)
            alignments = new_ali
        stats = accumulate(model, feats, alignments, config.batch_frames, config.num_jobs)
        gmm_est(model, stats, mixup=num_gauss, power=config.power, perturb_factor=config.perturb_factor,
                mixup_min_count=config.mixup_min_count, seed=config.seed + it)
        if it <= config.max_iter_inc:
            num_gauss += inc_gauss
        rec = PassRecord(it, model.am.num_gauss, stats.tot_loglike / max(stats.num_frames, 1), stats.num_frames,
                         realigned, astats.num_failed, time.time() - t0)
        history.append(rec)
        log.info("pass %d: %d Gaussians, log-like/frame %.3f over %d frames%s (%.1fs)", it, rec.num_gauss,
                 rec.like_per_frame, rec.frames, f", realigned ({astats.num_failed} failed)" if realigned else "",
                 rec.seconds)
        _checkpoint(ckpt_path, model, alignments, num_gauss, it + 1, history)

    # Final alignment with the final model: what later stages (tri1, the networks) start from.
    alignments, astats = align(model, graphs, feats, num_jobs=config.num_jobs, beam=config.beam,
                               retry_beam=config.beam * config.retry_beam_factor,
                               acoustic_scale=config.acoustic_scale, transition_scale=config.transition_scale,
                               self_loop_scale=config.self_loop_scale)
    log.info("final alignment: %d done, %d failed, log-like/frame %.3f", astats.num_done, astats.num_failed,
             astats.like_per_frame)
    model.save(out_dir)
    write_json(out_dir / "history.json", {"config": asdict(config), "passes": [asdict(h) for h in history],
                                          "final_alignment": asdict(astats) | {"like_per_frame": astats.like_per_frame}})
    return MonoResult(model=model, alignments=alignments, history=history)


def _ctx_from_state(state: tuple) -> khg.ContextDependency:
    ctx = khg.ContextDependency.__new__(khg.ContextDependency)
    ctx.__setstate__(state)
    return ctx


def _checkpoint(path: Path, model: GmmHmm, alignments: dict, num_gauss: int, next_iter: int,
                history: list[PassRecord]) -> None:
    with atomic_open(path, "wb") as f:
        pickle.dump({"ctx_dep": model.ctx_dep.__getstate__(), "trans_model": model.trans_model, "am": model.am,
                     "alignments": alignments, "num_gauss": num_gauss, "next_iter": next_iter,
                     "history": [asdict(h) for h in history]}, f, protocol=pickle.HIGHEST_PROTOCOL)
