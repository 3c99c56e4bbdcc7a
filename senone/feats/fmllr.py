"""Feature-space MLLR (constrained MLLR) per speaker: Kaldi's ``gmm-est-fmllr`` for diagonal GMMs.

Speaker-adaptive training (``train_sat.sh``) gives every speaker an affine transform
``W = [A b]`` (d × (d+1)) of its features, ``x' = A x + b``, chosen to maximise the likelihood of
the speaker's frames under the (speaker-independent or SAT) model, log-Jacobian ``log|det A|``
included. With the extended frame ``ξ = [x; 1]``, Gaussian posteriors ``γ`` and the statistics

    β = Σ γ,   K = Σ γ (μ_g / σ²_g) ξᵀ  (d × (d+1)),   G_i = Σ γ (1/σ²_gi) ξ ξᵀ  ((d+1) × (d+1), one per row),

the auxiliary function is ``Q(W) = β log|det A| + Σ_i (w_i k_iᵀ − ½ w_i G_i w_iᵀ)``. Gales' row
update maximises it exactly in one row with the others fixed: ``w_i = (α p_i + k_i) G_i⁻¹`` with
``p_i = [c_i, 0]`` the (extended) cofactor row and ``α`` the root of
``e1 α² + e2 α − β = 0`` (``e1 = p_i G_i⁻¹ p_iᵀ``, ``e2 = p_i G_i⁻¹ k_iᵀ``) that gives the larger
``β log|α e1 + e2| − ½ α² e1``. Sweeping all rows (Kaldi's ``FmllrOptions``: 40 sweeps, from the
identity) never decreases Q.

Speakers with less occupancy than ``min_count`` (Kaldi's ``--fmllr-min-count``, 500) keep the
identity transform, with a warning naming the speaker, as ``gmm-est-fmllr`` does.

The statistics only need, per frame, ``Σ_g γ μ_g/σ²_g`` and ``Σ_g γ/σ²_g``; they are accumulated
for a whole batch at once (one product for K, one product with packed outer products for the
G_i), and are additive across shards of a speaker's utterances.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np
import scipy.sparse

from senone import SenoneError
from senone.feats.lda import _load_npz, _save_npz, apply_transform, compose_transforms
from senone.feats.mllt import (
    DiagGmmParams,
    check_frames,
    packed_outer,
    spd_inverse,
    unpack_symmetric,
    weighted_posteriors,
)
from senone.io import atomic_path

log = logging.getLogger(__name__)

#: Kaldi's ``FmllrOptions`` defaults.
KALDI_FMLLR_ITERS = 40
KALDI_FMLLR_MIN_COUNT = 500.0

#: Frames per block of packed outer products: small enough to stay in cache (4096 was 1.5× slower).
_CHUNK = 1024


@dataclass
class FmllrStats:
    """Kaldi's ``AffineXformStats`` for one speaker: β, K and the G_i (stored packed)."""

    beta: float
    k: np.ndarray  # (d, d+1)
    g_packed: np.ndarray  # (d, (d+1)(d+2)/2)
    tot_loglike: float = 0.0
    num_frames: int = 0
    _dim: int = field(default=0, repr=False)

    def __post_init__(self) -> None:
        if not self._dim:
            self._dim = int(self.k.shape[0])

    @classmethod
    def zeros(cls, dim: int) -> "FmllrStats":
        if dim < 1:
            raise SenoneError(f"fMLLR statistics need dim >= 1, got {dim}")
        return cls(0.0, np.zeros((dim, dim + 1)), np.zeros((dim, (dim + 1) * (dim + 2) // 2)), _dim=dim)

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def G(self) -> np.ndarray:
        """The full G_i matrices, d × (d+1) × (d+1)."""
        return unpack_symmetric(self.g_packed, self.dim + 1)

    def accumulate_frames(self, x: np.ndarray, mean_term: np.ndarray, invvar_term: np.ndarray) -> None:
        """The core: frames ``x`` (N × d) with ``Σ_g γ μ_g/σ²_g`` and ``Σ_g γ/σ²_g`` per frame (both N × d).

        β gets ``Σ_g γ``, which the caller folds in through :meth:`accumulate_pdf` /
        :meth:`accumulate_flat`; use those unless you already hold the per-frame sums.
        """
        n = x.shape[0]
        xi = np.empty((n, self.dim + 1))
        xi[:, :-1] = x
        xi[:, -1] = 1.0
        self.k += mean_term.T @ xi
        for s in range(0, n, _CHUNK):
            self.g_packed += invvar_term[s:s + _CHUNK].T @ packed_outer(xi[s:s + _CHUNK])

    def accumulate_pdf(self, x: np.ndarray, post: np.ndarray, means: np.ndarray, inv_vars: np.ndarray) -> None:
        """Add frames ``x`` (N × d) of one pdf with Gaussian posteriors ``post`` (N × G, frame weight included).

        ``means``/``inv_vars`` (G × d) are that pdf's Gaussians: the hook for a trainer whose
        E-step already has the posteriors.
        """
        x = np.asarray(x, dtype=np.float64)
        post = np.asarray(post, dtype=np.float64)
        means = np.asarray(means, dtype=np.float64)
        inv_vars = np.asarray(inv_vars, dtype=np.float64)
        n, d = x.shape
        if d != self.dim or post.shape != (n, means.shape[0]) or means.shape != inv_vars.shape or means.shape[1] != d:
            raise SenoneError(f"fMLLR accumulation: shapes do not agree: frames {x.shape}, posteriors {post.shape}, "
                              f"means {means.shape}, inverse variances {inv_vars.shape}, stats {self.dim}-dim")
        self.accumulate_frames(x, post @ (means * inv_vars), post @ inv_vars)
        self.beta += float(post.sum())

    def accumulate_flat(self, x: np.ndarray, frame_index: np.ndarray, means: np.ndarray, inv_vars: np.ndarray,
                        post: np.ndarray) -> None:
        """Add statistics given as flat (frame, Gaussian) pairs.

        ``x`` (T × d) are the frames; row r of ``frame_index`` (R), ``means`` (R × d),
        ``inv_vars`` (R × d) and ``post`` (R) says that Gaussian (μ, 1/σ²) has posterior
        ``post[r]`` on frame ``frame_index[r]``. Any number of rows may share a frame (several
        Gaussians, several pdfs from a lattice or first-pass decode).
        """
        x = np.asarray(x, dtype=np.float64)
        fi = np.asarray(frame_index)
        means = np.asarray(means, dtype=np.float64)
        inv_vars = np.asarray(inv_vars, dtype=np.float64)
        post = np.asarray(post, dtype=np.float64)
        r = fi.shape[0]
        if (x.ndim != 2 or x.shape[1] != self.dim or fi.ndim != 1 or means.shape != (r, self.dim)
                or inv_vars.shape != (r, self.dim) or post.shape != (r,)):
            raise SenoneError(f"fMLLR accumulation: shapes do not agree: frames {x.shape}, frame_index {fi.shape}, "
                              f"means {means.shape}, inverse variances {inv_vars.shape}, posteriors {post.shape}")
        if r and (fi.min() < 0 or fi.max() >= x.shape[0]):
            raise SenoneError(f"fMLLR accumulation: frame indices span {fi.min()}..{fi.max()} for {x.shape[0]} frames")
        spread = scipy.sparse.csr_matrix((post, (fi, np.arange(r))), shape=(x.shape[0], r))
        used = np.unique(fi)
        spread = spread[used]
        self.accumulate_frames(x[used], spread @ (means * inv_vars), spread @ inv_vars)
        self.beta += float(post.sum())

    def accumulate(self, feats: np.ndarray, pdf_ids: np.ndarray, gmms: Sequence[DiagGmmParams],
                   weights: np.ndarray | None = None) -> float:
        """``gmm-est-fmllr``'s accumulation for frames ``feats`` (T × d) aligned to ``pdf_ids`` (T).

        The Gaussian posteriors come from ``gmms[pdf]`` evaluated on ``feats`` (the features the
        transform will be applied on top of); ``weights`` (T) are frame posteriors, 0 for silence
        in ``train_sat.sh``. Returns the batch's weighted log-likelihood.
        """
        x, ids, w = check_frames(feats, pdf_ids, weights, self.dim, len(gmms), "fMLLR accumulation")
        total = 0.0
        # Per pdf only the E-step and two small products; the (d+1)² work is one pass over the batch.
        mean_term = np.empty_like(x)
        invvar_term = np.empty_like(x)
        for pdf, idx, post, ll in weighted_posteriors(x, ids, gmms, w):
            gmm = gmms[pdf]
            total += ll
            mean_term[idx] = post @ np.asarray(gmm.means_invvars, dtype=np.float64)
            invvar_term[idx] = post @ np.asarray(gmm.inv_vars, dtype=np.float64)
            self.beta += float(post.sum())
        self.accumulate_frames(x, mean_term, invvar_term)
        self.tot_loglike += total
        self.num_frames += int(len(ids))
        return total

    def add(self, other: "FmllrStats") -> None:
        """Sum another shard's statistics for the same speaker into these."""
        if other.k.shape != self.k.shape:
            raise SenoneError(f"fMLLR statistics of dims {self.dim} and {other.dim} cannot be merged")
        self.beta += other.beta
        self.k += other.k
        self.g_packed += other.g_packed
        self.tot_loglike += other.tot_loglike
        self.num_frames += other.num_frames

    def save(self, path: str | Path) -> None:
        _save_npz(path, beta=self.beta, k=self.k, g_packed=self.g_packed, tot_loglike=self.tot_loglike,
                  num_frames=self.num_frames)

    @classmethod
    def load(cls, path: str | Path) -> "FmllrStats":
        z = _load_npz(path, ("beta", "k", "g_packed", "tot_loglike", "num_frames"), "fMLLR statistics")
        return cls(float(z["beta"]), z["k"], z["g_packed"], float(z["tot_loglike"]), int(z["num_frames"]))


@dataclass
class FmllrResult:
    matrix: np.ndarray  # (d, d+1)
    objf_history: list[float]  # auxiliary function at the start and after every sweep
    count: float
    updated: bool  # False: too little data (or singular statistics), the initial transform was kept
    reason: str = ""  # why not updated: "min_count" or "singular"

    @property
    def objf_impr_per_frame(self) -> float:
        return (self.objf_history[-1] - self.objf_history[0]) / max(self.count, 1e-10)


def identity_transform(dim: int) -> np.ndarray:
    """``[I 0]``: the d × (d+1) fMLLR transform that changes nothing (Kaldi's ``InitFmllr``)."""
    return np.hstack([np.eye(dim), np.zeros((dim, 1))])


def _objectives(w: np.ndarray, beta: np.ndarray, k: np.ndarray, g: np.ndarray) -> np.ndarray:
    """The auxiliary function of a stack of transforms (S × d × (d+1)) under their speakers' statistics."""
    d = w.shape[1]
    logdet = np.linalg.slogdet(w[:, :, :d])[1]
    return beta * logdet + np.einsum("sij,sij->s", w, k) - 0.5 * np.einsum("sij,sijk,sik->s", w, g, w)


def fmllr_objective(matrix: np.ndarray, stats: FmllrStats) -> float:
    """``β log|det A| + Σ_i (w_i k_iᵀ − ½ w_i G_i w_iᵀ)`` (Kaldi's ``FmllrAuxFuncDiagGmm``)."""
    w = np.asarray(matrix, dtype=np.float64)
    return float(_objectives(w[None], np.array([stats.beta]), stats.k[None], stats.G[None])[0])


def fmllr_logdet(matrix: np.ndarray) -> float:
    """``log|det A|`` of ``W = [A b]``: add it to every frame's log-likelihood on transformed features."""
    d = matrix.shape[0]
    return float(np.linalg.slogdet(np.asarray(matrix, dtype=np.float64)[:, :d])[1])


def _row_sweeps(w: np.ndarray, g_inv: np.ndarray, k: np.ndarray, beta: np.ndarray, num_iters: int,
                g: np.ndarray) -> list[np.ndarray]:
    """Gales' row updates (Kaldi's ``FmllrInnerUpdate``) for S speakers at once, in place on ``w``.

    The speakers are independent; stacking them turns S small solves per row into one batched call,
    which is what makes re-estimating every speaker five times per SAT stage cheap. Returns the
    auxiliary functions (S) before and after every sweep.
    """
    s, d = w.shape[0], w.shape[1]
    ginv_k = np.matmul(g_inv, k[..., None])[..., 0]  # (S, d, d+1): G_i⁻¹ k_i never changes
    unit = np.zeros((s, d, 1))
    p = np.zeros((s, d + 1))
    history = [_objectives(w, beta, k, g)]
    for _ in range(num_iters):
        for i in range(d):
            unit[:] = 0.0
            unit[:, i, 0] = 1.0
            # row i of A⁻ᵀ (column i of A⁻¹): the cofactor row up to the factor det A
            p[:, :d] = np.linalg.solve(w[:, :, :d], unit)[..., 0]
            ginv_p = np.matmul(g_inv[:, i], p[..., None])[..., 0]
            e1 = np.einsum("sj,sj->s", p, ginv_p)
            e2 = np.einsum("sj,sj->s", p, ginv_k[:, i])
            disc = np.sqrt(e2 * e2 + 4.0 * e1 * beta)
            a1 = (-e2 + disc) / (2.0 * e1)
            a2 = (-e2 - disc) / (2.0 * e1)

            def auxf(a: np.ndarray) -> np.ndarray:
                return beta * np.log(np.abs(a * e1 + e2)) - 0.5 * a * a * e1

            alpha = np.where(auxf(a1) > auxf(a2), a1, a2)
            w[:, i] = alpha[:, None] * ginv_p + ginv_k[:, i]
        history.append(_objectives(w, beta, k, g))
    return history


def estimate_fmllr_batch(stats: Mapping[str, FmllrStats], *, num_iters: int = KALDI_FMLLR_ITERS,
                         min_count: float = KALDI_FMLLR_MIN_COUNT,
                         init: Mapping[str, np.ndarray] | None = None) -> dict[str, FmllrResult]:
    """Row-by-row fMLLR (Kaldi's ``ComputeFmllrMatrixDiagGmmFull``) for many speakers together, silently.

    Each speaker starts from ``init[spk]`` (default the identity). A speaker below ``min_count``
    occupancy, or with singular statistics, keeps the starting transform (``updated=False`` and
    ``reason`` say so); :func:`report_fmllr` logs the outcome.
    """
    results: dict[str, FmllrResult] = {}
    todo: list[tuple[str, np.ndarray, np.ndarray, np.ndarray]] = []
    for spk, st in stats.items():
        d = st.dim
        w = identity_transform(d) if init is None or spk not in init else np.array(init[spk], dtype=np.float64)
        if w.shape != (d, d + 1):
            raise SenoneError(f"fMLLR estimation: initial transform {w.shape} of speaker {spk!r} does not fit "
                              f"{d}-dim statistics")
        if st.beta < min_count:
            results[spk] = FmllrResult(matrix=w, objf_history=[], count=st.beta, updated=False, reason="min_count")
            continue
        g = st.G
        try:
            g_inv = spd_inverse(g)
        except np.linalg.LinAlgError:
            results[spk] = FmllrResult(matrix=w, objf_history=[], count=st.beta, updated=False, reason="singular")
            continue
        todo.append((spk, w, g, g_inv))
    by_dim: dict[int, list] = {}
    for item in todo:
        by_dim.setdefault(item[1].shape[0], []).append(item)
    for group in by_dim.values():
        spks = [t[0] for t in group]
        w = np.stack([t[1] for t in group])
        g = np.stack([t[2] for t in group])
        g_inv = np.stack([t[3] for t in group])
        k = np.stack([stats[s].k for s in spks])
        beta = np.array([stats[s].beta for s in spks])
        history = np.array(_row_sweeps(w, g_inv, k, beta, num_iters, g))  # (sweeps+1, S)
        for j, spk in enumerate(spks):
            results[spk] = FmllrResult(matrix=w[j], objf_history=history[:, j].tolist(), count=float(beta[j]),
                                       updated=True)
    return {spk: results[spk] for spk in stats}


def report_fmllr(results: Mapping[str, FmllrResult], min_count: float, initial: bool = False) -> None:
    """Log each speaker's outcome (a warning for one that kept its transform) and a summary line."""
    start = "initial" if initial else "identity"
    for spk, r in results.items():
        who = f"speaker {spk}" if spk else "this speaker"
        if r.reason == "min_count":
            log.warning("fMLLR: %s has occupancy %.1f < fmllr_min_count %g; keeping the %s transform",
                        who, r.count, min_count, start)
        elif r.reason == "singular":
            log.warning("fMLLR: %s has singular statistics (%.1f frames; constant feature dims?); keeping the %s "
                        "transform", who, r.count, start)
        else:
            log.info("fMLLR: %s auxiliary function improvement %.4f per frame over %.1f frames", who,
                     r.objf_impr_per_frame, r.count)
    if len(results) > 1:
        kept = [s for s, r in results.items() if not r.updated]
        gain = sum(r.objf_history[-1] - r.objf_history[0] for r in results.values() if r.updated)
        count = sum(r.count for r in results.values() if r.updated)
        log.info("fMLLR: %d speakers, %d kept their initial transform; overall improvement %.4f per frame over "
                 "%.0f frames", len(results), len(kept), gain / max(count, 1e-10), count)


def estimate_fmllr(stats: FmllrStats, *, num_iters: int = KALDI_FMLLR_ITERS,
                   min_count: float = KALDI_FMLLR_MIN_COUNT, init: np.ndarray | None = None,
                   speaker: str = "") -> FmllrResult:
    """Gales' row-by-row fMLLR estimate (Kaldi's ``ComputeFmllrMatrixDiagGmmFull``) for one speaker.

    Starts from ``init`` (default the identity). Below ``min_count`` occupancy, or with singular
    statistics, the starting transform is returned with ``updated=False`` and a warning.
    """
    results = estimate_fmllr_batch({speaker: stats}, num_iters=num_iters, min_count=min_count,
                                   init=None if init is None else {speaker: init})
    report_fmllr(results, min_count, initial=init is not None)
    return results[speaker]


def estimate_fmllr_per_speaker(stats: Mapping[str, FmllrStats], *, num_iters: int = KALDI_FMLLR_ITERS,
                               min_count: float = KALDI_FMLLR_MIN_COUNT,
                               init: Mapping[str, np.ndarray] | None = None) -> dict[str, FmllrResult]:
    """:func:`estimate_fmllr` for every speaker (estimated together), with a summary line."""
    results = estimate_fmllr_batch(stats, num_iters=num_iters, min_count=min_count, init=init)
    report_fmllr(results, min_count, initial=init is not None)
    return results


def apply_fmllr(feats: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """``transform-feats`` with a d × (d+1) fMLLR transform: ``x Aᵀ + b`` (float32)."""
    m = np.asarray(matrix)
    x = np.asarray(feats)
    if x.ndim != 2 or m.shape != (x.shape[1], x.shape[1] + 1):
        raise SenoneError(f"apply_fmllr: a {m.shape} transform does not fit features of shape {x.shape} "
                          f"(needs {x.shape[-1]}×{x.shape[-1] + 1})")
    return apply_transform(x, m)


def speaker_fmllr(utt2spk: Mapping[str, str], transforms: Mapping[str, np.ndarray]
                  ) -> Callable[[str, np.ndarray], np.ndarray]:
    """``fn(utt, x)``: ``x`` through the fMLLR transform of ``utt``'s speaker, unchanged for a speaker
    without one (``transform-feats --utt2spk``: decoding and SAT training leave such speakers unadapted)."""
    def one(utt: str, x: np.ndarray) -> np.ndarray:
        w = transforms.get(utt2spk[utt])
        return x if w is None else apply_fmllr(x, w)

    return one


def compose_affine(outer: np.ndarray, inner: np.ndarray) -> np.ndarray:
    """``compose-transforms --b-is-affine=true outer inner``: apply ``inner`` first, then ``outer``.

    ``train_sat.sh`` updates a speaker's transform this way: the new estimate (made on features
    already through the old one) is the outer transform.
    """
    return compose_transforms(outer, inner, inner_is_affine=True)


def write_fmllr_transforms(path: str | Path, transforms: Mapping[str, np.ndarray]) -> None:
    """Write per-speaker transforms as a Kaldi float-matrix archive (``trans.ark``), atomically."""
    import kaldi_native_io

    with atomic_path(path) as tmp:
        with kaldi_native_io.FloatMatrixWriter(f"ark:{tmp}") as writer:
            for spk in sorted(transforms):
                writer[spk] = np.ascontiguousarray(transforms[spk], dtype=np.float32)


def read_fmllr_transforms(path: str | Path) -> dict[str, np.ndarray]:
    """Read a Kaldi float-matrix archive of per-speaker transforms (ours or Kaldi's ``trans.*``)."""
    import kaldi_native_io

    path = Path(path)
    if not path.is_file():
        raise SenoneError(f"{path}: fMLLR transforms not found; run the SAT stage that estimates them first")
    with kaldi_native_io.SequentialFloatMatrixReader(f"ark:{path}") as reader:
        return {spk: np.array(m, dtype=np.float64) for spk, m in reader}
