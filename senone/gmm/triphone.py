"""Decision-tree triphone stages (Kaldi's ``train_deltas.sh``; the tree part also serves LDA+MLLT
and SAT, which differ only in their features and a per-pass transform update).

From the previous stage's alignments: tree statistics on this stage's features → automatic phone
questions (cluster-phones) plus the lang's extra questions (tones, silence) → a tree with one
shared root per phone set → one Gaussian per leaf → the old alignments converted to the new tree →
Viterbi-EM passes with realignment and mixing up.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Mapping

import kaldifst
import numpy as np

from senone.gmm.align import compile_training_graphs
from senone.gmm.passes import (FeatureSource, InputFingerprint, PassConfig, PassHook, PassRecord, final_alignment,
                               load_checkpoint, run_passes, save_checkpoint)
from senone.hmm.model import GmmHmm
from senone.hmm.questions import cluster_phones, compile_questions
from senone.hmm.tree import build_tree, convert_alignments, init_model_from_tree, roots_from_sets
from senone.hmm.tree_stats import accumulate_tree_stats
from senone.io import write_json
from senone.lang.prepare import Lang

log = logging.getLogger(__name__)


@dataclass
class TriConfig(PassConfig):
    """train_deltas.sh defaults: 35 passes, realign at 10/20/30, mixing up over the first 25."""

    num_leaves: int = 1000
    tot_gauss: int = 8000
    min_leaf_count: float = 100.0
    cluster_thresh: float = -1.0


@dataclass
class TriResult:
    model: GmmHmm
    alignments: dict[str, np.ndarray]
    history: list[PassRecord] = field(default_factory=list)
    tree_summary: dict = field(default_factory=dict)


def build_triphone_model(lang: Lang, prev: GmmHmm, prev_alignments: Mapping[str, np.ndarray], feats: FeatureSource,
                         config: TriConfig) -> tuple[GmmHmm, dict[str, np.ndarray], dict]:
    """acc-tree-stats → cluster-phones → compile-questions → build-tree → gmm-init-model → convert-ali."""
    t0 = time.time()
    topo = lang.topology()
    stats = accumulate_tree_stats(prev.trans_model, prev_alignments, feats, ci_phones=lang.silence_phones,
                                  num_jobs=config.num_jobs)
    auto = cluster_phones(stats, lang.phone_sets, seed=config.seed)
    questions = compile_questions(topo, {"cluster-phones": auto, f"{lang.dir}/phones/extra_questions.int":
                                         lang.extra_questions})
    result = build_tree(stats, questions, roots_from_sets(lang.phone_sets), topo, max_leaves=config.num_leaves,
                        cluster_thresh=config.cluster_thresh, min_count=config.min_leaf_count)
    ctx_dep = result.tree.to_kaldi()
    trans_model, am = init_model_from_tree(result.tree, result.leaf_stats, topo)
    model = GmmHmm(ctx_dep=ctx_dep, trans_model=trans_model, am=am)
    alignments = convert_alignments(prev.trans_model, trans_model, ctx_dep, prev_alignments)
    summary = result.summary() | {"num_questions": len(auto), "seconds": time.time() - t0}
    log.info("tree: %d leaves (%d merged), like gain %.3f/frame, %d automatic questions (%.1fs)",
             result.num_leaves, result.num_merged, result.like_gain_per_frame, len(auto), time.time() - t0)
    return model, alignments, summary


def tree_stage_inputs(lang: Lang, lexicon_fst: kaldifst.StdVectorFst, transcripts: Mapping[str, list[int]],
                      feats: FeatureSource, prev: GmmHmm, prev_alignments: Mapping[str, np.ndarray],
                      num_jobs: int = 1, extra: Mapping[str, object] | None = None) -> str:
    """The fingerprint of what a tree stage trains on besides its settings (its resume key's second half):
    the lang (topology, phone sets, questions, L), transcripts, features, the previous stage's model and
    alignments, and ``extra`` (e.g. SAT's speaker map). LDA+MLLT and SAT pass their stage's *input*
    features here (static, or the LDA+MLLT features before fMLLR), not the transformed ones, which
    depend on how far a run got."""
    fp = InputFingerprint().add_object("topology", lang.topology()).add_fst("L", lexicon_fst)
    fp.add_object("lang", {"phone_sets": lang.phone_sets, "extra_questions": lang.extra_questions,
                           "silence": lang.silence_phones, "disambig": lang.disambig_phones})
    fp.add_arrays("transcripts", transcripts)
    fp.add_object("prev_model", (prev.ctx_dep.__getstate__(), prev.trans_model, prev.am))
    fp.add_arrays("prev_alignments", prev_alignments)
    for name, value in sorted((extra or {}).items()):
        fp.add_object(name, value)
    return fp.add_features("features", feats, num_jobs).hexdigest()


def train_triphone(lang: Lang, lexicon_fst: kaldifst.StdVectorFst, transcripts: Mapping[str, list[int]],
                   feats: FeatureSource, prev: GmmHmm, prev_alignments: Mapping[str, np.ndarray],
                   out_dir: str | Path, config: TriConfig = TriConfig(), *, hook: PassHook | None = None,
                   name: str = "tri", streaming: bool = False, inputs: str | None = None) -> TriResult:
    """Train a triphone system from the previous stage's model and alignments; resumable per pass.

    ``hook`` updates a feature transform during the passes (LDA+MLLT, SAT). ``streaming``: the
    features are read from storage on every pass, so the training graphs are compiled when each
    alignment needs them rather than all kept in memory. Writes ``final.{mdl,pkl}``,
    ``tree``, ``tree.json`` and ``history.json`` into ``out_dir``.

    ``inputs``: the stage's :func:`tree_stage_inputs` fingerprint (LDA+MLLT and SAT compute it on
    their own input features); by default it is computed here on ``feats``. A checkpoint of other
    settings or inputs is not resumed.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ckpt_path = out_dir / "checkpoint.pkl"
    if inputs is None:
        inputs = tree_stage_inputs(lang, lexicon_fst, transcripts, feats, prev, prev_alignments, config.num_jobs)
    ck = load_checkpoint(ckpt_path, config, inputs)
    if ck is not None:
        model, alignments, num_gauss, start_iter = ck["model"], ck["alignments"], ck["num_gauss"], ck["next_iter"]
        history, summary = ck["history"], ck["extra"].get("tree_summary", {})
        log.info("resuming %s training at pass %d", name, start_iter)
    else:
        model, alignments, summary = build_triphone_model(lang, prev, prev_alignments, feats, config)
        num_gauss, start_iter, history = model.num_pdfs, 1, []
        write_json(out_dir / "tree.json", summary)
    inc_gauss = max((config.tot_gauss - model.num_pdfs) // max(config.max_iter_inc, 1), 0)

    t0 = time.time()
    graphs = compile_training_graphs(model, lexicon_fst, lang.disambig_phones, transcripts, lazy=streaming)
    log.info("compiled %d training graphs in %.1fs", len(graphs), time.time() - t0)

    def checkpoint(*args) -> None:
        save_checkpoint(ckpt_path, *args, extra={"tree_summary": summary}, config=config, inputs=inputs)

    alignments, num_gauss, feats = run_passes(model, graphs, feats, alignments, config, start_iter=start_iter,
                                              num_gauss=num_gauss, inc_gauss=inc_gauss, history=history,
                                              checkpoint=checkpoint, hook=hook, desc=f"{name} pass")
    alignments, astats = final_alignment(model, graphs, feats, config)
    model.save(out_dir)
    write_json(out_dir / "history.json", {"config": asdict(config), "tree": summary,
                                          "passes": [asdict(h) for h in history],
                                          "final_alignment": asdict(astats) | {"like_per_frame": astats.like_per_frame}})
    return TriResult(model=model, alignments=alignments, history=history, tree_summary=summary)
