"""Speaker-adapted GMM features as extra network inputs (Kaldi nnet1's ``make_fmllr_feats.sh``).

A hybrid network sees no speaker adaptation of its own: the GMM system it learns from does (SAT,
per-speaker fMLLR), and on synth_zh that adaptation is worth 1-2 CER points between tri2 and tri3.
Kaldi's nnet1 recipes (``local/nnet/run_dnn.sh`` of hkust, wsj, swbd) therefore train their DNNs on
the SAT stage's features: CMVN → splice ±3 → LDA·MLLT (``final.mat``) → the speaker's fMLLR
transform, with the training speakers' transforms from SAT training and the dev/test speakers'
from the SAT stage's own two-pass decode (``--transform-dir``).

Here those 40 adapted values per frame are appended to the network's log-mel input as non-spectral
features (after the pitch): the patch layers of a CNN/CLSTM keep their frequency axis, the first
frame layer sees the adapted features next to the pooled patches. Frames are one for one with the
log-mel frames (the same framing), and the pipeline is the one decoding uses
(:func:`senone.feats.transform.stage_features`, :func:`senone.feats.fmllr.apply_fmllr`), so the
network sees at test time exactly what it was trained on.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np

from senone import SenoneError
from senone.feats.cmvn import CmvnStats, speaker_of
from senone.feats.fmllr import read_fmllr_transforms, speaker_fmllr
from senone.feats.source import CutFeatures, MappedFeatures
from senone.feats.transform import stage_features

log = logging.getLogger(__name__)

#: The transforms a SAT stage writes for its training speakers (decodes write theirs as decode_<split>/trans.ark).
TRANSFORMS_FILE = "trans.ark"


class AdaptedFeatures(MappedFeatures):
    """The adapted features of every cut (a read-only mapping computed when asked) and their ``dim``."""

    def __init__(self, base, fn, dim: int):
        super().__init__(base, fn)
        self.dim = dim


def adapted_features(stage_dir: str | Path, gmm_cuts: Iterable, gmm_cmvn: Mapping[str, CmvnStats],
                     transforms: Mapping[str, np.ndarray] | str | Path) -> AdaptedFeatures:
    """Every cut's features as the SAT stage in ``stage_dir`` sees them after adaptation, computed when
    asked (``utt → T × dim`` float32), with ``dim`` the stage's LDA·MLLT output dimension.

    ``gmm_cuts``/``gmm_cmvn``: the GMM feature cuts of the split and their per-speaker statistics;
    ``transforms``: the per-speaker fMLLR matrices (or the ``trans.ark`` holding them). A speaker
    without a transform gets the unadapted features, as in decoding (logged).
    """
    stage_dir = Path(stage_dir)
    if not isinstance(transforms, Mapping):
        transforms = read_fmllr_transforms(transforms)
    pipeline = stage_features(stage_dir)
    static = CutFeatures(gmm_cuts, gmm_cmvn, pipeline.cmvn_norm_vars)
    utt2spk = {utt: speaker_of(static.cut(utt)) for utt in static}
    missing = sorted({s for s in utt2spk.values()} - set(transforms))
    if missing:
        log.warning("%d speaker(s) have no fMLLR transform in %s (e.g. %s): their adapted features are unadapted",
                    len(missing), stage_dir, ", ".join(missing[:3]))
    dim = pipeline.output_dim(static.static_dim)
    bad = {s: w.shape for s, w in transforms.items() if w.shape != (dim, dim + 1)}
    if bad:
        spk, shape = next(iter(bad.items()))
        raise SenoneError(f"fMLLR transform of speaker {spk} is {shape[0]}×{shape[1]}, but {stage_dir} gives "
                          f"{dim}-dim features; the transforms come from another stage: re-run its decode")
    fmllr = speaker_fmllr(utt2spk, transforms)
    return AdaptedFeatures(static, lambda utt, x: fmllr(utt, pipeline.apply(x)), dim)


def append_adapted(utt: str, nn_input: np.ndarray, adapted: np.ndarray) -> np.ndarray:
    """``[network input | adapted features]`` of one utterance, checking that the frames agree."""
    if len(adapted) != len(nn_input):
        raise SenoneError(f"{utt}: {len(nn_input)} network-input frames but {len(adapted)} frames of adapted GMM "
                          "features; the nn and gmm features must use the same framing — re-run the feats stages")
    return np.concatenate([nn_input, np.asarray(adapted, dtype=np.float32)], axis=1)
