"""Build the decoding graph HCLG = H ∘ C ∘ L ∘ G the way Kaldi's ``utils/mkgraph.sh`` does.

Order (each arrow one OpenFst/Kaldi operation, as in mkgraph.sh):

    L_disambig ∘ G → determinize* (log) → minimize-encoded                      = LG
    compose-context(N, P, disambig phones) ∘ LG                                 = CLG, ilabel_info
    H(ilabel_info, tree, transition model, transition-scale) ∘ CLG
        → determinize* (log) → replace disambiguation transition-ids by ε
        → minimize-encoded                                                      = HCLGa
    add-self-loops(self-loop-scale, reorder)                                    = HCLG

Determinization runs in the log semiring (``--use-log=true`` in mkgraph) so that LG and HCLG stay
stochastic. H carries the non-self-loop transition log-probabilities scaled by
``transition_scale``; ``add_self_loops`` adds the self-loops with ``self_loop_scale`` and
renormalises the forward transitions, so no separate add-transition-probs step is needed.

Not reproduced: ``fstpushspecial`` on LG and ``fstrmepslocal`` on HCLGa, which kaldifst lacks.
Both only tidy weights/epsilons; the graph accepts the same paths with the same total weights.
HCLG is written as an OpenFst ``vector`` FST (Kaldi writes ``const``; every Kaldi and kaldifst
reader accepts ``vector``, while kaldifst cannot read ``const``).
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from pathlib import Path

import kaldi_hmm_gmm as khg
import kaldifst
import numpy as np

from senone import SenoneError
from senone.graph.fst_utils import (
    arrays_to_fst,
    fst_to_arrays,
    read_fst,
    relabelled_properties,
    stochasticity,
    write_fst,
    zero_labels,
)
from senone.io import atomic_path, read_symbol_table, require_file, write_json, write_text

log = logging.getLogger(__name__)


def read_int_list(path: str | os.PathLike) -> list[int]:
    """Read a Kaldi ``.int`` file with one integer per line (e.g. ``phones/disambig.int``)."""
    path = Path(path)
    out: list[int] = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            parts = line.split()
            if not parts:
                continue
            try:
                out.append(int(parts[0]))
            except ValueError:
                raise SenoneError(f"{path}:{lineno}: expected an integer, got {line.strip()!r}") from None
    return out


class _StepTimer:
    """Logs one line per graph-building step with its wall time and the graph size."""

    def __init__(self) -> None:
        self.t0 = time.perf_counter()
        self.last = self.t0
        self.steps: dict[str, float] = {}

    def done(self, name: str, fst: kaldifst.StdFst | None = None) -> None:
        now = time.perf_counter()
        self.steps[name] = round(now - self.last, 3)
        size = f", {fst.num_states} states" if fst is not None else ""
        log.info("mkgraph: %-34s %7.2f s%s", name, now - self.last, size)
        self.last = now

    @property
    def total(self) -> float:
        return time.perf_counter() - self.t0


def _check_phones(lang_dir: Path, phones: dict[str, int], disambig: list[int], trans_model: khg.TransitionModel) -> None:
    """The lang dir and the model must agree on phone ids, or the graph silently means nonsense."""
    lang_ids = {i for s, i in phones.items() if s != "<eps>" and not s.startswith("#")}
    model_ids = set(trans_model.phones)
    missing = sorted(model_ids - lang_ids)
    if missing:
        raise SenoneError(
            f"{lang_dir}/phones.txt: model phone ids {missing[:5]} are not (non-disambiguation) phones "
            "here; the model was trained on a different lang dir — rebuild the graph with the matching one"
        )
    if not disambig:
        raise SenoneError(f"{lang_dir}/phones/disambig.int: empty; the lang stage must write #0..#N ids")
    bad = sorted(set(disambig) & model_ids)
    if bad:
        raise SenoneError(f"{lang_dir}/phones/disambig.int: ids {bad[:5]} are model phones, not disambiguation symbols")


def _check_g_words(lfst: kaldifst.StdFst, gfst: kaldifst.StdFst, words_txt: Path) -> None:
    """Warn about words G can emit that L cannot: composition silently drops their paths."""
    l_words = np.unique(fst_to_arrays(lfst).olabel)
    g_words = np.unique(fst_to_arrays(gfst).ilabel)
    missing = np.setdiff1d(g_words[g_words > 0], l_words)
    if missing.size:
        id2word = {i: w for w, i in read_symbol_table(words_txt).items()}
        names = [id2word.get(int(i), f"<id {int(i)}>") for i in missing[:10]]
        log.warning("mkgraph: %d word(s) in G have no pronunciation in L_disambig and cannot be recognised "
                    "(e.g. %s); build G and the lexicon from the same words.txt", missing.size, ", ".join(names))


def make_hclg(
    lang_dir: str | os.PathLike,
    g_fst_path: str | os.PathLike,
    ctx_dep: khg.ContextDependency,
    trans_model: khg.TransitionModel,
    out_dir: str | os.PathLike,
    *,
    self_loop_scale: float = 0.1,
    transition_scale: float = 1.0,
) -> Path:
    """Build ``out_dir/HCLG.fst`` (plus words.txt, phones.txt, disambig_tid.int, graph.json).

    ``lang_dir`` needs ``L_disambig.fst``, ``phones.txt``, ``words.txt`` and
    ``phones/disambig.int``; ``g_fst_path`` is the grammar with ``#0`` on backoff arcs. The
    context width and central position come from ``ctx_dep`` (1/0 for a monophone tree, 3/1 for
    triphones). Returns the path of HCLG.fst. Every file is written atomically, HCLG.fst last
    but one and graph.json last, so a complete graph.json means a complete graph dir.
    """
    lang_dir, out_dir = Path(lang_dir), Path(out_dir)
    l_path = require_file(lang_dir / "L_disambig.fst", "lang")
    phones_txt = require_file(lang_dir / "phones.txt", "lang")
    words_txt = require_file(lang_dir / "words.txt", "lang")
    disambig_int = require_file(lang_dir / "phones" / "disambig.int", "lang")
    g_path = require_file(g_fst_path, "lm (G.fst)")

    phones = read_symbol_table(phones_txt)
    disambig_phones = read_int_list(disambig_int)
    _check_phones(lang_dir, phones, disambig_phones, trans_model)
    n, p = int(ctx_dep.context_width), int(ctx_dep.central_position)
    log.info("mkgraph: %s + %s -> %s (context %d/%d, %d pdfs, %d transition-ids)",
             l_path, g_path, out_dir, n, p, trans_model.num_pdfs, trans_model.num_transition_ids)

    timer = _StepTimer()
    lfst = read_fst(l_path)
    gfst = read_fst(g_path)
    _check_g_words(lfst, gfst, words_txt)
    kaldifst.arcsort(lfst, sort_type="olabel")
    kaldifst.arcsort(gfst, sort_type="ilabel")
    timer.done("read L_disambig, G")

    # --- LG ------------------------------------------------------------------------------------
    lg = kaldifst.StdVectorFst(kaldifst.compose(lfst, gfst))
    del lfst, gfst
    if lg.num_states == 0:
        raise SenoneError(
            f"{l_path} ∘ {g_path} is empty: G's words are not L's output words; build G with "
            f"{words_txt} as its symbol table"
        )
    timer.done("compose L_disambig G", lg)
    if kaldifst.determinize_star(lg, use_log=True):
        raise SenoneError("determinizing LG stopped early (max states); the lexicon may lack disambiguation symbols")
    timer.done("determinize_star LG (log)", lg)
    kaldifst.minimize_encoded(lg)
    timer.done("minimize_encoded LG", lg)
    lg_stoch = stochasticity(lg)
    timer.done("stochasticity LG")

    # --- CLG -----------------------------------------------------------------------------------
    clg, ilabel_info = kaldifst.compose_context(
        disambig_syms=disambig_phones, context_width=n, central_position=p, ifst=lg
    )
    del lg
    kaldifst.arcsort(clg, sort_type="ilabel")
    timer.done(f"compose_context N={n} P={p}", clg)

    # --- H ∘ CLG -------------------------------------------------------------------------------
    h, disambig_tids = khg.get_h_transducer(
        ilabel_info=ilabel_info,
        ctx_dep=ctx_dep,
        trans_model=trans_model,
        config=khg.HTransducerConfig(transition_scale=transition_scale),
    )
    kaldifst.arcsort(h, sort_type="olabel")
    timer.done("make H transducer", h)
    hclg = kaldifst.StdVectorFst(kaldifst.compose(h, clg))
    del h, clg
    if hclg.num_states == 0:
        raise SenoneError("H ∘ CLG is empty: the tree/transition model does not cover the lang's phones")
    timer.done("compose H CLG", hclg)
    if kaldifst.determinize_star(hclg, use_log=True):
        raise SenoneError("determinizing HCLG stopped early (max states)")
    timer.done("determinize_star HCLG (log)", hclg)
    # fstrmsymbols on the array form; HCLGa's stochasticity (what mkgraph checks) comes for free.
    arrays = fst_to_arrays(hclg)
    n_removed = zero_labels(arrays, disambig_tids, on="input")
    hclga_stoch = stochasticity(arrays)
    hclg = arrays_to_fst(arrays, properties=relabelled_properties(hclg))
    del arrays
    log.info("mkgraph: %d arcs had disambiguation transition-ids, now epsilon", n_removed)
    timer.done("remove disambiguation tids", hclg)
    kaldifst.minimize_encoded(hclg)
    timer.done("minimize_encoded HCLGa", hclg)

    # --- self-loops ----------------------------------------------------------------------------
    hclg = khg.add_self_loops(
        self_loop_scale=self_loop_scale, disambig_syms=[], reorder=True, trans_model=trans_model, ifst=hclg
    )
    timer.done(f"add_self_loops scale={self_loop_scale}", hclg)

    # mkgraph checks LG and HCLGa (HCLG itself is not stochastic once self-loops are scaled).
    # A backoff G sums to more than 1 at many states (max > 0): normal. Less than 1 (min < 0)
    # means probability mass was lost on the way, e.g. a bad G or weights dropped in composition.
    level = logging.WARNING if min(lg_stoch[0], hclga_stoch[0]) < -0.1 else logging.INFO
    log.log(level, "mkgraph: stochasticity (min, max): LG %.3f, %.3f; HCLGa %.3f, %.3f%s", *lg_stoch, *hclga_stoch,
            " — some states lose probability mass; check G" if level == logging.WARNING else "")
    num_states = int(hclg.num_states)
    num_arcs = sum(map(hclg.num_arcs, range(num_states)))  # cheaper than an array copy here
    num_ieps = sum(map(hclg.num_input_epsilons, range(num_states)))
    timer.done("count arcs")

    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "graph.json").unlink(missing_ok=True)  # a stale one must not vouch for a half-new dir
    for src in (words_txt, phones_txt):
        with atomic_path(out_dir / src.name) as tmp:
            shutil.copyfile(src, tmp)
    write_text(out_dir / "disambig_tid.int", "".join(f"{t}\n" for t in disambig_tids))
    hclg_path = write_fst(hclg, out_dir / "HCLG.fst")
    timer.done("write")
    info = {
        "HCLG": "HCLG.fst",
        "num_states": num_states,
        "num_arcs": num_arcs,
        "num_input_epsilon_arcs": num_ieps,
        "context_width": n,
        "central_position": p,
        "num_pdfs": int(trans_model.num_pdfs),
        "num_transition_ids": int(trans_model.num_transition_ids),
        "num_disambig_tids": len(disambig_tids),
        "self_loop_scale": self_loop_scale,
        "transition_scale": transition_scale,
        "lg_stochasticity": [round(x, 4) for x in lg_stoch],
        "hclga_stochasticity": [round(x, 4) for x in hclga_stoch],
        "lang_dir": str(lang_dir),
        "g_fst": str(g_path),
        "build_seconds": round(timer.total, 2),
        "step_seconds": timer.steps,
    }
    write_json(out_dir / "graph.json", info)
    log.info("mkgraph: HCLG %d states, %d arcs, built in %.1f s -> %s",
             num_states, num_arcs, timer.total, hclg_path)
    return hclg_path


__all__ = ["make_hclg", "read_int_list"]
