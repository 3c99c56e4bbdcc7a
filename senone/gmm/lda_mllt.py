"""LDA+MLLT triphones (Kaldi's ``steps/train_lda_mllt.sh``, the tri2/tri3a stage).

Instead of Δ+ΔΔ, the GMMs see CMVN-normalised static features spliced ±3 frames and projected to
40 dimensions by LDA, with the previous stage's pdf-ids as classes (``acc-lda`` on its alignment,
silence frames weighted 0 by ``weight-silence-post 0.0``). A new tree is built on these features
from the previous alignments, then the usual Viterbi-EM passes run; at ``mllt_iters`` (2 4 6 12)
the pass first estimates an MLLT matrix ``A`` with the current model and alignment
(``gmm-acc-mllt`` + ``est-mllt``), moves the model's means with it (``gmm-transform-means``),
composes it onto the stage matrix (``compose-transforms``) and continues on the re-transformed
features. The composed matrix is ``final.mat``.

Resumability follows Kaldi's file layout: the LDA matrix is ``0.mat`` (also ``lda.mat``) and the
matrix after the MLLT update of pass ``x`` is ``x.mat``, written before that pass's checkpoint.
A resumed run starting at pass ``n`` uses the newest ``x.mat`` with ``x < n``: the features the
checkpointed model was trained on. ``train_triphone`` itself is used unchanged.
"""

from __future__ import annotations

import json
import logging
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterator, Mapping, Sequence

import kaldifst
import numpy as np

from senone import SenoneError
from senone.feats.deltas import splice
from senone.feats.lda import LdaStats, compose_transforms, estimate_lda, read_kaldi_matrix, write_kaldi_matrix
from senone.feats.mllt import MlltStats, estimate_mllt, transform_am_means, KALDI_MLLT_ITERS
from senone.feats.source import FeatureMemory, num_frames, through
from senone.feats.transform import MATRIX_FILE, StageFeatures, as_stored, write_feature_pipeline
from senone.gmm.passes import FeatureSource, load_checkpoint
from senone.gmm.stats import GmmParams
from senone.gmm.triphone import TriConfig, TriResult, train_triphone, tree_stage_inputs
from senone.hmm.model import GmmHmm
from senone.io import write_json
from senone.lang.prepare import Lang
from senone.parallel import shared, sum_shards

log = logging.getLogger(__name__)

_MAT_RE = re.compile(r"^(\d+)\.mat$")


@dataclass
class LdaMlltConfig(TriConfig):
    """train_lda_mllt.sh defaults: 40-dim LDA of ±3 spliced frames, MLLT at passes 2 4 6 12; the sizes are
    conf/gmm.yaml's tri2 (one source: tests/test_config_schema.py checks that the two agree)."""

    num_leaves: int = 1300
    tot_gauss: int = 12000
    lda_dim: int = 40
    splice: int = 3
    mllt_iters: tuple[int, ...] = (2, 4, 6, 12)
    silence_weight: float = 0.0  # weight-silence-post for LDA and MLLT statistics
    mllt_sweeps: int = KALDI_MLLT_ITERS
    cmvn_norm_vars: bool = False  # recorded in feature_pipeline.json; the static features come normalised


@dataclass
class MlltUpdate:
    """One MLLT re-estimation (what Kaldi's est-mllt log reports)."""

    iteration: int
    frames: float
    like_per_frame: float  # model log-likelihood per (non-silence) frame before the update
    auxf_impr_per_frame: float
    logdet: float  # log|det A|
    seconds: float


@dataclass
class LdaMlltResult(TriResult):
    pipeline: StageFeatures | None = None
    feats: dict[str, np.ndarray] = field(default_factory=dict, repr=False)  # the final training features
    mllt_updates: list[MlltUpdate] = field(default_factory=list)
    lda_summary: dict = field(default_factory=dict)


# --------------------------------------------------------------------------------------------
# Frame labels and weights
# --------------------------------------------------------------------------------------------

def tid_tables(model: GmmHmm) -> tuple[np.ndarray, np.ndarray]:
    """(transition-id → pdf-id, transition-id → phone) arrays, index 0 unused."""
    return model.tid2pdf(), model.tid2phone()


def frame_weights(ali: np.ndarray, tid2phone: np.ndarray, silence_phones: Sequence[int],
                  silence_weight: float) -> np.ndarray:
    """Kaldi's ``weight-silence-post``: ``silence_weight`` on frames of silence phones, 1 elsewhere."""
    w = np.ones(len(ali))
    if len(silence_phones):
        w[np.isin(tid2phone[ali], np.asarray(silence_phones))] = silence_weight
    return w


# --------------------------------------------------------------------------------------------
# Statistics, serial or over forked workers (which share the parent's features copy-on-write)
# --------------------------------------------------------------------------------------------

def frame_batches(utts: list[str], alignments: Mapping[str, np.ndarray], batch_frames: int) -> Iterator[list[str]]:
    """Consecutive groups of ``utts`` of at least ``batch_frames`` aligned frames (the last may be shorter)."""
    buf_u: list[str] = []
    n = 0
    for u in utts:
        buf_u.append(u)
        n += len(alignments[u])
        if n >= batch_frames:
            yield buf_u
            buf_u, n = [], 0
    if buf_u:
        yield buf_u


def _lda_shard(utts: list[str]) -> LdaStats:
    s = shared()
    stats = LdaStats.zeros(s["num_pdfs"], s["dim"])
    for batch in frame_batches(utts, s["alignments"], s["batch_frames"]):
        x, ids, w = [], [], []
        for u in batch:
            ali = s["alignments"][u]
            x.append(splice(np.asarray(s["static"][u], dtype=np.float32), s["context"], s["context"]))
            ids.append(s["tid2pdf"][ali])
            w.append(frame_weights(ali, s["tid2phone"], s["silence_phones"], s["silence_weight"]))
        stats.accumulate(np.concatenate(x), np.concatenate(ids), np.concatenate(w))
    return stats


def _checked_utts(feats: FeatureSource, alignments: Mapping[str, np.ndarray], what: str) -> list[str]:
    utts, bad = [], 0
    for u in feats.keys():
        ali = alignments.get(u)
        if ali is None:
            continue
        if len(ali) != num_frames(feats, u):
            bad += 1
            continue
        utts.append(u)
    if bad:
        log.warning("%s: skipped %d utterances whose alignment length differs from their features", what, bad)
    if not utts:
        raise SenoneError(f"{what}: no utterance has both features and an alignment; check the previous stage's "
                          "ali.ark against these features")
    return utts


def accumulate_lda_stats(prev: GmmHmm, alignments: Mapping[str, np.ndarray], static_feats: FeatureSource,
                         silence_phones: Sequence[int], *, splice_context: int = 3, silence_weight: float = 0.0,
                         batch_frames: int = 100_000, num_jobs: int = 1) -> LdaStats:
    """``ali-to-post | weight-silence-post | acc-lda``: spliced static frames, classes = ``prev``'s pdf-ids."""
    utts = _checked_utts(static_feats, alignments, "LDA statistics")
    tid2pdf, tid2phone = tid_tables(prev)
    dim = static_feats[utts[0]].shape[1] * (2 * splice_context + 1)
    return sum_shards(_lda_shard, utts, num_jobs, num_pdfs=prev.num_pdfs, dim=dim, static=static_feats,
                      alignments=alignments, context=splice_context, tid2pdf=tid2pdf, tid2phone=tid2phone,
                      silence_phones=list(silence_phones), silence_weight=silence_weight, batch_frames=batch_frames)


def _mllt_shard(utts: list[str]) -> MlltStats:
    s = shared()
    stats = MlltStats.zeros(s["dim"])
    for batch in frame_batches(utts, s["alignments"], s["batch_frames"]):
        x, ids, w = [], [], []
        for u in batch:
            ali = s["alignments"][u]
            x.append(s["feats"][u])
            ids.append(s["tid2pdf"][ali])
            w.append(frame_weights(ali, s["tid2phone"], s["silence_phones"], s["silence_weight"]))
        stats.accumulate(np.concatenate(x), np.concatenate(ids), s["gmms"], np.concatenate(w))
    return stats


def accumulate_mllt_stats(model: GmmHmm, feats: FeatureSource, alignments: Mapping[str, np.ndarray],
                          silence_phones: Sequence[int], *, silence_weight: float = 0.0,
                          batch_frames: int = 100_000, num_jobs: int = 1) -> MlltStats:
    """``ali-to-post | weight-silence-post | gmm-acc-mllt`` with the current model on the current features."""
    utts = _checked_utts(feats, alignments, "MLLT statistics")
    tid2pdf, tid2phone = tid_tables(model)
    return sum_shards(_mllt_shard, utts, num_jobs, dim=model.dim, feats=feats, alignments=alignments,
                      gmms=GmmParams.from_am(model.am), tid2pdf=tid2pdf, tid2phone=tid2phone,
                      silence_phones=list(silence_phones), silence_weight=silence_weight, batch_frames=batch_frames)


# --------------------------------------------------------------------------------------------
# The MLLT pass hook
# --------------------------------------------------------------------------------------------

class MlltHook:
    """The :class:`senone.gmm.passes.PassHook` of train_lda_mllt.sh: at ``mllt_iters``, re-estimate MLLT.

    Holds the current stage pipeline (``pipeline.matrix`` = LDA with every MLLT so far) and the
    static features it is applied to; returns the re-transformed features after an update, which
    the pass then accumulates on. Each update writes ``<it>.mat`` (before the pass checkpoints)
    and appends to ``mllt.json``.
    """

    def __init__(self, static_feats: FeatureSource, pipeline: StageFeatures, out_dir: str | Path,
                 silence_phones: Sequence[int], config: LdaMlltConfig, updates: list[MlltUpdate] | None = None,
                 memory: FeatureMemory = FeatureMemory()):
        self.static_feats = static_feats
        self.memory = memory
        self.pipeline = pipeline
        self.out_dir = Path(out_dir)
        self.silence_phones = list(silence_phones)
        self.config = config
        self.updates: list[MlltUpdate] = list(updates or [])
        self.last_stats: MlltStats | None = None  # kept for inspection (tests)
        self.last_matrix: np.ndarray | None = None
        self.feats: FeatureSource | None = None  # the features after the latest update

    def __call__(self, it: int, model: GmmHmm, alignments: Mapping[str, np.ndarray],
                 feats: FeatureSource) -> FeatureSource | None:
        if it not in self.config.mllt_iters:
            return None
        t0 = time.time()
        cfg = self.config
        stats = accumulate_mllt_stats(model, feats, alignments, self.silence_phones,
                                      silence_weight=cfg.silence_weight, batch_frames=cfg.batch_frames,
                                      num_jobs=cfg.num_jobs)
        result = estimate_mllt(stats, num_iters=cfg.mllt_sweeps)
        a = as_stored(result.matrix)  # est-mllt writes a float matrix; the model and features use the same
        transform_am_means(model.am, a)
        matrix = as_stored(compose_transforms(a, self.pipeline.matrix))
        write_kaldi_matrix(self.out_dir / f"{it}.mat", matrix)
        self.pipeline = StageFeatures.lda(matrix, self.pipeline.splice_left, self.pipeline.cmvn_norm_vars)
        new_feats = stage_features_of(self.static_feats, self.pipeline, self.memory)
        upd = MlltUpdate(iteration=it, frames=stats.beta, like_per_frame=stats.tot_loglike / max(stats.beta, 1e-10),
                         auxf_impr_per_frame=result.objf_impr_per_frame,
                         logdet=float(np.linalg.slogdet(a)[1]), seconds=time.time() - t0)
        self.updates = [u for u in self.updates if u.iteration != it] + [upd]
        write_json(self.out_dir / "mllt.json", [asdict(u) for u in self.updates])
        self.last_stats, self.last_matrix, self.feats = stats, a, new_feats
        log.info("MLLT at pass %d: auxiliary function +%.4f per frame over %.0f frames (log-like/frame before "
                 "%.3f, log|det A| %.3f, %.1fs)", it, upd.auxf_impr_per_frame, upd.frames, upd.like_per_frame,
                 upd.logdet, upd.seconds)
        return new_feats


# --------------------------------------------------------------------------------------------
# The stage
# --------------------------------------------------------------------------------------------

def numbered_matrices(out_dir: str | Path) -> dict[int, Path]:
    """``{x: out_dir/x.mat}`` for the matrices a run has written (0 = LDA)."""
    out = {}
    for p in Path(out_dir).glob("*.mat"):
        m = _MAT_RE.match(p.name)
        if m:
            out[int(m.group(1))] = p
    return out


def _clear_stale(out_dir: Path) -> None:
    """A fresh run must not pick up a previous run's matrices."""
    for p in numbered_matrices(out_dir).values():
        p.unlink()
    for name in (MATRIX_FILE, "lda.mat", "mllt.json", "feature_pipeline.json"):
        (out_dir / name).unlink(missing_ok=True)


def _resume_state(out_dir: Path, config: LdaMlltConfig, inputs: str | None = None
                  ) -> tuple[np.ndarray, list[MlltUpdate], int] | None:
    # the checkpoint train_triphone will resume, under the same key (settings and input fingerprint): a
    # checkpoint it would refuse must not lend its matrices to a fresh run
    ck = load_checkpoint(out_dir / "checkpoint.pkl", config, inputs)
    if ck is None:
        return None
    next_iter = int(ck["next_iter"])
    mats = {x: p for x, p in numbered_matrices(out_dir).items() if x < next_iter}
    if 0 not in mats:
        raise SenoneError(f"{out_dir}/checkpoint.pkl: resuming needs the LDA matrix 0.mat, which is missing; "
                          "delete checkpoint.pkl to train the stage afresh")
    missing = [x for x in config.mllt_iters if 0 < x < next_iter and x not in mats]
    if missing:
        raise SenoneError(f"{out_dir}: resuming at pass {next_iter} needs the MLLT matrices "
                          f"{', '.join(f'{x}.mat' for x in missing)}; delete checkpoint.pkl to train afresh")
    latest = max(mats)
    updates: list[MlltUpdate] = []
    rec = out_dir / "mllt.json"
    if rec.is_file():
        updates = [MlltUpdate(**u) for u in json.loads(rec.read_text(encoding="utf-8")) if u["iteration"] < next_iter]
    log.info("resuming LDA+MLLT at pass %d with %s", next_iter, mats[latest].name)
    return read_kaldi_matrix(mats[latest]), updates, next_iter


def stage_features_of(static_feats: FeatureSource, pipeline: StageFeatures, memory: FeatureMemory) -> FeatureSource:
    """``static_feats`` through ``pipeline`` (splice + LDA·MLLT): computed now or on every read."""
    return through(static_feats, lambda _utt, x: pipeline.apply(x), memory)


def train_lda_mllt(lang: Lang, lexicon_fst: kaldifst.StdVectorFst, transcripts: Mapping[str, list[int]],
                   static_feats: FeatureSource, prev: GmmHmm, prev_alignments: Mapping[str, np.ndarray],
                   out_dir: str | Path, config: LdaMlltConfig = LdaMlltConfig(), *, name: str = "tri2",
                   memory: FeatureMemory = FeatureMemory()) -> LdaMlltResult:
    """Train an LDA+MLLT triphone system; resumable per pass (see the module docstring).

    ``static_feats`` are CMVN-normalised static features (no deltas), e.g. from
    :func:`senone.feats.transform.iter_static_features` or a streaming
    :class:`senone.feats.source.CutFeatures`; ``memory`` says whether the stage features are
    computed once into memory or on every pass (and the static ones are then read from storage
    whenever the LDA, MLLT or a pass needs them). Writes what ``train_triphone`` writes plus
    ``0.mat``/``lda.mat`` (LDA), ``<x>.mat`` per MLLT update, ``final.mat`` (what decoding applies),
    ``feature_pipeline.json``, ``lda.json`` and ``mllt.json``.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if not static_feats.keys():
        raise SenoneError(f"{out_dir}: no training features given")
    static_dim = next(iter(static_feats.items()))[1].shape[1]
    inputs = tree_stage_inputs(lang, lexicon_fst, transcripts, static_feats, prev, prev_alignments, config.num_jobs)
    state = _resume_state(out_dir, config, inputs)
    lda_summary: dict = {}
    if state is None:
        _clear_stale(out_dir)
        t0 = time.time()
        stats = accumulate_lda_stats(prev, prev_alignments, static_feats, lang.silence_phones,
                                     splice_context=config.splice, silence_weight=config.silence_weight,
                                     batch_frames=config.batch_frames, num_jobs=config.num_jobs)
        lda = estimate_lda(stats, config.lda_dim)
        kept = float(lda.eigenvalues[:config.lda_dim].sum() / max(lda.eigenvalues.sum(), 1e-10))
        matrix = as_stored(lda.matrix)
        write_kaldi_matrix(out_dir / "0.mat", matrix)
        write_kaldi_matrix(out_dir / "lda.mat", matrix)
        lda_summary = {"frames": lda.count, "classes_seen": int((stats.counts > 0).sum()),
                       "num_classes": stats.num_classes, "input_dim": stats.dim, "dim": config.lda_dim,
                       "eigenvalues": [float(v) for v in lda.eigenvalues],
                       "kept_fraction": kept,
                       "seconds": time.time() - t0}
        write_json(out_dir / "lda.json", lda_summary)
        log.info("LDA: %d×%d from %.0f non-silence frames over %d of %d pdfs; kept eigenvalue mass %.3f (%.1fs)",
                 matrix.shape[0], matrix.shape[1], lda.count, lda_summary["classes_seen"], stats.num_classes,
                 lda_summary["kept_fraction"], lda_summary["seconds"])
        updates: list[MlltUpdate] = []
    else:
        matrix, updates, _ = state
        if (out_dir / "lda.json").is_file():
            lda_summary = json.loads((out_dir / "lda.json").read_text(encoding="utf-8"))
    pipeline = StageFeatures.lda(matrix, config.splice, config.cmvn_norm_vars)
    t0 = time.time()
    feats = stage_features_of(static_feats, pipeline, memory)
    log.info("%d utterances through splice ±%d + %d×%d transform (%.1fs)", len(feats), config.splice,
             *matrix.shape, time.time() - t0)
    hook = MlltHook(static_feats, pipeline, out_dir, lang.silence_phones, config, updates, memory)
    tri = train_triphone(lang, lexicon_fst, transcripts, feats, prev, prev_alignments, out_dir, config, hook=hook,
                         name=name, streaming=not memory.in_memory, inputs=inputs)
    final = hook.pipeline
    write_kaldi_matrix(out_dir / MATRIX_FILE, final.matrix)
    write_feature_pipeline(out_dir, final, static_dim)
    return LdaMlltResult(model=tri.model, alignments=tri.alignments, history=tri.history,
                         tree_summary=tri.tree_summary, pipeline=final,
                         feats=hook.feats if hook.feats is not None else feats, mllt_updates=hook.updates,
                         lda_summary=lda_summary)
