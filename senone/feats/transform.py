"""The feature pipeline of a GMM stage, recorded in its directory so training and decoding agree.

Kaldi's stages differ in what they feed the GMMs: mono and tri1 (``train_deltas.sh``) use
``apply-cmvn | add-deltas``; LDA+MLLT (``train_lda_mllt.sh``) uses ``apply-cmvn | splice-feats
--left-context=3 --right-context=3 | transform-feats final.mat``, where ``final.mat`` is the LDA
matrix with every MLLT update composed onto it. Kaldi's ``decode.sh`` tells the two apart by the
presence of ``final.mat`` in the model directory; :func:`load_stage_features` does the same, and
``feature_pipeline.json`` says in words which pipeline a stage uses (splice context, dimensions).

Training computes its features with :meth:`StageFeatures.apply`, the same function decoding uses,
from a matrix rounded to float32 exactly as it is stored in ``final.mat`` (Kaldi's float matrix
format), so the two give bit-identical features.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Literal

import numpy as np

from senone import SenoneError
from senone.feats.cmvn import CmvnStats, load_gmm_features
from senone.feats.deltas import add_deltas, splice
from senone.feats.lda import apply_transform, read_kaldi_matrix
from senone.io import write_json

log = logging.getLogger(__name__)

PIPELINE_FILE = "feature_pipeline.json"
MATRIX_FILE = "final.mat"

#: Kaldi's ``splice_opts`` in train_lda_mllt.sh.
DEFAULT_SPLICE = 3


def as_stored(matrix: np.ndarray) -> np.ndarray:
    """The matrix as ``final.mat`` holds it (float32 values, returned as float64 for the maths)."""
    return np.asarray(matrix, dtype=np.float32).astype(np.float64)


@dataclass
class StageFeatures:
    """What a stage's GMMs see, from CMVN-normalised static features.

    ``kind="deltas"``: static → Δ (+ΔΔ, ``delta_order``) — mono, tri1.
    ``kind="lda"``: static → splice ±``splice_left``/``splice_right`` → ``matrix`` (LDA·MLLT) — tri2.
    ``cmvn_norm_vars`` is the CMVN mode the static features were normalised with.
    """

    kind: Literal["deltas", "lda"] = "deltas"
    cmvn_norm_vars: bool = False
    delta_order: int = 2
    delta_window: int = 2
    splice_left: int = DEFAULT_SPLICE
    splice_right: int = DEFAULT_SPLICE
    matrix: np.ndarray | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.kind not in ("deltas", "lda"):
            raise SenoneError(f"feature pipeline kind {self.kind!r}: expected 'deltas' or 'lda'")
        if self.kind == "lda":
            if self.matrix is None:
                raise SenoneError("an LDA feature pipeline needs its matrix (final.mat)")
            self.matrix = as_stored(self.matrix)

    @classmethod
    def lda(cls, matrix: np.ndarray, splice_context: int = DEFAULT_SPLICE, cmvn_norm_vars: bool = False
            ) -> "StageFeatures":
        return cls(kind="lda", cmvn_norm_vars=cmvn_norm_vars, splice_left=splice_context,
                   splice_right=splice_context, matrix=matrix)

    @property
    def splice_width(self) -> int:
        return self.splice_left + self.splice_right + 1

    def output_dim(self, static_dim: int) -> int:
        if self.kind == "deltas":
            return static_dim * (self.delta_order + 1)
        return int(self.matrix.shape[0])

    def spliced(self, static: np.ndarray) -> np.ndarray:
        """``splice-feats`` of CMVN-normalised static features (the LDA/MLLT input space)."""
        return splice(np.asarray(static, dtype=np.float32), self.splice_left, self.splice_right)

    def apply(self, static: np.ndarray) -> np.ndarray:
        """The stage's features (float32, T × output dim) from CMVN-normalised static features (T × D)."""
        static = np.asarray(static, dtype=np.float32)
        if self.kind == "deltas":
            return np.ascontiguousarray(add_deltas(static, order=self.delta_order, window=self.delta_window),
                                        dtype=np.float32)
        cols = self.matrix.shape[1]
        if static.ndim != 2 or static.shape[1] * self.splice_width not in (cols, cols - 1):
            raise SenoneError(f"LDA feature pipeline: a {self.matrix.shape[0]}×{cols} final.mat does not fit "
                              f"static features of shape {static.shape} spliced ±{self.splice_left}; decode with "
                              "the features the stage was trained on")
        return apply_transform(self.spliced(static), self.matrix)

    def apply_all(self, static_feats: Iterable[tuple[str, np.ndarray]]) -> dict[str, np.ndarray]:
        return {utt: self.apply(x) for utt, x in static_feats}

    def describe(self, static_dim: int) -> dict:
        """The JSON record of ``feature_pipeline.json``."""
        d = {"kind": self.kind, "cmvn_norm_vars": self.cmvn_norm_vars, "static_dim": static_dim,
             "output_dim": self.output_dim(static_dim)}
        if self.kind == "deltas":
            d |= {"delta_order": self.delta_order, "delta_window": self.delta_window,
                  "kaldi": "apply-cmvn | add-deltas"}
        else:
            d |= {"splice_left": self.splice_left, "splice_right": self.splice_right,
                  "spliced_dim": static_dim * self.splice_width, "matrix": MATRIX_FILE,
                  "matrix_shape": list(self.matrix.shape),
                  "kaldi": f"apply-cmvn | splice-feats --left-context={self.splice_left} "
                           f"--right-context={self.splice_right} | transform-feats {MATRIX_FILE}"}
        return d


def write_feature_pipeline(stage_dir: str | Path, pipeline: StageFeatures, static_dim: int) -> None:
    """Write ``feature_pipeline.json`` (atomically). The matrix itself goes to ``final.mat`` separately."""
    write_json(Path(stage_dir) / PIPELINE_FILE, pipeline.describe(static_dim))


def stage_features(stage_dir: str | Path, feat_conf: dict | None = None) -> StageFeatures:
    """The pipeline a trained stage uses: LDA if ``final.mat`` is there (as Kaldi's decode.sh decides),
    else Δ+ΔΔ from ``feat_conf`` (``cmvn_norm_vars``, ``delta_order``).

    Where ``feature_pipeline.json`` exists its settings win over ``feat_conf`` (the model was
    trained with them); a disagreement is logged.
    """
    stage_dir = Path(stage_dir)
    feat_conf = feat_conf or {}
    record: dict = {}
    rec_path = stage_dir / PIPELINE_FILE
    if rec_path.is_file():
        try:
            record = json.loads(rec_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise SenoneError(f"{rec_path}: not valid JSON ({exc}); re-run the stage's training") from exc
    norm_vars = bool(feat_conf.get("cmvn_norm_vars", False))
    if "cmvn_norm_vars" in record and bool(record["cmvn_norm_vars"]) != norm_vars:
        log.warning("%s: trained with cmvn_norm_vars=%s, configuration says %s; using the trained setting",
                    rec_path, record["cmvn_norm_vars"], norm_vars)
        norm_vars = bool(record["cmvn_norm_vars"])
    mat_path = stage_dir / MATRIX_FILE
    if mat_path.is_file():
        if record and record.get("kind") != "lda":
            raise SenoneError(f"{stage_dir}: has {MATRIX_FILE} but {PIPELINE_FILE} says kind "
                              f"{record.get('kind')!r}; remove the stale file and re-run the stage")
        left = int(record.get("splice_left", DEFAULT_SPLICE))
        right = int(record.get("splice_right", left))
        return StageFeatures(kind="lda", cmvn_norm_vars=norm_vars, splice_left=left, splice_right=right,
                             matrix=read_kaldi_matrix(mat_path))
    if record.get("kind") == "lda":
        raise SenoneError(f"{mat_path}: missing, but {PIPELINE_FILE} says the stage uses an LDA matrix; "
                          "re-run the stage's training")
    order = int(record.get("delta_order", feat_conf.get("delta_order", 2)))
    window = int(record.get("delta_window", feat_conf.get("delta_window", 2)))
    return StageFeatures(kind="deltas", cmvn_norm_vars=norm_vars, delta_order=order, delta_window=window)


def iter_static_features(cuts: Iterable, cmvn_stats: dict[str, CmvnStats], norm_vars: bool = False
                         ) -> Iterable[tuple[str, np.ndarray]]:
    """``(cut_id, CMVN-normalised static features)``: the common input of every pipeline."""
    for cut in cuts:
        yield cut.id, load_gmm_features(cut, cmvn_stats, deltas=False, norm_vars=norm_vars)


def load_stage_features(stage_dir: str | Path, cuts: Iterable, cmvn_stats: dict[str, CmvnStats],
                        feat_conf: dict | None = None) -> dict[str, np.ndarray]:
    """Every cut's features as the stage in ``stage_dir`` was trained on them (float32, in memory).

    Decoding calls this instead of ``iter_gmm_features`` so an LDA+MLLT stage gets its
    spliced, transformed features and a Δ+ΔΔ stage its deltas.
    """
    pipeline = stage_features(stage_dir, feat_conf)
    feats = pipeline.apply_all(iter_static_features(cuts, cmvn_stats, pipeline.cmvn_norm_vars))
    if feats:
        dim = next(iter(feats.values())).shape[1]
        log.info("%d utterances through the %s pipeline of %s (%d dims)", len(feats), pipeline.kind, stage_dir, dim)
    return feats
