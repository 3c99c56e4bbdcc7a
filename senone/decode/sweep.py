"""Choose the acoustic scale (LM weight = 1 / acoustic scale) on a dev set.

Kaldi decodes once into lattices and rescores them for LM weights 7..17. Our decoder returns the
best path only (kaldi-hmm-gmm exposes no lattice output), so every candidate weight costs one full
decode of the dev set, and a high LM weight (a small acoustic scale) widens the beam search and
slows the decode: on real Mandarin the monophone's dev decode at LM weight 32 ran at 2.2× real time.
Tune on dev, then decode test once with the chosen scale (Kaldi's recipes pick on the reported set
itself; we do not).

Two strategies (``decode.lm_weight_search``):

- ``grid``: decode every candidate, then up to ``extend`` more (×1.2 each) while the best is at an
  end of the grid. On synth_zh's 9..32 that is 9–12 decodes per system.
- ``bracket`` (default): the candidates are the same grid plus its ``extend`` steps beyond each end,
  and the error curve is assumed unimodal over them. The first decode is at ``start`` (LM weight 13:
  real speech's optima lie at 7–17), each later one is chosen by a minimax decision tree
  (:func:`_search_tree`, a Fibonacci search from a given start): the candidates still open are those
  between the nearest tried weights that did worse than the best so far, and the next weight tried is
  the one that keeps the worst case over the possible outcomes smallest. On the default grid that is
  ≤ 5 decodes whenever the optimum is one of ``lm_weights`` (13, then 20, then big steps towards the
  better side, then the neighbours of the best), and one more per ×1.2 step beyond the list's end
  (the price the grid's extension pays too); nothing beyond a weight that did worse than the best is
  ever decoded, so the slow high weights are decoded only while the error keeps falling towards them.
  Among equally short trees the one that decodes the smaller LM weights (the faster decodes) wins.
  A curve that is not unimodal (noise of ±0.1 CER points between neighbours, as on synth_zh's dev)
  may stop at a local minimum: the measured synth_zh curves of BENCHMARKS.md (mono, tri1-tri3) all
  give the grid's choice in 4-5 decodes, and 196 of 200 simulated noisy curves the grid's error rate
  (the other 4 at most 0.18 points above it; tests/test_lm_search.py).

The search decodes with the configured beam and max_active, on at most ``decode.lm_weight_search_hours``
of dev (:func:`search_subset`; synth_zh's 10 minutes are decoded whole, cv_zh's 1.7 hours through
every 4th utterance), and the chosen weight is then decoded on the whole dev set. The cost is bounded
by decoding fewer, lower weights on less audio.

Both return the rates of the weights decoded only, and both break ties (equal error rates) the same
way: towards the scale closest to ``default`` on a log scale (0.05 and 0.2 are equally far from
0.1), then the smaller scale: with no evidence either way we stay with the conventional value.

Scoring stays abstract (``score_fn(hyps, refs) -> error rate``) so this module does not depend on
``senone.score``.
"""

from __future__ import annotations

import logging
import math
import time
from functools import lru_cache
from typing import Any, Callable, Iterable, Mapping, Sequence

from senone import SenoneError

log = logging.getLogger(__name__)

DEFAULT_ACOUSTIC_SCALE = 0.1
#: ``decode.lm_weight_search`` and ``decode.lm_weight_start`` of conf/decode.yaml (a test keeps them equal)
LM_WEIGHT_SEARCHES = ("bracket", "grid")
DEFAULT_LM_WEIGHT_SEARCH = "bracket"
DEFAULT_LM_WEIGHT_START = 13.0
#: ``decode.lm_weight_search_hours``: audio the search decodes at each weight (None: the whole dev set)
DEFAULT_LM_WEIGHT_SEARCH_HOURS = 0.5


def search_subset(durations: Mapping[str, float], hours: float | None) -> list[str]:
    """The utterances the LM-weight search decodes: all of them when they hold at most ``hours`` of audio,
    else every k-th in id order, with k the smallest step that keeps the subset within ``hours``.

    Why a subset: without lattices every weight tried is a full decode (see the module docstring), and
    on real speech a decode runs at 0.1 CPU s per audio s even with max-active 3000 (cv_zh: 1.7 h of dev
    take 10 minutes on 2 cores); the search needs the error curve's minimum, not its value, and half an
    hour of speech (~10k Mandarin characters) places it. Utterance ids start with the speaker (Kaldi's
    convention), so every k-th in id order spreads the subset over the speakers. The chosen weight is
    then decoded on the whole set, which gives the reported dev error rate.
    """
    ids = sorted(durations)
    total = sum(durations.values())
    if hours is None or total <= hours * 3600.0 or not ids:
        return ids
    if hours <= 0:
        raise SenoneError(f"decode.lm_weight_search_hours={hours}: must be > 0 (or null for the whole dev set)")
    k = math.ceil(total / (hours * 3600.0))
    while sum(durations[u] for u in ids[::k]) > hours * 3600.0:
        k += 1
    return ids[::k]


def lmwt_scales(lm_weights: Iterable[float] = (7, 9, 11, 13, 15, 17)) -> list[float]:
    """Acoustic scales equivalent to Kaldi's LM-weight sweep (scale = 1 / LM weight)."""
    return [1.0 / float(w) for w in lm_weights]


def _hyp_words(h: Any) -> Any:
    # Accept DecodeResult values without importing the decoder (keeps this module light).
    return h.words if hasattr(h, "words") and hasattr(h, "alignment") else h


def _search_tree(allowance: Sequence[int], cost: Sequence[float]) -> Callable[[int, int, int], tuple[int, float, int]]:
    """The bracket search's decision tree over candidates ``0..n-1`` (in order along one axis).

    A state ``(lo, hi, b)``: ``b`` is the best candidate tried, ``lo..hi`` the candidates that may still
    hold the minimum of a unimodal curve (none of them tried but ``b``). Trying ``x > b`` leaves
    ``(b+1, hi, x)`` if it is better and ``(lo, x-1, b)`` if not (mirrored for ``x < b``); the search
    ends at ``lo == hi``. ``tree(lo, hi, b)`` returns ``(worst, expected, x)`` for the probe ``x`` that
    minimises, in this order: ``worst``, the most decodes still to come over all outcomes, each less the
    ``allowance`` of the candidate it ends at (Fibonacci search when every allowance is 0); ``expected``,
    the ``cost`` decoded summed over the subtree, each probe counted once per candidate still open (the
    expected cost up to a factor, every open candidate equally likely to be the optimum); ``|x - b|``;
    ``cost[x]``. At a leaf ``x`` is -1.
    """

    @lru_cache(maxsize=None)
    def tree(lo: int, hi: int, b: int) -> tuple[int, float, int]:
        if lo == hi:
            return -allowance[b], 0.0, -1
        best: tuple[int, float, int, float, int] | None = None
        for x in range(lo, hi + 1):
            if x == b:
                continue
            better, worse = ((b + 1, hi, x), (lo, x - 1, b)) if x > b else ((lo, b - 1, x), (x + 1, hi, b))
            w1, e1, _ = tree(*better)
            w2, e2, _ = tree(*worse)
            key = (1 + max(w1, w2), cost[x] * (hi - lo + 1) + e1 + e2, abs(x - b), cost[x], x)
            if best is None or key < best:
                best = key
        assert best is not None
        return best[0], best[1], best[4]

    return tree


def sweep_acoustic_scale(
    decode_fn: Callable[[float], Mapping[str, Any]],
    refs: Mapping[str, Any],
    scales: Sequence[float],
    score_fn: Callable[[Mapping[str, Any], Mapping[str, Any]], float],
    *,
    default: float = DEFAULT_ACOUSTIC_SCALE,
    extend: int = 0,
    step: float = 1.2,
    search: str = DEFAULT_LM_WEIGHT_SEARCH,
    start: float = 1.0 / DEFAULT_LM_WEIGHT_START,
) -> tuple[float, dict[float, float]]:
    """Decode with candidate scales, score against ``refs``, return ``(best_scale, {scale: error_rate})``.

    ``decode_fn(scale)`` returns ``{utt_id: hypothesis}``; values that are ``DecodeResult`` are
    reduced to their word lists before scoring. ``score_fn(hyps, refs)`` returns an error rate
    (lower is better). Each decode is logged with its LM weight, error rate and wall time. Ties go to
    the scale closest to ``default`` on a log scale, then to the smaller scale. The rate dict holds the
    scales decoded, in ascending order. Cache the decodes inside ``decode_fn`` if you want the winner's
    hypotheses without decoding again.

    ``search="grid"``: decode every scale; then, while the best scale is the smallest (or largest)
    tried, try up to ``extend`` more beyond that end, each ``step`` times further (LM weight × 1.2), so
    an optimum outside the grid is found rather than reported at its edge; an interior optimum costs
    nothing extra. ``search="bracket"``: the same candidates (the scales and, when there are two or
    more, ``extend`` steps beyond each end) searched by a decision tree for unimodal curves starting
    at the candidate closest to ``start`` on a log scale (see the module docstring): at most 5 decodes
    of the default 9 LM weights and 3 steps beyond each end, when the optimum is one of the 9.
    """
    uniq = sorted({float(s) for s in scales})
    if not uniq:
        raise SenoneError("acoustic-scale sweep: no scales given; set e.g. decode.lm_weights: [9, 11, 13, 15, 17]")
    if uniq[0] <= 0:
        raise SenoneError(f"acoustic-scale sweep: scales must be > 0, got {uniq[0]}")
    if default <= 0:
        raise SenoneError(f"acoustic-scale sweep: default must be > 0, got {default}")
    if step <= 1.0:
        raise SenoneError(f"acoustic-scale sweep: the extension step must be > 1, got {step}")
    if search not in LM_WEIGHT_SEARCHES:
        raise SenoneError(f"acoustic-scale sweep: unknown search {search!r} (decode.lm_weight_search: "
                          f"one of {', '.join(LM_WEIGHT_SEARCHES)})")
    if start <= 0:
        raise SenoneError(f"acoustic-scale sweep: the start must be > 0, got {start} (decode.lm_weight_start)")
    rates: dict[float, float] = {}

    def try_scale(scale: float) -> None:
        t0 = time.perf_counter()
        hyps = {utt: _hyp_words(h) for utt, h in decode_fn(scale).items()}
        rate = float(score_fn(hyps, refs))
        if math.isnan(rate):
            raise SenoneError(f"acoustic-scale sweep: score_fn returned NaN at scale {scale}")
        rates[scale] = rate
        log.info("LM weight %.4g (acoustic scale %.4f): error rate %.4f, decoded and scored in %.1f s wall "
                 "(%d decodes so far)", 1.0 / scale, scale, rate, time.perf_counter() - t0, len(rates))

    def rank(s: float) -> tuple[float, float, float]:
        return rates[s], abs(math.log(s / default)), s

    def best_scale() -> float:
        return min(rates, key=rank)

    if search == "grid":
        for scale in uniq:
            try_scale(scale)
        for _ in range(extend):
            best, lowest, highest = best_scale(), min(rates), max(rates)
            if best == lowest and len(rates) > 1:
                next_scale = lowest / step
            elif best == highest and len(rates) > 1:
                next_scale = highest * step
            else:
                break
            log.info("acoustic scale sweep: the best (%.4f) is at the end of the grid; trying %.4f (LM weight %.2f)",
                     best, next_scale, 1.0 / next_scale)
            try_scale(next_scale)
        ends = (min(rates), max(rates))
    else:
        # ascending scales; extension points computed as the grid mode computes them (bit-identical keys)
        below, above = [], []
        for _ in range(extend if len(uniq) > 1 else 0):
            below.insert(0, (below[0] if below else uniq[0]) / step)
            above.append((above[-1] if above else uniq[-1]) * step)
        cands = below + uniq + above
        allowance = [len(below) - i for i in range(len(below))] + [0] * len(uniq) + list(range(1, len(above) + 1))
        tree = _search_tree(allowance, [1.0 / s for s in cands])
        lo, hi = 0, len(cands) - 1
        b = min(range(len(cands)), key=lambda i: (abs(math.log(cands[i] / start)), cands[i]))
        log.info("LM-weight search: %d candidates from %.4g to %.4g, starting at %.4g", len(cands),
                 1.0 / cands[-1], 1.0 / cands[0], 1.0 / cands[b])
        try_scale(cands[b])
        while lo < hi:
            x = tree(lo, hi, b)[2]
            try_scale(cands[x])
            if rank(cands[x]) < rank(cands[b]):  # better (or as good and closer to the default)
                lo, hi, b = (b + 1, hi, x) if x > b else (lo, b - 1, x)
            else:
                lo, hi = (lo, x - 1) if x > b else (x + 1, hi)
        ends = (cands[0], cands[-1])
    best = best_scale()
    if best in ends and len(rates) > 1:
        log.warning("acoustic scale sweep: the best scale %.4f (LM weight %.2f) is at the end of the range tried; "
                    "widen decode.lm_weights or raise decode.lm_weight_extend", best, 1.0 / best)
    log.info("acoustic scale sweep (%s): best %.4f (LM weight %.4g, error rate %.4f) after %d decodes", search,
             best, 1.0 / best, rates[best], len(rates))
    return best, dict(sorted(rates.items()))
