"""Choose the acoustic scale on a dev set.

Kaldi decodes once into lattices and rescores them for LM weights 7..17 (LM weight = 1 / acoustic
scale). Our decoder returns the best path only (kaldi-hmm-gmm exposes no lattice output), so every
candidate scale costs one full decode of the dev set; keep the list short (5–7 values) and run
the decodes with several jobs. Tune on dev, then decode test once with the chosen scale (Kaldi's
recipes pick on the reported set itself; we do not).

Scoring stays abstract (``score_fn(hyps, refs) -> error rate``) so this module does not depend on
``senone.score``.
"""

from __future__ import annotations

import logging
import math
from typing import Any, Callable, Iterable, Mapping, Sequence

from senone import SenoneError

log = logging.getLogger(__name__)

DEFAULT_ACOUSTIC_SCALE = 0.1


def lmwt_scales(lm_weights: Iterable[float] = (7, 9, 11, 13, 15, 17)) -> list[float]:
    """Acoustic scales equivalent to Kaldi's LM-weight sweep (scale = 1 / LM weight)."""
    return [1.0 / float(w) for w in lm_weights]


def _hyp_words(h: Any) -> Any:
    # Accept DecodeResult values without importing the decoder (keeps this module light).
    return h.words if hasattr(h, "words") and hasattr(h, "alignment") else h


def sweep_acoustic_scale(
    decode_fn: Callable[[float], Mapping[str, Any]],
    refs: Mapping[str, Any],
    scales: Sequence[float],
    score_fn: Callable[[Mapping[str, Any], Mapping[str, Any]], float],
    *,
    default: float = DEFAULT_ACOUSTIC_SCALE,
    extend: int = 0,
    step: float = 1.2,
) -> tuple[float, dict[float, float]]:
    """Decode with each scale, score against ``refs``, return ``(best_scale, {scale: error_rate})``.

    ``decode_fn(scale)`` returns ``{utt_id: hypothesis}``; values that are ``DecodeResult`` are
    reduced to their word lists before scoring. ``score_fn(hyps, refs)`` returns an error rate
    (lower is better). Ties (equal error rates) go to the scale closest to ``default`` on a log
    scale (0.05 and 0.2 are equally far from 0.1), then to the smaller scale: with no evidence
    either way we stay with the conventional value. The rate dict is in ascending scale order.
    Cache the decodes inside ``decode_fn`` if you want the winner's hypotheses without decoding again.

    ``extend``: while the best scale is the smallest (or largest) tried, try up to ``extend`` more
    beyond that end, each ``step`` times further (LM weight × 1.2), so an optimum outside the grid
    is found rather than reported at its edge; an interior optimum costs nothing extra.
    """
    uniq = sorted({float(s) for s in scales})
    if not uniq:
        raise SenoneError("acoustic-scale sweep: no scales given; set e.g. decode.acoustic_scales: [0.07, 0.083, 0.1]")
    if uniq[0] <= 0:
        raise SenoneError(f"acoustic-scale sweep: scales must be > 0, got {uniq[0]}")
    if default <= 0:
        raise SenoneError(f"acoustic-scale sweep: default must be > 0, got {default}")
    if step <= 1.0:
        raise SenoneError(f"acoustic-scale sweep: the extension step must be > 1, got {step}")
    rates: dict[float, float] = {}

    def try_scale(scale: float) -> None:
        hyps = {utt: _hyp_words(h) for utt, h in decode_fn(scale).items()}
        rate = float(score_fn(hyps, refs))
        if math.isnan(rate):
            raise SenoneError(f"acoustic-scale sweep: score_fn returned NaN at scale {scale}")
        rates[scale] = rate
        log.info("acoustic scale %.4f (LM weight %.2f): error rate %.4f", scale, 1.0 / scale, rate)

    def best_scale() -> float:
        return min(rates, key=lambda s: (rates[s], abs(math.log(s / default)), s))

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
    best = best_scale()
    if best in (min(rates), max(rates)) and len(rates) > 1:
        log.warning("acoustic scale sweep: the best scale %.4f (LM weight %.2f) is at the end of the range tried; "
                    "widen decode.lm_weights or raise decode.lm_weight_extend", best, 1.0 / best)
    log.info("acoustic scale sweep: best %.4f (error rate %.4f) of %d", best, rates[best], len(rates))
    return best, dict(sorted(rates.items()))
