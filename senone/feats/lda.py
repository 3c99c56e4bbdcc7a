"""Linear discriminant analysis over spliced frames: Kaldi's ``acc-lda`` + ``est-lda``.

``train_lda_mllt.sh`` splices the CMVN-normalised *static* features ±3 frames (7 × 13 or 7 × 16
dims), labels every frame with the pdf-id of its alignment (silence frames weighted 0), and keeps
the 40 directions that best separate the pdfs. The statistics are what Kaldi's ``LdaEstimate``
keeps: per-class counts and sums plus one total scatter ``Σ w x xᵀ``, all additive, so shards
accumulated in separate processes are simply summed.

Estimation (Kaldi's math, written independently): with total covariance ``T``, between-class
covariance ``B = Σ_c (n_c/n) μ_c μ_cᵀ − μ μᵀ`` and within-class covariance ``W = T − B``, solve the
generalised eigenproblem ``B v = λ W v`` by whitening with the Cholesky factor ``W = L Lᵀ`` and
diagonalising ``L⁻¹ B L⁻ᵀ = U Λ Uᵀ``. The transform is ``Uᵀ L⁻¹``: in the projected space the
within-class covariance is the identity and the between-class covariance is ``Λ``, rows ordered
by decreasing ``λ``. As in Kaldi (without ``--remove-offset``) the result is linear, ``dim × D``,
with no offset column; ``remove_offset=True`` appends ``−M μ`` to make it ``dim × (D+1)``.

:func:`apply_transform` and :func:`compose_transforms` follow Kaldi's ``transform-feats`` and
``compose-transforms``: a ``d × D`` matrix is linear, a ``d × (D+1)`` matrix is affine (last
column the offset). :func:`write_kaldi_matrix` writes Kaldi's binary matrix format so Kaldi's own
tools can read ``final.mat``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.linalg
import scipy.sparse

from senone import SenoneError
from senone.io import atomic_path

log = logging.getLogger(__name__)

#: Kaldi's ``LdaEstimateOptions`` default output dimension.
DEFAULT_LDA_DIM = 40


@dataclass
class LdaStats:
    """Kaldi's ``LdaEstimate`` accumulators: per-class weight and sum, total second-order scatter."""

    counts: np.ndarray  # (C,)
    sums: np.ndarray  # (C, D)
    scatter: np.ndarray  # (D, D), Σ w x xᵀ over all frames

    @classmethod
    def zeros(cls, num_classes: int, dim: int) -> "LdaStats":
        if num_classes < 2 or dim < 1:
            raise SenoneError(f"LDA statistics need >= 2 classes and >= 1 dim, got {num_classes} classes, {dim} dims")
        return cls(np.zeros(num_classes), np.zeros((num_classes, dim)), np.zeros((dim, dim)))

    @property
    def num_classes(self) -> int:
        return int(self.counts.shape[0])

    @property
    def dim(self) -> int:
        return int(self.scatter.shape[0])

    @property
    def total_count(self) -> float:
        return float(self.counts.sum())

    def accumulate(self, feats: np.ndarray, pdf_ids: np.ndarray, weights: np.ndarray | None = None) -> None:
        """Add frames ``feats`` (T × D, already spliced) labelled with ``pdf_ids`` (T).

        ``weights`` (T) are per-frame posteriors, e.g. 0 for silence as ``weight-silence-post 0.0``
        does in ``train_lda_mllt.sh``. Several utterances may be concatenated into one call; the
        work is one sparse product for the class sums and one matrix product for the scatter.
        """
        x = np.asarray(feats, dtype=np.float64)
        ids = np.asarray(pdf_ids)
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise SenoneError(f"LDA accumulation: features of shape {x.shape}, statistics are {self.dim}-dim; "
                              "splice the same features the statistics were made for")
        if ids.shape != (x.shape[0],):
            raise SenoneError(f"LDA accumulation: {x.shape[0]} frames but {ids.shape} pdf-ids")
        if len(ids) and (ids.min() < 0 or ids.max() >= self.num_classes):
            raise SenoneError(f"LDA accumulation: pdf-ids span {ids.min()}..{ids.max()}, statistics hold "
                              f"{self.num_classes} classes; pass pdf-ids (not transition-ids) of this model")
        w = np.ones(len(ids)) if weights is None else np.asarray(weights, dtype=np.float64)
        if w.shape != ids.shape:
            raise SenoneError(f"LDA accumulation: {len(ids)} frames but {w.shape} weights")
        keep = w != 0.0
        if not keep.all():
            x, ids, w = x[keep], ids[keep], w[keep]
        if not len(ids):
            return
        self.counts += np.bincount(ids, weights=w, minlength=self.num_classes)
        onehot = scipy.sparse.csr_matrix((w, (ids, np.arange(len(ids)))), shape=(self.num_classes, len(ids)))
        self.sums += onehot @ x
        self.scatter += (x * w[:, None]).T @ x

    def add(self, other: "LdaStats") -> None:
        """Sum another shard's statistics into these (Kaldi's summing of ``lda.*.acc``)."""
        if other.counts.shape != self.counts.shape or other.scatter.shape != self.scatter.shape:
            raise SenoneError(f"LDA statistics of different shapes cannot be merged: {self.num_classes}×{self.dim} "
                              f"vs {other.num_classes}×{other.dim}")
        self.counts += other.counts
        self.sums += other.sums
        self.scatter += other.scatter

    def covariances(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(total covariance, between-class covariance, global mean), as Kaldi's ``GetStats``."""
        n = self.total_count
        if n <= 0:
            raise SenoneError("LDA estimation: no frames were accumulated (all weights zero?)")
        mean = self.sums.sum(axis=0) / n
        total = self.scatter / n - np.outer(mean, mean)
        seen = self.counts > 0
        class_means = self.sums[seen] / self.counts[seen, None]
        between = (class_means * (self.counts[seen, None] / n)).T @ class_means - np.outer(mean, mean)
        return _sym(total), _sym(between), mean

    def save(self, path: str | Path) -> None:
        _save_npz(path, counts=self.counts, sums=self.sums, scatter=self.scatter)

    @classmethod
    def load(cls, path: str | Path) -> "LdaStats":
        z = _load_npz(path, ("counts", "sums", "scatter"), "LDA statistics")
        return cls(z["counts"], z["sums"], z["scatter"])


@dataclass
class LdaResult:
    """``est-lda``'s outputs: the reduced matrix, the full square one, and the eigenvalues."""

    matrix: np.ndarray  # (dim, D), or (dim, D+1) with remove_offset
    full_matrix: np.ndarray  # (D, D): all directions, Kaldi's --write-full-matrix
    eigenvalues: np.ndarray  # (D,) between-class variances in the whitened space, decreasing
    count: float


def estimate_lda(stats: LdaStats, dim: int = DEFAULT_LDA_DIM, *, allow_large_dim: bool = False,
                 within_class_factor: float = 1.0, remove_offset: bool = False) -> LdaResult:
    """``est-lda``: the ``dim × D`` LDA matrix (projected within-class covariance = I).

    ``dim`` must be below the number of classes (the between-class covariance has rank at most
    C−1) unless ``allow_large_dim``. ``within_class_factor`` ≠ 1 rescales each output direction
    so its total variance becomes ``factor + λ`` instead of ``1 + λ`` (Kaldi's deprecated option,
    kept for parity; the GMM recipes leave it at 1).
    """
    d_in = stats.dim
    if dim < 1 or dim > d_in:
        raise SenoneError(f"LDA dim {dim} must lie in 1..{d_in} (the spliced feature dimension)")
    if dim >= stats.num_classes and not allow_large_dim:
        raise SenoneError(f"LDA dim {dim} >= {stats.num_classes} classes: the between-class covariance has rank "
                          "< dim; lower the LDA dim or pass allow_large_dim")
    total, between, mean = stats.covariances()
    within = _sym(total - between)
    try:
        chol = np.linalg.cholesky(within)
    except np.linalg.LinAlgError:
        # Kaldi's recovery: smooth the within-class covariance by 1e-3 of its mean diagonal.
        smooth = 1.0e-3 * np.trace(within) / d_in
        log.warning("LDA: within-class covariance not positive definite (constant feature dims?); "
                    "smoothing its diagonal by %.3g", smooth)
        try:
            chol = np.linalg.cholesky(within + smooth * np.eye(d_in))
        except np.linalg.LinAlgError:
            raise SenoneError("LDA: within-class covariance is singular even after smoothing; check the features "
                              "(NaNs or all-constant dims) and the alignments") from None
    chol_inv = scipy.linalg.solve_triangular(chol, np.eye(d_in), lower=True)
    eigvals, eigvecs = np.linalg.eigh(_sym(chol_inv @ between @ chol_inv.T))
    order = np.argsort(eigvals)[::-1]
    eigvals, eigvecs = eigvals[order], eigvecs[:, order]
    full = eigvecs.T @ chol_inv
    # Eigenvector signs are arbitrary; pin them (largest-magnitude entry positive) for reproducibility.
    pivots = np.abs(full).argmax(axis=1)
    full *= np.sign(full[np.arange(d_in), pivots])[:, None]
    log.info("LDA: %.0f frames, %d classes; sum of eigenvalues %.4g, of the %d kept %.4g",
             stats.total_count, int((stats.counts > 0).sum()), eigvals.sum(), dim, eigvals[:dim].sum())
    if within_class_factor != 1.0:
        scale = np.sqrt((within_class_factor + eigvals) / (1.0 + eigvals))
        full = full * scale[:, None]
    matrix = full[:dim].copy()
    if remove_offset:
        matrix = np.hstack([matrix, -(matrix @ mean)[:, None]])
    return LdaResult(matrix=matrix, full_matrix=full, eigenvalues=eigvals, count=stats.total_count)


def apply_transform(feats: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Kaldi's ``transform-feats``: ``x Mᵀ`` for ``d × D``, ``x M[:, :D]ᵀ + M[:, D]`` for ``d × (D+1)``.

    Returns float32 (T × d).
    """
    x = np.asarray(feats)
    m = np.asarray(matrix, dtype=np.float64)
    if x.ndim != 2 or m.ndim != 2:
        raise SenoneError(f"apply_transform: need (frames × dims) features and a 2-D matrix, got {x.shape}, {m.shape}")
    d_in = x.shape[1]
    if m.shape[1] == d_in:
        out = x @ m.T
    elif m.shape[1] == d_in + 1:
        out = x @ m[:, :d_in].T + m[:, d_in]
    else:
        raise SenoneError(f"apply_transform: a {m.shape[0]}×{m.shape[1]} transform does not fit {d_in}-dim features "
                          f"(needs {d_in} or {d_in + 1} columns); was it estimated on differently spliced features?")
    return np.ascontiguousarray(out, dtype=np.float32)


def compose_transforms(outer: np.ndarray, inner: np.ndarray, inner_is_affine: bool | None = None) -> np.ndarray:
    """Kaldi's ``compose-transforms outer inner``: the transform that applies ``inner`` then ``outer``.

    Either may be linear (``d × D``) or affine (``d × (D+1)``); the result is affine if either is.
    E.g. the LDA+MLLT matrix after an MLLT update is ``compose_transforms(A, lda_mllt)`` (= ``A · M``).
    Whether ``inner`` is affine matters only when ``outer`` is affine (Kaldi asks via
    ``--b-is-affine``): left as ``None``, a square ``inner`` is linear and a ``d × (d+1)`` one
    (fMLLR) affine; any other shape must be stated.
    """
    a = np.asarray(outer, dtype=np.float64)
    b = np.asarray(inner, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2:
        raise SenoneError(f"compose_transforms: need 2-D matrices, got {a.shape} and {b.shape}")
    if a.shape[1] == b.shape[0]:
        return a @ b
    if a.shape[1] != b.shape[0] + 1:
        raise SenoneError(f"compose_transforms: a {a.shape[0]}×{a.shape[1]} transform cannot follow one with "
                          f"{b.shape[0]} outputs")
    if inner_is_affine is None:
        if b.shape[1] not in (b.shape[0], b.shape[0] + 1):
            raise SenoneError(f"compose_transforms: is the {b.shape[0]}×{b.shape[1]} inner transform affine? "
                              "pass inner_is_affine=True/False")
        inner_is_affine = b.shape[1] == b.shape[0] + 1
    rows, cols = b.shape
    if inner_is_affine:
        ext = np.zeros((rows + 1, cols))
        ext[:rows] = b
        ext[rows, cols - 1] = 1.0
    else:
        ext = np.zeros((rows + 1, cols + 1))
        ext[:rows, :cols] = b
        ext[rows, cols] = 1.0
    return a @ ext


def write_kaldi_matrix(path: str | Path, matrix: np.ndarray) -> None:
    """Write a matrix in Kaldi's binary format (readable by ``transform-feats``, ``copy-matrix``), atomically."""
    import kaldi_native_io

    with atomic_path(path) as tmp:
        kaldi_native_io.FloatMatrix(np.ascontiguousarray(matrix, dtype=np.float32)).write(str(tmp), True)


def read_kaldi_matrix(path: str | Path) -> np.ndarray:
    """Read a Kaldi matrix file (binary or text), e.g. ``final.mat`` from Kaldi or :func:`write_kaldi_matrix`."""
    import kaldi_native_io

    path = Path(path)
    if not path.is_file():
        raise SenoneError(f"{path}: transform matrix not found; run the stage that estimates it first")
    return np.array(kaldi_native_io.FloatMatrix.read(str(path)).numpy(), dtype=np.float64)


def _sym(m: np.ndarray) -> np.ndarray:
    return 0.5 * (m + m.T)


def _save_npz(path: str | Path, **arrays: np.ndarray | float) -> None:
    path = Path(path)
    if path.suffix != ".npz":
        raise SenoneError(f"{path}: statistics are written as .npz; give a path ending in .npz")
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **{k: np.asarray(v) for k, v in arrays.items()})


def _load_npz(path: str | Path, keys: tuple[str, ...], what: str) -> dict[str, np.ndarray]:
    path = Path(path)
    if not path.is_file():
        raise SenoneError(f"{path}: {what} not found; run the accumulation step first")
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: np.array(z[k]) for k in keys}
    except (OSError, KeyError, ValueError) as e:
        raise SenoneError(f"{path}: not a {what} file ({e}); re-run the accumulation step") from e
