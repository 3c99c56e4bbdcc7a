"""Maximum-likelihood linear transform (global semi-tied covariance): ``gmm-acc-mllt`` + ``est-mllt``.

Diagonal Gaussians assume uncorrelated dimensions; after LDA they are not. MLLT finds one square
matrix ``A`` such that the diagonal GMMs fit ``A x`` as well as possible (Gales 1999, "Semi-tied
covariance matrices"). With ``x`` in the current feature space, Gaussian ``g`` with mean ``μ_g``
and inverse variances ``1/σ²_g``, and posteriors ``γ``, the auxiliary function is

    Q(A) = β log|det A| − ½ Σ_i a_i G_i a_iᵀ,   G_i = Σ_{t,g} γ_tg (1/σ²_gi) (x_t − μ_g)(x_t − μ_g)ᵀ,

``β = Σ γ``, ``a_i`` the rows of ``A``. Each row has a closed-form maximiser given the others:
``a_i ∝ c_i G_i⁻¹`` with ``c_i`` the cofactor row of ``A`` and scale ``sqrt(β / (c_i G_i⁻¹ c_iᵀ))``;
sweeping the rows repeatedly (Kaldi: 200 sweeps, starting from the identity) never decreases Q.

As in ``train_lda_mllt.sh``, the statistics are gathered on the *current* features (already
through the current LDA+MLLT matrix ``M``) with the current model; the estimated ``A`` then gives
the new matrix ``A · M`` (:func:`senone.feats.lda.compose_transforms`) and the model means are
moved with it (``gmm-transform-means``, :func:`transform_means`); variances are left to the next
re-estimation pass, exactly as Kaldi does.

Accumulation is vectorised per pdf: with ``post`` (N × G) the frame's Gaussian posteriors, the
per-Gaussian scatter ``Σ_t γ_tg x_t x_tᵀ`` for all G Gaussians is one matrix product with the
packed (upper-triangular) outer products of the frames, and the centred scatters are contracted
with the inverse variances into the ``G_i`` in one more product.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Protocol, Sequence

import numpy as np

from senone import SenoneError
from senone.feats.lda import _load_npz, _save_npz

log = logging.getLogger(__name__)

#: Kaldi's ``MlltAccs::Update`` sweeps the rows this many times.
KALDI_MLLT_ITERS = 200

#: Frames per chunk when forming packed outer products (bounds memory to ~chunk × D²/2 doubles).
_CHUNK = 4096


class DiagGmmParams(Protocol):
    """One pdf's diagonal GMM as Kaldi stores it (``senone.gmm.stats.GmmParams`` fits).

    ``gconsts`` (G) include the log weights; ``means_invvars`` and ``inv_vars`` are G × D.
    """

    gconsts: np.ndarray
    means_invvars: np.ndarray
    inv_vars: np.ndarray


def component_posteriors(gmm: DiagGmmParams, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian posteriors (N × G) of frames ``x`` (N × D) under ``gmm`` and each frame's log-likelihood (N)."""
    ll = (np.asarray(gmm.gconsts, dtype=np.float64) + x @ np.asarray(gmm.means_invvars, dtype=np.float64).T
          - 0.5 * ((x * x) @ np.asarray(gmm.inv_vars, dtype=np.float64).T))
    top = ll.max(axis=1, keepdims=True)
    post = np.exp(ll - top)
    norm = post.sum(axis=1, keepdims=True)
    post /= norm
    return post, (np.log(norm) + top)[:, 0]


def frames_by_pdf(pdf_ids: np.ndarray) -> Iterator[tuple[int, np.ndarray]]:
    """``(pdf, frame indices)`` for each pdf present in ``pdf_ids``, in increasing pdf order."""
    pdf_ids = np.asarray(pdf_ids)
    order = np.argsort(pdf_ids, kind="stable")
    uniq, starts, counts = np.unique(pdf_ids[order], return_index=True, return_counts=True)
    for pdf, start, count in zip(uniq.tolist(), starts.tolist(), counts.tolist()):
        yield pdf, order[start:start + count]


def weighted_posteriors(x: np.ndarray, pdf_ids: np.ndarray, gmms: Sequence[DiagGmmParams],
                        weights: np.ndarray | None) -> Iterator[tuple[int, np.ndarray, np.ndarray, float]]:
    """The E-step MLLT and fMLLR share: per pdf present, ``(pdf, frame indices, Gaussian posteriors
    scaled by the frame weights, weighted log-likelihood of those frames)``."""
    for pdf, idx in frames_by_pdf(pdf_ids):
        post, ll = component_posteriors(gmms[pdf], x[idx])
        if weights is not None:
            post *= weights[idx, None]
            ll = ll * weights[idx]
        yield pdf, idx, post, float(ll.sum())


def gmm_means(gmm: DiagGmmParams) -> np.ndarray:
    """Means (G × D) of a GMM stored as ``means_invvars`` and ``inv_vars``."""
    return np.asarray(gmm.means_invvars, dtype=np.float64) / np.asarray(gmm.inv_vars, dtype=np.float64)


@functools.lru_cache(maxsize=8)
def _triu(dim: int) -> tuple[np.ndarray, np.ndarray]:
    return np.triu_indices(dim)


def packed_outer(x: np.ndarray) -> np.ndarray:
    """Row-wise upper-triangular outer products: N × D(D+1)/2 (``x_j x_k`` for ``j <= k``, row-major,
    the order of ``np.triu_indices``). Built one block of columns per ``j`` (twice as fast as fancy
    indexing, which gathers every column twice)."""
    n, d = x.shape
    out = np.empty((n, d * (d + 1) // 2), dtype=np.result_type(x.dtype, np.float64))
    pos = 0
    for j in range(d):
        np.multiply(x[:, j:j + 1], x[:, j:], out=out[:, pos:pos + d - j])
        pos += d - j
    return out


def unpack_symmetric(packed: np.ndarray, dim: int) -> np.ndarray:
    """(..., D(D+1)/2) packed upper triangles → (..., D, D) symmetric matrices."""
    iu, ju = _triu(dim)
    out = np.zeros(packed.shape[:-1] + (dim, dim))
    out[..., iu, ju] = packed
    out[..., ju, iu] = packed
    return out


def spd_inverse(mats: np.ndarray) -> np.ndarray:
    """Inverses of a stack of symmetric positive-definite matrices via Cholesky (raises LinAlgError if not PD)."""
    chol_inv = np.linalg.inv(np.linalg.cholesky(mats))
    return np.swapaxes(chol_inv, -1, -2) @ chol_inv


def check_frames(feats: np.ndarray, pdf_ids: np.ndarray, weights: np.ndarray | None, dim: int,
                 num_pdfs: int, what: str) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Validate one batch; drop zero-weight frames (silence at weight 0 costs nothing)."""
    x = np.asarray(feats, dtype=np.float64)
    ids = np.asarray(pdf_ids)
    if x.ndim != 2 or x.shape[1] != dim:
        raise SenoneError(f"{what}: features of shape {x.shape}, statistics are {dim}-dim; "
                          "feed the features in the space the model was trained on")
    if ids.shape != (x.shape[0],):
        raise SenoneError(f"{what}: {x.shape[0]} frames but {ids.shape} pdf-ids")
    if len(ids) and (ids.min() < 0 or ids.max() >= num_pdfs):
        raise SenoneError(f"{what}: pdf-ids span {ids.min()}..{ids.max()} but the model has {num_pdfs} pdfs; "
                          "pass pdf-ids (not transition-ids) of this model")
    if weights is None:
        return x, ids, None
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != ids.shape:
        raise SenoneError(f"{what}: {len(ids)} frames but {w.shape} weights")
    keep = w != 0.0
    return x[keep], ids[keep], w[keep]


@dataclass
class MlltStats:
    """Kaldi's ``MlltAccs``: the count β and the D matrices G_i (stored packed, D × D(D+1)/2)."""

    beta: float
    g_packed: np.ndarray
    tot_loglike: float = 0.0
    num_frames: int = 0
    _dim: int = field(default=0, repr=False)

    @classmethod
    def zeros(cls, dim: int) -> "MlltStats":
        if dim < 1:
            raise SenoneError(f"MLLT statistics need dim >= 1, got {dim}")
        return cls(0.0, np.zeros((dim, dim * (dim + 1) // 2)), _dim=dim)

    def __post_init__(self) -> None:
        if not self._dim:
            self._dim = int(self.g_packed.shape[0])

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def G(self) -> np.ndarray:
        """The full symmetric G_i matrices, D × D × D (``G[i]`` belongs to output row i)."""
        return unpack_symmetric(self.g_packed, self.dim)

    def accumulate_pdf(self, x: np.ndarray, post: np.ndarray, means: np.ndarray, inv_vars: np.ndarray) -> None:
        """Add frames ``x`` (N × D) of one pdf with Gaussian posteriors ``post`` (N × G).

        ``post`` already includes any frame weight (Kaldi multiplies the Gaussian posteriors by the
        frame's state posterior). ``means``/``inv_vars`` (G × D) are that pdf's Gaussians.
        This is the hook for a trainer that already has the posteriors from its E-step.
        """
        x = np.asarray(x, dtype=np.float64)
        post = np.asarray(post, dtype=np.float64)
        means = np.asarray(means, dtype=np.float64)
        inv_vars = np.asarray(inv_vars, dtype=np.float64)
        n, d = x.shape
        if d != self.dim or post.shape != (n, means.shape[0]) or means.shape != inv_vars.shape or means.shape[1] != d:
            raise SenoneError(f"MLLT accumulation: shapes do not agree: frames {x.shape}, posteriors {post.shape}, "
                              f"means {means.shape}, inverse variances {inv_vars.shape}, stats {self.dim}-dim")
        iu, ju = _triu(d)
        occ = post.sum(axis=0)  # (G,)
        first = post.T @ x  # (G, D): Σ_t γ x
        second = np.zeros((means.shape[0], len(iu)))
        for s in range(0, n, _CHUNK):
            second += post[s:s + _CHUNK].T @ packed_outer(x[s:s + _CHUNK])
        # Σ_t γ (x−μ)(x−μ)ᵀ = S − s μᵀ − μ sᵀ + occ μ μᵀ, packed
        centred = (second - first[:, iu] * means[:, ju] - means[:, iu] * first[:, ju]
                   + occ[:, None] * means[:, iu] * means[:, ju])
        self.g_packed += inv_vars.T @ centred
        self.beta += float(occ.sum())

    def accumulate(self, feats: np.ndarray, pdf_ids: np.ndarray, gmms: Sequence[DiagGmmParams],
                   weights: np.ndarray | None = None) -> float:
        """``gmm-acc-mllt`` for frames ``feats`` (T × D) aligned to ``pdf_ids`` (T), with the E-step.

        ``gmms[pdf]`` is each pdf's current GMM; ``weights`` (T) are frame posteriors (0 for
        silence in ``train_lda_mllt.sh``). Returns the batch's weighted log-likelihood.
        """
        x, ids, w = check_frames(feats, pdf_ids, weights, self.dim, len(gmms), "MLLT accumulation")
        total = 0.0
        for pdf, idx, post, ll in weighted_posteriors(x, ids, gmms, w):
            total += ll
            self.accumulate_pdf(x[idx], post, gmm_means(gmms[pdf]), gmms[pdf].inv_vars)
        self.tot_loglike += total
        self.num_frames += int(len(ids))
        return total

    def add(self, other: "MlltStats") -> None:
        """Sum another shard's statistics into these (Kaldi's ``est-mllt`` reading several accs)."""
        if other.g_packed.shape != self.g_packed.shape:
            raise SenoneError(f"MLLT statistics of dims {self.dim} and {other.dim} cannot be merged")
        self.beta += other.beta
        self.g_packed += other.g_packed
        self.tot_loglike += other.tot_loglike
        self.num_frames += other.num_frames

    def save(self, path: str | Path) -> None:
        _save_npz(path, beta=self.beta, g_packed=self.g_packed, tot_loglike=self.tot_loglike,
                  num_frames=self.num_frames)

    @classmethod
    def load(cls, path: str | Path) -> "MlltStats":
        z = _load_npz(path, ("beta", "g_packed", "tot_loglike", "num_frames"), "MLLT statistics")
        return cls(float(z["beta"]), z["g_packed"], float(z["tot_loglike"]), int(z["num_frames"]))


@dataclass
class MlltResult:
    matrix: np.ndarray  # (D, D), to be applied after the current transform
    objf_history: list[float]  # auxiliary function at the start and after every sweep
    count: float

    @property
    def objf_impr_per_frame(self) -> float:
        return (self.objf_history[-1] - self.objf_history[0]) / max(self.count, 1e-10)


def mllt_objective(matrix: np.ndarray, stats: MlltStats) -> float:
    """The MLLT auxiliary function ``β log|det A| − ½ Σ_i a_i G_i a_iᵀ``."""
    a = np.asarray(matrix, dtype=np.float64)
    _sign, logdet = np.linalg.slogdet(a)
    quad = np.einsum("ij,ijk,ik->", a, stats.G, a)
    return float(stats.beta * logdet - 0.5 * quad)


def estimate_mllt(stats: MlltStats, num_iters: int = KALDI_MLLT_ITERS, init: np.ndarray | None = None) -> MlltResult:
    """``est-mllt``: Gales' row-by-row maximisation of the auxiliary function, from ``init`` (identity)."""
    d = stats.dim
    if stats.beta < 10 * d:
        log.warning("MLLT: %s count %.1f for %d dims", "very small" if stats.beta > 2 * d else "insufficient",
                    stats.beta, d)
    if stats.beta <= 0:
        raise SenoneError("MLLT estimation: no frames were accumulated (all weights zero?)")
    a = np.eye(d) if init is None else np.array(init, dtype=np.float64)
    if a.shape != (d, d):
        raise SenoneError(f"MLLT estimation: initial matrix {a.shape} does not fit {d}-dim statistics")
    g = stats.G
    try:
        g_inv = spd_inverse(g)
    except np.linalg.LinAlgError:
        raise SenoneError(f"MLLT estimation: a G matrix is singular ({stats.beta:.0f} frames); accumulate more "
                          "data or check for constant feature dimensions") from None
    history = [mllt_objective(a, stats)]
    for it in range(num_iters):
        for i in range(d):
            cof = np.linalg.inv(a)[:, i]  # row i of A⁻ᵀ: the cofactor row up to a positive factor det A
            direction = g_inv[i] @ cof
            a[i] = direction * np.sqrt(stats.beta / float(cof @ direction))
        history.append(mllt_objective(a, stats))
        if it < 10 or it % 10 == 0:
            log.debug("MLLT sweep %d: auxf %.6f per frame", it, history[-1] / stats.beta)
    log.info("MLLT: auxiliary function improvement %.4f per frame over %.0f frames",
             (history[-1] - history[0]) / stats.beta, stats.beta)
    return MlltResult(matrix=a, objf_history=history, count=stats.beta)


def transform_means(means: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """``gmm-transform-means``: ``μ' = A μ`` (``+ b`` for a ``D × (D+1)`` affine matrix), for G × D means."""
    mu = np.asarray(means, dtype=np.float64)
    m = np.asarray(matrix, dtype=np.float64)
    d = mu.shape[-1]
    if m.shape == (d, d):
        return mu @ m.T
    if m.shape == (d, d + 1):
        return mu @ m[:, :d].T + m[:, d]
    raise SenoneError(f"transform_means: a {m.shape[0]}×{m.shape[1]} matrix cannot transform {d}-dim means")


def transform_am_means(am, matrix: np.ndarray) -> None:
    """``gmm-transform-means`` on a kaldi-hmm-gmm ``AmDiagGmm`` in place (means moved, gconsts recomputed).

    The variances stay as they are, as in Kaldi; the next accumulation/update pass re-estimates them.
    """
    for pdf in range(am.num_pdfs):
        gmm = am.get_pdf(pdf)  # a reference into the model
        gmm.set_means(transform_means(np.asarray(gmm.means), matrix).astype(np.float32))
    am.compute_gconsts()
