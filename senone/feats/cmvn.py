"""Per-speaker cepstral mean (and variance) normalisation, Kaldi style, and GMM feature loading.

Kaldi's ``compute-cmvn-stats --spk2utt`` keeps, per speaker, the frame count, the sum and the sum of
squares of every feature dimension; ``apply-cmvn`` subtracts the speaker mean (and with
``--norm-vars=true`` divides by the standard deviation). Mean-only is Kaldi's default and what its
GMM recipes use: it removes the channel/speaker offset while keeping variance differences that
the GMMs model anyway.

Statistics are accumulated streaming, one cut's features at a time, in float64.

The speaker of a cut is the ``speaker`` of its first supervision. A cut without one is its own
"speaker" (per-utterance CMVN), which is what Kaldi does with ``utt2spk`` mapping each utterance
to itself.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable, Iterable, Iterator, NamedTuple

import numpy as np

from senone import SenoneError
from senone.feats.deltas import add_deltas
from senone.io import atomic_path

log = logging.getLogger(__name__)

#: Kaldi's variance floor in ``apply-cmvn`` (it warns and floors).
VAR_FLOOR = 1.0e-20


class CmvnStats(NamedTuple):
    """Kaldi's CMVN statistics for one speaker: frame count, per-dimension sum and sum of squares."""

    count: float
    sum: np.ndarray
    sumsq: np.ndarray

    @property
    def mean(self) -> np.ndarray:
        return self.sum / self.count

    @property
    def var(self) -> np.ndarray:
        mean = self.mean
        return np.maximum(self.sumsq / self.count - mean * mean, VAR_FLOOR)


def speaker_of(cut) -> str:
    """The CMVN key of a cut: its first supervision's speaker, else the cut id."""
    for sup in getattr(cut, "supervisions", None) or []:
        if sup.speaker:
            return sup.speaker
        break
    return cut.id


def pool_cmvn_stats(stats: dict[str, CmvnStats]) -> CmvnStats:
    """One set of statistics for all speakers together: global CMVN, as Kaldi nnet1's
    ``compute-cmvn-stats`` over the whole training set (no ``--spk2utt``)."""
    if not stats:
        raise SenoneError("pool_cmvn_stats: no statistics to pool")
    dims = {len(st.sum) for st in stats.values()}
    if len(dims) != 1:
        raise SenoneError(f"pool_cmvn_stats: speakers have different feature dimensions {sorted(dims)}")
    return CmvnStats(
        float(sum(st.count for st in stats.values())),
        np.sum([st.sum for st in stats.values()], axis=0),
        np.sum([st.sumsq for st in stats.values()], axis=0),
    )


def _rerun_hint(storage_path: str) -> str:
    """How to recompute the features stored at ``storage_path`` (``.../feats_<split>[/feats-<i>]/...``)."""
    for folder in Path(storage_path).parents:
        if folder.name.startswith("feats_"):
            cuts_file = folder.parent / f"cuts_{folder.name[len('feats_'):]}.jsonl.gz"
            return f"re-run the feats stage for it (delete {cuts_file} first: the stage skips finished splits)"
    return "re-run the feats stage that wrote it"


def read_features(cut) -> np.ndarray:
    """The stored feature matrix of ``cut``; a missing or damaged archive is one :class:`SenoneError`
    naming the file and the stage to re-run (Lhotse/kaldi-native-io raise bare C++ errors)."""
    if not cut.has_features:
        raise SenoneError(f"cut {cut.id}: no features attached; give the cuts written by the feats stage "
                          "(data/<recipe>/feats/<kind>/cuts_<split>.jsonl.gz)")
    try:
        return cut.load_features()
    except Exception as e:  # kaldi-native-io: RuntimeError; other storages raise their own types
        path = str(getattr(getattr(cut, "features", None), "storage_path", "(feature storage)"))
        first = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
        where = "" if Path(path).is_absolute() else f" (relative to {Path.cwd()})"
        raise SenoneError(f"{path}{where}: cannot read the features of cut {cut.id} ({first[:160]}); "
                          f"{_rerun_hint(path)}") from None


def feature_stats(feats: np.ndarray) -> CmvnStats:
    """Statistics of one feature matrix (T × D)."""
    x = np.asarray(feats, dtype=np.float64)
    return CmvnStats(float(len(x)), x.sum(axis=0), np.einsum("td,td->d", x, x))


def compute_cmvn_stats(cuts: Iterable, *, speaker: Callable[[object], str] = speaker_of) -> dict[str, CmvnStats]:
    """Per-speaker statistics over ``cuts`` (each with features), loading one cut at a time."""
    sums: dict[str, list] = {}
    n_cuts = 0
    for cut in cuts:
        st = feature_stats(read_features(cut))
        key = speaker(cut)
        acc = sums.get(key)
        if acc is None:
            sums[key] = [st.count, st.sum, st.sumsq]
        else:
            if acc[1].shape != st.sum.shape:
                raise SenoneError(f"cut {cut.id}: {st.sum.shape[0]} feature dims, other cuts of {key} have {acc[1].shape[0]}")
            acc[0] += st.count
            acc[1] += st.sum
            acc[2] += st.sumsq
        n_cuts += 1
    if n_cuts == 0:
        raise SenoneError("compute_cmvn_stats: no cuts given")
    log.info("CMVN statistics for %d speakers from %d cuts", len(sums), n_cuts)
    return {spk: CmvnStats(c, s, q) for spk, (c, s, q) in sums.items()}


def save_cmvn_stats(path: str | Path, stats: dict[str, CmvnStats]) -> None:
    """Write statistics as ``.npz`` (speakers, count, sum, sumsq), atomically."""
    path = Path(path)
    if path.suffix != ".npz":
        raise SenoneError(f"{path}: CMVN statistics are written as .npz; give a path ending in .npz")
    speakers = sorted(stats)
    if not speakers:
        raise SenoneError(f"{path}: no CMVN statistics to write")
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(
                f,
                speakers=np.array(speakers, dtype=str),
                count=np.array([stats[s].count for s in speakers], dtype=np.float64),
                sum=np.stack([stats[s].sum for s in speakers]).astype(np.float64),
                sumsq=np.stack([stats[s].sumsq for s in speakers]).astype(np.float64),
            )


def load_cmvn_stats(path: str | Path) -> dict[str, CmvnStats]:
    """Read statistics written by :func:`save_cmvn_stats`."""
    path = Path(path)
    if not path.is_file():
        raise SenoneError(f"{path}: CMVN statistics not found; run the feats stage first")
    try:
        with np.load(path, allow_pickle=False) as z:
            speakers = [str(s) for s in z["speakers"]]
            count, total, sumsq = z["count"], z["sum"], z["sumsq"]
    except (OSError, KeyError, ValueError) as e:
        raise SenoneError(f"{path}: not a CMVN statistics file ({e}); re-run the feats stage") from e
    return {s: CmvnStats(float(count[i]), total[i], sumsq[i]) for i, s in enumerate(speakers)}


def apply_cmvn(feats: np.ndarray, stats: CmvnStats, norm_vars: bool = False) -> np.ndarray:
    """Kaldi's ``apply-cmvn``: subtract the mean; with ``norm_vars`` also scale to unit variance."""
    feats = np.asarray(feats, dtype=np.float32)
    if feats.ndim != 2 or feats.shape[1] != len(stats.sum):
        raise SenoneError(f"apply_cmvn: features of shape {feats.shape} do not match {len(stats.sum)}-dim statistics")
    if stats.count <= 0:
        raise SenoneError("apply_cmvn: statistics with zero frames")
    mean = stats.mean
    if not norm_vars:
        return (feats - mean.astype(np.float32)).astype(np.float32, copy=False)
    scale = 1.0 / np.sqrt(stats.var)
    return ((feats - mean) * scale).astype(np.float32)


def _stats_for(cut, cmvn_stats: dict[str, CmvnStats], speaker: Callable[[object], str]) -> CmvnStats:
    key = speaker(cut)
    try:
        return cmvn_stats[key]
    except KeyError:
        raise SenoneError(
            f"cut {cut.id}: no CMVN statistics for speaker {key!r}; compute them over the cuts you decode/train on"
        ) from None


def load_gmm_features(
    cut,
    cmvn_stats: dict[str, CmvnStats],
    *,
    deltas: bool = True,
    norm_vars: bool = False,
    delta_order: int = 2,
    delta_window: int = 2,
    speaker: Callable[[object], str] = speaker_of,
) -> np.ndarray:
    """GMM input for one cut: stored features → speaker CMVN → Δ+ΔΔ (float32, T × D·3).

    The order is Kaldi's (``apply-cmvn ... | add-deltas``): deltas of normalised features.
    """
    feats = apply_cmvn(read_features(cut), _stats_for(cut, cmvn_stats, speaker), norm_vars=norm_vars)
    if deltas:
        feats = add_deltas(feats, order=delta_order, window=delta_window)
    return np.ascontiguousarray(feats, dtype=np.float32)


def iter_gmm_features(
    cuts: Iterable,
    cmvn_stats: dict[str, CmvnStats],
    *,
    deltas: bool = True,
    norm_vars: bool = False,
    delta_order: int = 2,
    delta_window: int = 2,
    speaker: Callable[[object], str] = speaker_of,
) -> Iterator[tuple[str, np.ndarray]]:
    """``(cut_id, features)`` for every cut, as :func:`load_gmm_features`, one cut in memory at a time."""
    for cut in cuts:
        yield cut.id, load_gmm_features(
            cut,
            cmvn_stats,
            deltas=deltas,
            norm_vars=norm_vars,
            delta_order=delta_order,
            delta_window=delta_window,
            speaker=speaker,
        )
