"""The Viterbi-EM pass loop shared by every GMM stage (Kaldi's ``train_*.sh`` inner loop).

Each pass: optionally realign with the current model (``gmm-align-compiled``), optionally update a
feature transform (MLLT, fMLLR — a stage-specific hook), accumulate statistics on the alignment
(``gmm-acc-stats-ali``), re-estimate (``gmm-est``) and mix up towards the target number of
Gaussians. Every pass ends with a checkpoint, so a killed run resumes at the pass it was in.

A checkpoint is resumed only by a run of the same stage on the same data: its key holds the
trainer settings (but the number of jobs and of passes) and a content hash of every input the
stage trains on (:class:`InputFingerprint`: features, transcripts, lexicon, topology, the previous
stage's model and alignments). A run with other features, say, starts afresh instead of continuing
a model of the old ones.
"""

from __future__ import annotations

import hashlib
import logging
import pickle
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Protocol

import kaldi_hmm_gmm as khg
import kaldifst
import numpy as np
from tqdm import tqdm

from senone.gmm.align import AlignStats, align
from senone.gmm.mixup import split_by_count
from senone.gmm.stats import GaussStats
from senone.hmm.model import GmmHmm
from senone.io import atomic_open
from senone.parallel import map_shards, shared, sum_shards

log = logging.getLogger(__name__)


class FeatureSource(Protocol):
    """Random access to per-utterance features (``keys()``, ``items()``, ``[utt]``), re-iterable.

    A plain dict works for corpora that fit in memory; a lazy reader over Lhotse cuts
    provides the same methods for large corpora.
    """

    def keys(self) -> Iterable[str]: ...

    def items(self) -> Iterable[tuple[str, np.ndarray]]: ...

    def __getitem__(self, utt: str) -> np.ndarray: ...


@dataclass
class PassConfig:
    """Settings every GMM stage shares (defaults: Kaldi's steps/train_*.sh)."""

    num_iters: int = 35
    max_iter_inc: int = 25
    tot_gauss: int = 1000
    realign_iters: tuple[int, ...] = (10, 20, 30)
    power: float = 0.25
    perturb_factor: float = 0.01
    mixup_min_count: float = 20.0
    first_beam: float = 10.0
    beam: float = 10.0
    retry_beam_factor: float = 4.0
    acoustic_scale: float = 0.1
    transition_scale: float = 1.0
    self_loop_scale: float = 0.1
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


class PassHook(Protocol):
    """Called after realignment and before accumulation of pass ``it``; may return new features.

    LDA+MLLT and SAT use it to re-estimate their transform (and adjust the model) on the current
    alignment, as Kaldi's train_lda_mllt.sh / train_sat.sh do at their mllt_iters / fmllr_iters.
    """

    def __call__(self, it: int, model: GmmHmm, alignments: Mapping[str, np.ndarray],
                 feats: FeatureSource) -> FeatureSource | None: ...


def accumulate(model: GmmHmm, feats: FeatureSource, alignments: Mapping[str, np.ndarray],
               batch_frames: int, num_jobs: int = 1) -> GaussStats:
    """``gmm-acc-stats-ali`` over all aligned utterances, batched for the vectorised E-step.

    With ``num_jobs > 1`` forked workers accumulate shards of the utterances and the parent sums
    their statistics (Kaldi's ``gmm-sum-accs``).
    """
    utts = [u for u in feats.keys() if u in alignments]
    return sum_shards(_accumulate_shard, utts, num_jobs, model=model, feats=feats, alignments=alignments,
                      batch_frames=batch_frames)


def _accumulate_shard(utts: list[str]) -> GaussStats:
    s = shared()
    stats = _accumulate_serial(s["model"], s["feats"], s["alignments"], utts, s["batch_frames"])
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


def run_passes(model: GmmHmm, graphs: Mapping[str, kaldifst.StdVectorFst], feats: FeatureSource,
               alignments: dict[str, np.ndarray], config: PassConfig, *, start_iter: int, num_gauss: int,
               inc_gauss: int, history: list[PassRecord], checkpoint: Callable[..., None],
               hook: PassHook | None = None, desc: str = "passes") -> tuple[dict[str, np.ndarray], int, FeatureSource]:
    """Passes ``start_iter .. num_iters-1``; returns the last alignments, Gaussian target and features."""
    for it in tqdm(range(start_iter, config.num_iters), desc=desc, initial=start_iter, total=config.num_iters,
                   disable=None):
        t0 = time.time()
        realigned = it in config.realign_iters
        astats = AlignStats()
        if realigned:
            beam = config.first_beam if it == 1 else config.beam
            alignments, astats = align(model, graphs, feats, num_jobs=config.num_jobs, beam=beam,
                                       retry_beam=beam * config.retry_beam_factor,
                                       acoustic_scale=config.acoustic_scale, transition_scale=config.transition_scale,
                                       self_loop_scale=config.self_loop_scale)
        if hook is not None:
            new_feats = hook(it, model, alignments, feats)
            if new_feats is not None:
                feats = new_feats
        stats = accumulate(model, feats, alignments, config.batch_frames, config.num_jobs)
        gmm_est(model, stats, mixup=num_gauss, power=config.power, perturb_factor=config.perturb_factor,
                mixup_min_count=config.mixup_min_count, seed=config.seed + it)
        if it <= config.max_iter_inc:
            num_gauss += inc_gauss
        rec = PassRecord(it, model.am.num_gauss, stats.tot_loglike / max(stats.num_frames, 1), stats.num_frames,
                         realigned, astats.num_failed, time.time() - t0)
        history.append(rec)
        log.info("%s %d: %d Gaussians, log-like/frame %.3f over %d frames%s (%.1fs)", desc, it, rec.num_gauss,
                 rec.like_per_frame, rec.frames, f", realigned ({astats.num_failed} failed)" if realigned else "",
                 rec.seconds)
        checkpoint(model, alignments, num_gauss, it + 1, history)
    return alignments, num_gauss, feats


def final_alignment(model: GmmHmm, graphs: Mapping[str, kaldifst.StdVectorFst], feats: FeatureSource,
                    config: PassConfig) -> tuple[dict[str, np.ndarray], AlignStats]:
    """Align with the final model: what the next stage (or the networks) starts from."""
    alignments, astats = align(model, graphs, feats, num_jobs=config.num_jobs, beam=config.beam,
                               retry_beam=config.beam * config.retry_beam_factor,
                               acoustic_scale=config.acoustic_scale, transition_scale=config.transition_scale,
                               self_loop_scale=config.self_loop_scale)
    log.info("final alignment: %d done, %d failed, log-like/frame %.3f", astats.num_done, astats.num_failed,
             astats.like_per_frame)
    return alignments, astats


class InputFingerprint:
    """A content hash of what a stage trains on, for the resume key of its checkpoints.

    Why a content hash rather than the input files' sizes and modification times: the trainers get
    their inputs as objects (feature mappings, transcripts, models), not as files, and the hash of
    those objects is exactly "the data this model was trained on" whichever files, caches or
    transforms produced them. Hashing is cheap next to training: one read of the features (in
    memory: a fraction of a second for 2 h of audio; streamed: one pass over storage, shared out
    to the stage's jobs, against the 35-40 passes of training).
    """

    def __init__(self) -> None:
        self._h = hashlib.blake2b(digest_size=16)

    def add(self, name: str, data: bytes | str) -> "InputFingerprint":
        """Add one named item (its name and length go in too, so items cannot run into each other)."""
        raw = data.encode("utf-8") if isinstance(data, str) else bytes(data)
        self._h.update(f"{name}:{len(raw)}:".encode())
        self._h.update(raw)
        return self

    def add_object(self, name: str, obj: Any) -> "InputFingerprint":
        """A Kaldi object or plain Python data through pickle (kaldi-hmm-gmm pickles Kaldi's binary form)."""
        return self.add(name, pickle.dumps(obj, protocol=4))

    def add_fst(self, name: str, fst: kaldifst.StdVectorFst) -> "InputFingerprint":
        return self.add(name, str(fst))

    def add_arrays(self, name: str, arrays: Mapping[str, np.ndarray]) -> "InputFingerprint":
        """Per-utterance integer sequences (transcripts, alignments), in sorted order."""
        h = hashlib.blake2b(digest_size=16)
        for utt in sorted(arrays):
            a = np.ascontiguousarray(np.asarray(arrays[utt], dtype=np.int64))
            h.update(f"{utt}:{a.size}:".encode())
            h.update(a.tobytes())
        return self.add(name, h.digest())

    def add_features(self, name: str, feats: FeatureSource, num_jobs: int = 1) -> "InputFingerprint":
        """Every utterance's features (shape, dtype and values), independent of the number of jobs."""
        from senone.feats.source import is_lazy

        utts = sorted(feats.keys())
        parts = map_shards(_feature_digests, utts, num_jobs if is_lazy(feats) else 1, feats=feats)
        digests = {utt: d for part in parts for utt, d in part.items()}
        h = hashlib.blake2b(digest_size=16)
        for utt in utts:
            h.update(f"{utt}:".encode())
            h.update(digests[utt])
        return self.add(name, h.digest())

    def hexdigest(self) -> str:
        return self._h.hexdigest()


def _feature_digests(utts: list[str]) -> dict[str, bytes]:
    feats = shared()["feats"]
    out = {}
    for utt in utts:
        x = np.ascontiguousarray(feats[utt])
        out[utt] = hashlib.blake2b(f"{x.shape}:{x.dtype.str}:".encode() + x.tobytes(), digest_size=16).digest()
    return out


def save_checkpoint(path: Path, model: GmmHmm, alignments: dict, num_gauss: int, next_iter: int,
                    history: list[PassRecord], extra: dict[str, Any] | None = None,
                    config: PassConfig | None = None, inputs: str | None = None) -> None:
    """Write the state after a pass (atomically), keyed by ``config`` and the ``inputs`` fingerprint."""
    with atomic_open(path, "wb") as f:
        pickle.dump({"ctx_dep": model.ctx_dep.__getstate__(), "trans_model": model.trans_model, "am": model.am,
                     "alignments": alignments, "num_gauss": num_gauss, "next_iter": next_iter,
                     "history": [asdict(h) for h in history], "extra": extra or {},
                     "config": _resume_key(config), "inputs": inputs}, f,
                    protocol=pickle.HIGHEST_PROTOCOL)


def _resume_key(config: PassConfig | None) -> dict | None:
    """The settings that must match for a checkpoint to be resumed: all but the number of jobs and
    of passes (a run may be resumed with more passes, as Kaldi's ``--stage`` allows)."""
    if config is None:
        return None
    return {k: v for k, v in asdict(config).items() if k not in ("num_jobs", "num_iters")}


def load_checkpoint(path: Path, config: PassConfig | None = None, inputs: str | None = None) -> dict[str, Any] | None:
    """The saved state of an interrupted run (model, alignments, schedule position), or None.

    With ``config`` (and ``inputs``, the :class:`InputFingerprint` of this run's data), a checkpoint
    written under other settings or on other data is not resumed: it is deleted with a warning, and
    the stage trains afresh. A changed number of leaves, schedule, feature set or corpus must retrain.
    """
    if not path.exists():
        return None
    try:
        with open(path, "rb") as f:
            ck = pickle.load(f)
    except (EOFError, pickle.UnpicklingError, AttributeError, ValueError) as exc:
        log.warning("%s is not a readable checkpoint (%s); starting this stage afresh", path, exc)
        path.unlink()
        return None
    why = None
    if config is not None and ck.get("config") != _resume_key(config):
        why = "other settings"
    elif inputs is not None and ck.get("inputs") != inputs:
        why = "other input data (features, transcripts, lexicon or the previous stage changed)"
    if why:
        log.warning("%s was written with %s; starting this stage afresh", path, why)
        path.unlink()
        return None
    ctx = khg.ContextDependency.__new__(khg.ContextDependency)
    ctx.__setstate__(ck["ctx_dep"])
    ck["model"] = GmmHmm(ctx_dep=ctx, trans_model=ck["trans_model"], am=ck["am"])
    ck["history"] = [PassRecord(**h) for h in ck["history"]]
    return ck
