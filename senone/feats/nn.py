"""The network input: stored log-mel features → CMVN → Δ+ΔΔ, in the one layout trainer and decoder share.

The feats stage (``--kind nn``) stores, per frame, ``[log-energy, 30 log-mel bands]`` (31 "bands",
the reference paper's input) and, when ``features.nn.pitch`` is on, the 3 pitch values of the GMM
features (:class:`senone.feats.extract.FbankPitch`). Frames are the GMM features' frames one for
one, so the per-frame pdf-ids of a GMM alignment label these frames directly.

Per utterance, :func:`nn_input` then does what Kaldi's nnet recipes do with ``apply-cmvn |
add-deltas``:

1. **CMVN** of every stored column (pitch included, as Kaldi's ``fbank_pitch`` recipes do), with
   ``features.nn.cmvn`` = ``speaker`` (each split's own per-speaker statistics, Kaldi's
   ``cmvn.scp``) or ``global`` (the training split's statistics pooled over its speakers and applied
   to every split, as Kaldi nnet1's global CMVN: dev and test never contribute statistics).
   ``norm_vars`` is on by default: unlike GMMs, which model each dimension's variance, a network
   sees raw input scales (the energy column varies several times more than a mel band), and Kaldi's
   nnet1 LSTM/CNN fbank recipes normalise variance (``--cmvn-opts "--norm-means=true
   --norm-vars=true"``).
2. **Δ and ΔΔ** (Kaldi's ``add-deltas``, window 2) of the spectral columns only; the pitch values
   already carry their own delta (delta log-pitch) and get none.
3. The float32 matrix ``[bands static | bands Δ | bands ΔΔ | pitch]``, T × (31·3 + 3) = 96 with
   pitch, T × 93 without. :func:`nn_input_layout` gives ``(31, 3, 3)`` / ``(31, 3, 0)``; a model
   slices stream ``s`` as ``x[:, s * bands:(s + 1) * bands]`` and the pitch as ``x[:, bands * streams:]``.

Files of ``data/<recipe>/feats/nn/``: ``cuts_<split>.jsonl.gz`` (Lhotse cuts pointing to Kaldi
archives in ``feats_<split>/``) and ``cmvn_<split>.npz`` (per-speaker statistics, always written).
:func:`nn_cmvn_path` says which statistics file a split needs: its own in ``speaker`` mode, the
training split's in ``global`` mode; :func:`load_nn_cmvn` loads (and pools) it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Union

import numpy as np

from senone import SenoneError
from senone.feats.cmvn import (
    CmvnStats,
    _stats_for,
    apply_cmvn,
    load_cmvn_stats,
    pool_cmvn_stats,
    read_features,
    speaker_of,
)
from senone.feats.deltas import add_deltas

if TYPE_CHECKING:
    from senone.feats.extract import FbankPitchConfig

#: CMVN modes of ``features.nn.cmvn``.
CMVN_MODES = ("speaker", "global")
#: The split whose statistics global CMVN pools.
TRAIN_SPLIT = "train"
#: Pitch values appended by the extractor (POV feature, normalised log-pitch, delta log-pitch).
PITCH_DIM = 3

#: What :func:`iter_nn_inputs` takes as statistics: per speaker, or one pooled set (global).
NnCmvn = Union[CmvnStats, Mapping[str, CmvnStats]]


@dataclass(frozen=True)
class NnFeatureConfig:
    """The ``features.nn`` section, validated. Defaults: the reference paper's input (section 4.1)."""

    num_mel_bins: int = 30
    use_energy: bool = True
    delta_order: int = 2
    delta_window: int = 2
    cmvn: str = "speaker"
    norm_vars: bool = True
    pitch: bool = False

    #: allowed values of the integer keys (checked in ``__post_init__``)
    _RANGES = {"num_mel_bins": (3, 128), "delta_order": (0, 4), "delta_window": (1, 10)}

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            where = f"features.nn.{f.name}"
            if f.type in ("bool", bool):
                if not isinstance(value, bool):
                    raise SenoneError(f"{where} = {value!r}: expected true or false")
            elif f.type in ("int", int):
                if isinstance(value, bool) or not isinstance(value, int):
                    raise SenoneError(f"{where} = {value!r}: expected an integer")
                low, high = self._RANGES[f.name]
                if not low <= value <= high:
                    raise SenoneError(f"{where} = {value}: expected {low} to {high}")
        if self.cmvn not in CMVN_MODES:
            raise SenoneError(f"features.nn.cmvn = {self.cmvn!r}: expected one of {', '.join(CMVN_MODES)} "
                              "(speaker: each split's per-speaker statistics; global: the training split's, pooled)")

    @classmethod
    def from_conf(cls, conf: "Mapping[str, Any] | NnFeatureConfig | None") -> "NnFeatureConfig":
        """From the ``features.nn`` section, or from a whole configuration that has one."""
        if isinstance(conf, NnFeatureConfig):
            return conf
        if conf is None:
            return cls()
        if not isinstance(conf, Mapping):
            raise SenoneError(f"features.nn: expected a mapping of settings, got {type(conf).__name__}")
        if "features" in conf:  # the whole merged configuration
            features = conf["features"]
            if not isinstance(features, Mapping) or "nn" not in features:
                raise SenoneError("configuration key 'features.nn' is missing; add it to conf/features.yaml")
            conf = features["nn"]
            if not isinstance(conf, Mapping):
                raise SenoneError(f"features.nn: expected a mapping of settings, got {type(conf).__name__}")
        known = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(conf) - set(known))
        if unknown:
            raise SenoneError(f"features.nn: unknown key(s) {', '.join(map(str, unknown))}; known: {', '.join(known)}")
        return cls(**conf)

    @property
    def num_bands(self) -> int:
        """Spectral columns per stream: the mel bands + the log-energy."""
        return self.num_mel_bins + (1 if self.use_energy else 0)

    @property
    def num_streams(self) -> int:
        """Static + Δ (+ ΔΔ ...)."""
        return self.delta_order + 1

    @property
    def extra_dim(self) -> int:
        """Values after the spectral streams (pitch, no deltas)."""
        return PITCH_DIM if self.pitch else 0

    @property
    def stored_dim(self) -> int:
        """Columns per frame in storage and in the CMVN statistics."""
        return self.num_bands + self.extra_dim

    @property
    def input_dim(self) -> int:
        """Columns per frame of the network input."""
        return self.num_bands * self.num_streams + self.extra_dim

    def extractor_config(self) -> "FbankPitchConfig":
        """The extractor settings of the feats stage (framing and energy as the GMM features')."""
        from senone.feats.extract import FbankPitchConfig

        return FbankPitchConfig(num_mel_bins=self.num_mel_bins, use_energy=self.use_energy, pitch=self.pitch)


def nn_input_layout(conf: "Mapping[str, Any] | NnFeatureConfig | None") -> tuple[int, int, int]:
    """``(num_bands, num_streams, extra_dim)`` of the network input: (31, 3, 0) by default, (31, 3, 3)
    with pitch. The matrix is ``[bands static | bands Δ | bands ΔΔ | extra]``."""
    c = NnFeatureConfig.from_conf(conf)
    return c.num_bands, c.num_streams, c.extra_dim


def nn_cmvn_path(feats_dir: str | Path, split: str, conf: "Mapping[str, Any] | NnFeatureConfig | None",
                 train_split: str = TRAIN_SPLIT) -> Path:
    """The statistics file the inputs of ``split`` are normalised with (a workflow input of that split)."""
    c = NnFeatureConfig.from_conf(conf)
    return Path(feats_dir) / f"cmvn_{train_split if c.cmvn == 'global' else split}.npz"


def load_nn_cmvn(feats_dir: str | Path, split: str, conf: "Mapping[str, Any] | NnFeatureConfig | None",
                 train_split: str = TRAIN_SPLIT) -> NnCmvn:
    """The statistics for ``split``: per speaker (``speaker``), or the training split's pooled (``global``)."""
    c = NnFeatureConfig.from_conf(conf)
    path = nn_cmvn_path(feats_dir, split, c, train_split)
    if not path.is_file():
        need = f"the {train_split} split's statistics (features.nn.cmvn is global)" if c.cmvn == "global" else "them"
        raise SenoneError(f"{path}: CMVN statistics not found; {split} needs {need}: run the feats stage "
                          f"(kind nn) for split {train_split if c.cmvn == 'global' else split}")
    stats = load_cmvn_stats(path)
    dims = {len(st.sum) for st in stats.values()}
    if dims != {c.stored_dim}:
        raise SenoneError(f"{path}: statistics of {sorted(dims)} dims, but features.nn ({_describe(c)}) has "
                          f"{c.stored_dim} per frame; the features were computed with other settings: re-run the "
                          "feats stage (kind nn)")
    return pool_cmvn_stats(stats) if c.cmvn == "global" else stats


def _describe(c: NnFeatureConfig) -> str:
    energy = " + energy" if c.use_energy else ""
    pitch = " + pitch" if c.pitch else ""
    return f"{c.num_mel_bins} bands{energy}{pitch}"


def nn_input(stored: np.ndarray, stats: CmvnStats, conf: "Mapping[str, Any] | NnFeatureConfig | None") -> np.ndarray:
    """One utterance's network input from its stored features (T × stored dim) and its statistics."""
    c = NnFeatureConfig.from_conf(conf)
    stored = np.asarray(stored)
    if stored.ndim != 2 or stored.shape[1] != c.stored_dim:
        raise SenoneError(f"nn_input: features of shape {stored.shape}, but features.nn ({_describe(c)}) has "
                          f"{c.stored_dim} values per frame; re-run the feats stage (kind nn) with these settings")
    normed = apply_cmvn(stored, stats, norm_vars=c.norm_vars)
    bands, spectral = c.num_bands, c.num_bands * c.num_streams
    out = np.empty((len(normed), c.input_dim), dtype=np.float32)
    out[:, :spectral] = add_deltas(normed[:, :bands], order=c.delta_order, window=c.delta_window)
    out[:, spectral:] = normed[:, bands:]
    return out


def _check_stats(cmvn_stats: NnCmvn, c: NnFeatureConfig) -> None:
    if c.cmvn == "global":
        if not isinstance(cmvn_stats, CmvnStats):
            raise SenoneError("features.nn.cmvn is 'global': give the training split's pooled statistics "
                              "(load_nn_cmvn(feats_dir, split, conf)), not per-speaker ones")
        dims = {len(cmvn_stats.sum)}
    else:
        if isinstance(cmvn_stats, CmvnStats) or not isinstance(cmvn_stats, Mapping):
            raise SenoneError("features.nn.cmvn is 'speaker': give per-speaker statistics "
                              "(load_nn_cmvn(feats_dir, split, conf)), not one pooled set")
        dims = {len(st.sum) for st in cmvn_stats.values()}
    if dims != {c.stored_dim}:
        raise SenoneError(f"CMVN statistics of {sorted(dims)} dims, but features.nn ({_describe(c)}) has "
                          f"{c.stored_dim} per frame; load the statistics of the nn features (feats/nn/cmvn_<split>.npz)")


def iter_nn_inputs(
    cuts: "Iterable | str | Path",
    cmvn_stats: NnCmvn,
    conf: "Mapping[str, Any] | NnFeatureConfig | None",
    *,
    speaker: Callable[[object], str] = speaker_of,
) -> Iterator[tuple[str, np.ndarray]]:
    """``(cut_id, network input)`` for every cut, lazily: one utterance in memory at a time.

    ``cuts`` are the feats stage's cuts (a CutSet, any iterable of cuts, or the path of
    ``cuts_<split>.jsonl.gz``, which is then read lazily); ``cmvn_stats`` is what
    :func:`load_nn_cmvn` returns for the split.
    """
    c = NnFeatureConfig.from_conf(conf)
    _check_stats(cmvn_stats, c)
    if isinstance(cuts, (str, Path)):
        from lhotse import CutSet

        path = Path(cuts)
        if not path.is_file():
            raise SenoneError(f"{path}: missing; it is written by the 'feats' stage (kind nn) — run that stage first")
        cuts = CutSet.from_jsonl_lazy(path)
    for cut in cuts:
        stored = read_features(cut)
        stats = cmvn_stats if c.cmvn == "global" else _stats_for(cut, cmvn_stats, speaker)
        if stored.ndim != 2 or stored.shape[1] != c.stored_dim:
            raise SenoneError(f"{cut.features.storage_path}: cut {cut.id} has {stored.shape[-1]} values per frame, "
                              f"features.nn ({_describe(c)}) needs {c.stored_dim}; re-run the feats stage (kind nn) "
                              "with these settings")
        yield cut.id, nn_input(stored, stats, c)


def load_nn_inputs(
    cuts: "Iterable | str | Path",
    cmvn_stats: NnCmvn,
    conf: "Mapping[str, Any] | NnFeatureConfig | None",
    *,
    speaker: Callable[[object], str] = speaker_of,
) -> dict[str, np.ndarray]:
    """:func:`iter_nn_inputs` into a dict (cut id → matrix): for small sets (dev, test, tests)."""
    return dict(iter_nn_inputs(cuts, cmvn_stats, conf, speaker=speaker))
