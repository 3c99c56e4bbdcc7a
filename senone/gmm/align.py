"""Training graphs, equal (flat-start) alignment and Viterbi alignment with kaldi-hmm-gmm.

Follows Kaldi's ``compile-train-graphs`` / ``align-equal-compiled`` / ``gmm-align-compiled``:
training graphs are compiled once without transition probabilities (Kaldi's compile-train-graphs
sets both scales to 0 because the probabilities change every pass) and the current model's
transition log-probabilities are added to a copy of each graph before aligning.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from collections.abc import Mapping
from typing import Iterable

import kaldi_hmm_gmm as khg
import kaldifst
import numpy as np

from senone.hmm.model import GmmHmm
from senone.parallel import map_shards, shared

log = logging.getLogger(__name__)


@dataclass
class AlignStats:
    num_done: int = 0
    num_failed: int = 0
    num_retried: int = 0
    tot_like: float = 0.0
    num_frames: int = 0

    @property
    def like_per_frame(self) -> float:
        return self.tot_like / max(self.num_frames, 1)


def _graph_compiler(model: GmmHmm, lexicon_fst: kaldifst.StdVectorFst,
                    disambig_phones: list[int]) -> khg.TrainingGraphCompiler:
    opts = khg.TrainingGraphCompilerOptions()
    opts.transition_scale = 0.0
    opts.self_loop_scale = 0.0
    return khg.TrainingGraphCompiler(model.trans_model, model.ctx_dep, lexicon_fst, list(disambig_phones), opts)


class LazyTrainingGraphs(Mapping):
    """Training graphs compiled when asked (``compile-train-graphs`` per utterance, every time).

    For corpora whose features are streamed: 2 h of graphs take ~90 MB, 150 h would take ~7 GB.
    Compiling costs about a third of aligning the utterance, paid on each realignment; forked
    alignment workers compile their own shard.
    """

    def __init__(self, model: GmmHmm, lexicon_fst: kaldifst.StdVectorFst, disambig_phones: list[int],
                 transcripts: Mapping[str, list[int]]):
        self._compiler = _graph_compiler(model, lexicon_fst, disambig_phones)
        self._transcripts = transcripts

    def __getitem__(self, utt: str) -> kaldifst.StdVectorFst:
        return self._compiler.compile_graph_from_text(list(self._transcripts[utt]))

    def __iter__(self):
        return iter(self._transcripts)

    def __len__(self) -> int:
        return len(self._transcripts)

    def __contains__(self, utt: object) -> bool:
        return utt in self._transcripts


def compile_training_graphs(model: GmmHmm, lexicon_fst: kaldifst.StdVectorFst, disambig_phones: list[int],
                            transcripts: Mapping[str, list[int]], lazy: bool = False
                            ) -> Mapping[str, kaldifst.StdVectorFst]:
    """One HCLG-like acceptor per utterance (no transition probabilities yet), keyed by utterance id;
    all compiled now, or (``lazy``) each when it is needed."""
    if lazy:
        return LazyTrainingGraphs(model, lexicon_fst, disambig_phones, transcripts)
    compiler = _graph_compiler(model, lexicon_fst, disambig_phones)
    return {utt: compiler.compile_graph_from_text(list(words)) for utt, words in transcripts.items()}


def _with_transition_probs(model: GmmHmm, graph: kaldifst.StdVectorFst, transition_scale: float,
                           self_loop_scale: float) -> kaldifst.StdVectorFst:
    fst = kaldifst.StdVectorFst(graph)
    khg.add_transition_probs(model.trans_model, [], transition_scale, self_loop_scale, fst)
    return fst


def equal_align(graph: kaldifst.StdVectorFst, num_frames: int, seed: int) -> list[int] | None:
    """A random path through the graph with exactly ``num_frames`` transition-ids (flat start).

    Returns ``None`` when no such path exists (utterance shorter than its minimum HMM length).
    """
    ok, path = kaldifst.equal_align(graph, num_frames, seed)
    if not ok:
        return None
    ok, isymbols, _osymbols, _weight = kaldifst.get_linear_symbol_sequence(path)
    if not ok:
        return None
    tids = [t for t in isymbols if t != 0]
    return tids if len(tids) == num_frames else None


def _align_shard(utts: list[str]) -> tuple[dict[str, np.ndarray], AlignStats]:
    s = shared()
    return _align_serial(s["model"], s["graphs"], ((u, s["feats"][u]) for u in utts), **s["opts"])


def align(model: GmmHmm, graphs: Mapping[str, kaldifst.StdVectorFst], feats: Mapping[str, np.ndarray],
          *, beam: float = 10.0, retry_beam: float = 40.0, acoustic_scale: float = 0.1,
          transition_scale: float = 1.0, self_loop_scale: float = 0.1,
          careful: bool = False, num_jobs: int = 1) -> tuple[dict[str, np.ndarray], AlignStats]:
    """Viterbi-align each utterance to its training graph with the current model (C++ aligner).

    Utterances whose alignment fails even with the retry beam are left out of the result and
    counted, as Kaldi's aligner does. With ``num_jobs > 1`` the utterances are split over forked
    worker processes (Kaldi's ``JOB=1:nj``), which see the graphs and features without copying.
    """
    opts = dict(beam=beam, retry_beam=retry_beam, acoustic_scale=acoustic_scale, transition_scale=transition_scale,
                self_loop_scale=self_loop_scale, careful=careful)
    utts = [u for u in feats.keys() if u in graphs]
    parts = map_shards(_align_shard, utts, num_jobs, model=model, graphs=graphs, feats=feats, opts=opts)
    out: dict[str, np.ndarray] = {}
    stats = AlignStats()
    for ali, st in parts:
        out.update(ali)
        stats.num_done += st.num_done
        stats.num_failed += st.num_failed
        stats.num_retried += st.num_retried
        stats.tot_like += st.tot_like
        stats.num_frames += st.num_frames
    return {u: out[u] for u in utts if u in out}, stats


def _align_serial(model: GmmHmm, graphs: Mapping[str, kaldifst.StdVectorFst], feats: Iterable[tuple[str, np.ndarray]],
                  *, beam: float, retry_beam: float, acoustic_scale: float, transition_scale: float,
                  self_loop_scale: float, careful: bool) -> tuple[dict[str, np.ndarray], AlignStats]:
    config = khg.AlignConfig()
    config.beam = beam
    config.retry_beam = retry_beam
    config.careful = careful
    stats = AlignStats()
    out: dict[str, np.ndarray] = {}
    for utt, x in feats:
        graph = graphs.get(utt)
        if graph is None:
            continue
        fst = _with_transition_probs(model, graph, transition_scale, self_loop_scale)
        decodable = khg.DecodableAmDiagGmmScaled(model.am, model.trans_model, x, acoustic_scale)
        done, failed, retried, tot_like, frames, ali, _words = khg.align_utterance_wrapper(
            config, utt, acoustic_scale, fst, decodable, 0, 0, 0, 0.0, 0)
        stats.num_retried += retried
        if done and len(ali) == x.shape[0]:
            out[utt] = np.asarray(ali, dtype=np.int32)
            stats.num_done += 1
            stats.tot_like += tot_like
            stats.num_frames += frames
        else:
            stats.num_failed += 1
            log.debug("alignment failed for %s", utt)
    return out, stats
