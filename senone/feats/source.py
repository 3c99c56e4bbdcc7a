"""Feature sources for the GMM stages: all in memory, or read from storage utterance by utterance.

The trainers ask for features as a mapping ``utt → (T × D) float32`` (``keys()``, ``items()``,
``[utt]``), again on every pass. For a few hours of audio the fastest answer is a dict computed
once (2 h of Δ+ΔΔ features are 140 MB). For a 150 h corpus the same dict would be 10 GB per
copy, so :class:`CutFeatures` reads each cut's stored static features when asked and
:class:`MappedFeatures` puts them through the stage's pipeline (CMVN → Δ+ΔΔ or splice+LDA·MLLT →
per-speaker fMLLR) on the fly, as Kaldi's ``apply-cmvn | add-deltas | transform-feats``
pipelines do on every pass. Both are plain read-only mappings: re-iterable, and forked workers
(:mod:`senone.parallel`) read their own shard from storage.

:class:`FeatureMemory` makes the choice per stage from ``gmm.max_feature_memory_gb``: what the
stage would hold in memory is estimated from the cut manifests (frames × dims × 4 bytes × the
number of copies the stage keeps) without reading any feature.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator

import numpy as np

from senone import SenoneError
from senone.feats.cmvn import CmvnStats, load_gmm_features, speaker_of

log = logging.getLogger(__name__)

#: Default of ``gmm.max_feature_memory_gb``: a corpus of up to ~20 h keeps its features in memory.
DEFAULT_MAX_FEATURE_MEMORY_GB = 4.0


_HANDLES_PID = os.getpid()


def _own_file_handles() -> None:
    """Drop the storage readers inherited through ``fork``: Lhotse keeps one open reader per
    feats.scp, and a forked worker shares its file offset with the parent, so reading through it
    from two processes at once returns other utterances' bytes. The worker opens its own."""
    global _HANDLES_PID
    if os.getpid() != _HANDLES_PID:
        from lhotse.features.io import close_cached_file_handles

        close_cached_file_handles()
        _HANDLES_PID = os.getpid()


class CutFeatures(Mapping):
    """CMVN-normalised static features of Lhotse cuts, read from storage on every access.

    Keeps only the cut manifests (recordings dropped), so memory grows with the number of cuts,
    not with the audio. Safe to read from forked workers (each opens its own storage handles).
    """

    def __init__(self, cuts: Iterable, cmvn_stats: Mapping[str, CmvnStats], norm_vars: bool = False,
                 speaker: Callable[[object], str] = speaker_of):
        self._cuts: dict = {}
        for cut in cuts:
            if not cut.has_features:
                raise SenoneError(f"cut {cut.id}: no features attached; compute features (feats stage) first")
            self._cuts[cut.id] = cut.drop_recording() if cut.has_recording else cut
        self.cmvn_stats = cmvn_stats
        self.norm_vars = norm_vars
        self.speaker = speaker

    def __getitem__(self, utt: str) -> np.ndarray:
        _own_file_handles()
        return load_gmm_features(self._cuts[utt], self.cmvn_stats, deltas=False, norm_vars=self.norm_vars,
                                 speaker=self.speaker)

    def __iter__(self) -> Iterator[str]:
        return iter(self._cuts)

    def __len__(self) -> int:
        return len(self._cuts)

    def __contains__(self, utt: object) -> bool:
        return utt in self._cuts

    def cut(self, utt: str):
        """The (recording-less) cut of an utterance."""
        return self._cuts[utt]

    def num_frames(self, utt: str) -> int:
        """Frames of an utterance from its manifest (no feature is read)."""
        return int(self._cuts[utt].num_frames)

    def total_frames(self) -> int:
        return sum(int(c.num_frames) for c in self._cuts.values())

    @property
    def static_dim(self) -> int:
        return int(next(iter(self._cuts.values())).num_features) if self._cuts else 0


class MappedFeatures(Mapping):
    """``fn(utt, base[utt])`` computed when asked: a stage pipeline or a per-speaker transform on top
    of another source. The frame count is the base's (pipelines keep the number of frames)."""

    def __init__(self, base: Mapping, fn: Callable[[str, np.ndarray], np.ndarray]):
        self.base = base
        self.fn = fn

    def __getitem__(self, utt: str) -> np.ndarray:
        return self.fn(utt, self.base[utt])

    def __iter__(self) -> Iterator[str]:
        return iter(self.base)

    def __len__(self) -> int:
        return len(self.base)

    def __contains__(self, utt: object) -> bool:
        return utt in self.base

    def num_frames(self, utt: str) -> int:
        return num_frames(self.base, utt)


def num_frames(feats: Mapping, utt: str) -> int:
    """Frames of ``utt`` without reading its features when the source knows them from manifests."""
    counter = getattr(feats, "num_frames", None)
    return int(counter(utt)) if counter is not None else int(feats[utt].shape[0])


def is_lazy(feats: Mapping) -> bool:
    return isinstance(feats, (CutFeatures, MappedFeatures))


@dataclass
class FeatureMemory:
    """Whether a stage keeps its features in memory (dicts) or streams them from storage."""

    in_memory: bool = True

    @classmethod
    def for_stage(cls, static: CutFeatures, values_per_frame: int, max_gb: float | None, stage: str = "this stage"
                  ) -> "FeatureMemory":
        """In memory if ``frames × values_per_frame × 4 bytes`` fits in ``max_gb`` (None: the default).

        ``values_per_frame`` counts every float32 the stage keeps per frame: e.g. LDA+MLLT holds
        the static features, the stage features, and briefly the re-transformed ones after MLLT.
        """
        max_gb = DEFAULT_MAX_FEATURE_MEMORY_GB if max_gb is None else float(max_gb)
        if max_gb < 0:
            raise SenoneError(f"gmm.max_feature_memory_gb is {max_gb}; give a size in GB >= 0 (0 streams everything)")
        need = static.total_frames() * values_per_frame * 4 / 2**30
        in_memory = need <= max_gb
        log.info("%s: features %s (%.2f GB for %d utterances, %d values per frame; gmm.max_feature_memory_gb %g)",
                 stage, "held in memory" if in_memory else "streamed from storage on every pass", need, len(static),
                 values_per_frame, max_gb)
        return cls(in_memory)

    def hold(self, feats: Mapping) -> Mapping:
        """``feats`` computed into a dict when in memory; the lazy source itself when streaming."""
        if self.in_memory and is_lazy(feats):
            return {utt: x for utt, x in feats.items()}
        return feats


def through(feats: Mapping, fn: Callable[[str, np.ndarray], np.ndarray], memory: FeatureMemory) -> Mapping:
    """``fn`` applied to every utterance of ``feats``: now (in memory) or when asked (streaming)."""
    if memory.in_memory:
        return {utt: fn(utt, x) for utt, x in feats.items()}
    return MappedFeatures(feats, fn)


def training_features(cuts_path: str, cmvn_path: str, norm_vars: bool = False) -> CutFeatures:
    """The static training features of a feature-cuts manifest (nothing read yet), with a clear error
    for an empty or missing one."""
    from lhotse import CutSet

    from senone.feats.cmvn import load_cmvn_stats
    from senone.io import require_file

    static = CutFeatures(CutSet.from_file(require_file(cuts_path, "feats")),
                         load_cmvn_stats(require_file(cmvn_path, "feats")), norm_vars)
    if not len(static):
        raise SenoneError(f"{cuts_path}: no training features")
    return static
