"""Acoustic features: MFCC + Kaldi-style pitch (GMM stages), log-mel + energy (networks), CMVN, deltas.

``pitch``/``deltas``/``cmvn`` need only numpy/scipy; ``extract`` (the Lhotse extractor and
``compute_features``) imports Lhotse and torch, so its names are loaded on first use.
"""

from __future__ import annotations

from typing import Any

from senone.feats.cmvn import (
    CmvnStats,
    apply_cmvn,
    compute_cmvn_stats,
    iter_gmm_features,
    load_cmvn_stats,
    load_gmm_features,
    pool_cmvn_stats,
    read_features,
    save_cmvn_stats,
    speaker_of,
)
from senone.feats.deltas import add_deltas, compute_deltas, splice
from senone.feats.pitch import PitchOptions, compute_pitch, num_frames, process_pitch, track_pitch

_LAZY = {"FbankPitch", "FbankPitchConfig", "MfccPitch", "MfccPitchConfig", "compute_features", "extractor_for",
         "frame_log_energy"}

__all__ = [
    "CmvnStats",
    "FbankPitch",
    "FbankPitchConfig",
    "MfccPitch",
    "MfccPitchConfig",
    "PitchOptions",
    "add_deltas",
    "apply_cmvn",
    "compute_cmvn_stats",
    "compute_deltas",
    "compute_features",
    "compute_pitch",
    "extractor_for",
    "frame_log_energy",
    "iter_gmm_features",
    "load_cmvn_stats",
    "load_gmm_features",
    "num_frames",
    "pool_cmvn_stats",
    "process_pitch",
    "read_features",
    "save_cmvn_stats",
    "speaker_of",
    "splice",
    "track_pitch",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from senone.feats import extract

        return getattr(extract, name)
    raise AttributeError(f"module 'senone.feats' has no attribute {name!r}")
