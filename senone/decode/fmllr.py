"""Two-pass fMLLR decoding of a SAT system (Kaldi's ``decode_fmllr.sh``, with 1-best alignments
where Kaldi uses lattice posteriors).

Pass 1 decodes with the speaker-independent system the SAT stage was trained from (its model and
graph, its dev-chosen LM weight); the 1-best alignments, converted to the SAT tree, give per-speaker
fMLLR statistics under the SAT model (silence weighted 0); pass 2 — the caller's normal decode —
runs the SAT model on the adapted features.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from senone.decode.decoder import decode_dataset
from senone.decode.scorers import GmmScorer
from senone.gmm.sat import estimate_transforms
from senone.hmm.model import GmmHmm
from senone.hmm.tree import convert_alignments

log = logging.getLogger(__name__)

DEFAULT_LM_WEIGHT = 12.0


def si_lm_weight(si_dir: Path) -> float:
    """The LM weight dev chose for the SI system, or Kaldi-ish 12 if it was not decoded."""
    path = si_dir / "decode_dev" / "best_lm_weight.json"
    if path.is_file():
        return float(json.loads(path.read_text())["lm_weight"])
    log.warning("%s missing: first fMLLR pass uses LM weight %g", path, DEFAULT_LM_WEIGHT)
    return DEFAULT_LM_WEIGHT


def first_pass_transforms(si_dir: Path, sat: GmmHmm, feats: Mapping[str, np.ndarray], utt2spk: Mapping[str, str],
                          silence_phones: set[int], *, search: Mapping[str, Any], num_jobs: int,
                          min_count: float = 500.0, silence_weight: float = 0.0) -> dict[str, np.ndarray]:
    """Per-speaker fMLLR transforms from a first, speaker-independent decoding pass
    (``search``: :func:`~senone.decode.decoder.search_options` of the decode settings)."""
    si_dir = Path(si_dir)
    si = GmmHmm.load(si_dir)
    lm_weight = si_lm_weight(si_dir)
    log.info("fMLLR pass 1: decoding %d utterances with %s (LM weight %g)", len(feats), si_dir, lm_weight)
    return si_pass_transforms(si, si_dir / "graph", lm_weight, sat, feats, utt2spk, silence_phones, search=search,
                              num_jobs=num_jobs, min_count=min_count, silence_weight=silence_weight)


def si_pass_transforms(si: GmmHmm, graph_dir: Path, lm_weight: float, sat: GmmHmm, feats: Mapping[str, np.ndarray],
                       utt2spk: Mapping[str, str], silence_phones: set[int], *, search: Mapping[str, Any],
                       num_jobs: int, min_count: float = 500.0, silence_weight: float = 0.0,
                       progress: bool = True) -> dict[str, np.ndarray]:
    """:func:`first_pass_transforms` with the speaker-independent model, its graph folder and its LM weight given
    (an export folder keeps them outside any recipe's ``exp/``)."""
    graph = Path(graph_dir)
    results = decode_dataset(graph / "HCLG.fst", graph / "words.txt", si.trans_model, GmmScorer(si.am, si.trans_model),
                             list(feats.items()), acoustic_scale=1.0 / lm_weight, num_jobs=num_jobs, progress=progress,
                             **search)
    ali = {u: np.asarray(r.alignment, dtype=np.int32) for u, r in results.items() if r.alignment}
    converted = convert_alignments(si.trans_model, sat.trans_model, sat.ctx_dep, ali)
    return estimate_transforms(sat, feats, converted, utt2spk, silence_phones, silence_weight=silence_weight,
                               min_count=min_count, num_jobs=num_jobs)
