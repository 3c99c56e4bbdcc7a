"""Speaker-adaptive training (Kaldi's ``train_sat.sh``) and fMLLR for decoding (``decode_fmllr.sh``).

Per speaker an affine fMLLR transform W maps the stage's input features (LDA+MLLT) into the model's
space. Training starts from transforms estimated with the previous (speaker-independent) model on
its own alignment, builds a tree on the adapted features, and re-estimates the transforms with the
current model at ``fmllr_iters`` (composing new onto old). Statistics weight silence frames 0
(Kaldi's ``weight-silence-post 0.0``). A speaker with less than ``fmllr_min_count`` frames of speech
keeps the identity, with a log line naming it.

Resumability: each transform update is written as ``trans.<pass>.ark`` before the pass's checkpoint,
so a resumed run loads the transforms of the last finished update and never composes one twice.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import kaldifst
import numpy as np

from senone.feats.fmllr import (FmllrResult, FmllrStats, compose_affine, estimate_fmllr_batch, identity_transform,
                                read_fmllr_transforms, report_fmllr, speaker_fmllr, write_fmllr_transforms)
from senone.feats.source import FeatureMemory, through
from senone.gmm.lda_mllt import frame_batches, frame_weights, tid_tables
from senone.gmm.passes import FeatureSource
from senone.gmm.stats import GmmParams
from senone.gmm.triphone import TriConfig, TriResult, train_triphone, tree_stage_inputs
from senone.hmm.model import GmmHmm
from senone.lang.prepare import Lang
from senone.parallel import map_shards, shared

log = logging.getLogger(__name__)


@dataclass
class SatConfig(TriConfig):
    """train_sat.sh defaults: fMLLR re-estimated at passes 2, 4, 6 and 12; the sizes are conf/gmm.yaml's tri3
    (one source: tests/test_config_schema.py checks that the two agree)."""

    num_leaves: int = 1400
    tot_gauss: int = 12000
    fmllr_iters: tuple[int, ...] = (2, 4, 6, 12)
    silence_weight: float = 0.0
    fmllr_min_count: float = 500.0
    fmllr_num_iters: int = 40


def _fmllr_shard(speakers: list[str]) -> dict[str, FmllrResult]:
    """Accumulate and estimate the transforms of some speakers (one worker of :func:`estimate_transforms`)."""
    s = shared()
    feats, alignments, dim = s["feats"], s["alignments"], s["dim"]
    stats: dict[str, FmllrStats] = {}
    for spk in speakers:
        st = stats[spk] = FmllrStats.zeros(dim)
        for batch in frame_batches(s["utts"][spk], alignments, s["batch_frames"]):
            ali = np.concatenate([alignments[u] for u in batch])
            x = np.concatenate([feats[u] for u in batch])
            st.accumulate(x, s["tid2pdf"][ali], s["gmms"], s["tid_weight"][ali])
    return estimate_fmllr_batch(stats, **s["opts"])


def estimate_transforms(model: GmmHmm, feats: FeatureSource, alignments: Mapping[str, np.ndarray],
                        utt2spk: Mapping[str, str], silence_phones: set[int], *, silence_weight: float = 0.0,
                        min_count: float = 500.0, num_iters: int = 40, num_jobs: int = 1,
                        batch_frames: int = 100_000) -> dict[str, np.ndarray]:
    """``gmm-est-fmllr`` per speaker on ``feats`` (already through any earlier transform).

    Speakers are split over ``num_jobs`` forked workers; each accumulates a speaker's statistics in
    batches of about ``batch_frames`` frames (one E-step per batch, grouped by pdf: per utterance
    the Python overhead dominated) and estimates its speakers' transforms together. A speaker's
    batches never mix with another's, so its transform does not depend on the number of jobs.
    """
    utts: dict[str, list[str]] = {}
    for utt in feats.keys():
        if utt in alignments:
            utts.setdefault(utt2spk[utt], []).append(utt)
    if not utts:
        return {}
    tid2pdf, tid2phone = tid_tables(model)
    tid_weight = frame_weights(np.arange(len(tid2phone)), tid2phone, sorted(silence_phones), silence_weight)
    parts = map_shards(_fmllr_shard, sorted(utts), num_jobs, feats=feats, alignments=alignments, utts=utts,
                       dim=model.dim, gmms=GmmParams.from_am(model.am), tid2pdf=tid2pdf, tid_weight=tid_weight,
                       batch_frames=batch_frames, opts=dict(num_iters=num_iters, min_count=min_count))
    results = {spk: r for part in parts for spk, r in part.items()}
    report_fmllr(results, min_count)
    return {spk: r.matrix for spk, r in results.items()}


def adapt(feats: FeatureSource, utt2spk: Mapping[str, str], transforms: Mapping[str, np.ndarray],
          memory: FeatureMemory = FeatureMemory()) -> FeatureSource:
    """Features through their speaker's transform (identity for a speaker without one); computed now
    (in memory) or when each utterance is read (streaming)."""
    return through(feats, speaker_fmllr(utt2spk, transforms), memory)


def _latest_transforms(out_dir: Path, before: int) -> tuple[int, dict[str, np.ndarray]] | None:
    found = []
    for p in out_dir.glob("trans.*.ark"):
        m = re.fullmatch(r"trans\.(\d+)\.ark", p.name)
        if m and int(m.group(1)) < before:
            found.append((int(m.group(1)), p))
    if not found:
        return None
    it, path = max(found)
    return it, read_fmllr_transforms(path)


def train_sat(lang: Lang, lexicon_fst: kaldifst.StdVectorFst, transcripts: Mapping[str, list[int]],
              base_feats: FeatureSource, utt2spk: Mapping[str, str], prev: GmmHmm,
              prev_alignments: Mapping[str, np.ndarray], out_dir: str | Path,
              config: SatConfig = SatConfig(), memory: FeatureMemory = FeatureMemory()
              ) -> tuple[TriResult, dict[str, np.ndarray]]:
    """Train a SAT system; writes the stage files of :func:`train_triphone` plus ``trans.ark``.

    ``memory`` says whether the adapted features are computed into memory after every transform
    update or on every read from ``base_feats`` (streaming).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    silence = set(lang.silence_phones)
    opts = dict(silence_weight=config.silence_weight, min_count=config.fmllr_min_count,
                num_iters=config.fmllr_num_iters, num_jobs=config.num_jobs, batch_frames=config.batch_frames)

    from senone.gmm.passes import load_checkpoint  # local: only to know where a resumed run stands

    # the resume key's inputs: the stage's input features (before any fMLLR) and the speaker map
    inputs = tree_stage_inputs(lang, lexicon_fst, transcripts, base_feats, prev, prev_alignments, config.num_jobs,
                               extra={"utt2spk": dict(sorted(utt2spk.items()))})
    ck = load_checkpoint(out_dir / "checkpoint.pkl", config, inputs)
    next_iter = ck["next_iter"] if ck is not None else 0
    if ck is None:
        for stale in out_dir.glob("trans.*.ark"):  # transforms of an earlier run with other settings
            stale.unlink()
    latest = _latest_transforms(out_dir, next_iter if ck is not None else 1)
    if latest is not None:
        transforms = latest[1]
        log.info("SAT: resuming with the transforms of pass %d", latest[0])
    else:
        # first transforms: the speaker-independent model on its own alignment (train_sat.sh, stage -1)
        transforms = estimate_transforms(prev, base_feats, prev_alignments, utt2spk, silence, **opts)
        write_fmllr_transforms(out_dir / "trans.0.ark", transforms)
    state = {"transforms": transforms}

    def hook(it: int, model: GmmHmm, alignments: Mapping[str, np.ndarray], feats: FeatureSource) -> FeatureSource | None:
        if it not in config.fmllr_iters:
            return None
        new = estimate_transforms(model, feats, alignments, utt2spk, silence, **opts)
        composed = {spk: compose_affine(w, state["transforms"].get(spk, identity_transform(w.shape[0])))
                    for spk, w in new.items()}
        state["transforms"] = composed
        write_fmllr_transforms(out_dir / f"trans.{it}.ark", composed)
        return adapt(base_feats, utt2spk, composed, memory)

    adapted = adapt(base_feats, utt2spk, transforms, memory)
    result = train_triphone(lang, lexicon_fst, transcripts, adapted, prev, prev_alignments, out_dir, config,
                            hook=hook, name="tri3", streaming=not memory.in_memory, inputs=inputs)
    write_fmllr_transforms(out_dir / "trans.ark", state["transforms"])
    return result, state["transforms"]
