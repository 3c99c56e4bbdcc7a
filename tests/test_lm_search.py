"""The LM-weight search on dev (decode.lm_weight_search: bracket): the grid's choice in at most 5 decodes.

Every curve is a function of the LM weight; ``decode_fn`` records each call, so the number of dev decodes is
counted exactly. The grid's answer is ``search="grid"`` (today's sweep) on the same curve.
"""

from __future__ import annotations

import logging
import math
import random
from pathlib import Path

import pytest
import yaml

from senone import SenoneError
from senone.decode import (
    DEFAULT_LM_WEIGHT_SEARCH,
    DEFAULT_LM_WEIGHT_START,
    sweep_acoustic_scale,
)
from senone.score.report import plot_acwt_sweep

CONF = Path(__file__).resolve().parent.parent / "conf"
DECODE = yaml.safe_load((CONF / "decode.yaml").read_text())["decode"]
NN_DECODE = {**DECODE, **(yaml.safe_load((CONF / "nn.yaml").read_text())["nn"].get("decode") or {})}  # rules/nn.smk
WEIGHTS = [float(w) for w in DECODE["lm_weights"]]  # 9..32
EXTEND = int(DECODE["lm_weight_extend"])  # 3


def _candidates(weights=WEIGHTS, extend=EXTEND, step=1.2):
    """The LM weights the search may decode: the list and ``extend`` steps beyond each end (ascending)."""
    w = sorted(weights)
    return [w[0] / step**k for k in range(extend, 0, -1)] + w + [w[-1] * step**k for k in range(1, extend + 1)]


def _search(curve, search="bracket", weights=WEIGHTS, extend=EXTEND, **kw):
    """Run the search on ``curve(lm_weight) -> error``; return (best LM weight, {weight: error}, weights decoded)."""
    calls: list[float] = []

    def decode_fn(scale):
        calls.append(1.0 / scale)
        return {"u": [scale]}

    best, rates = sweep_acoustic_scale(decode_fn, {}, [1.0 / w for w in weights], lambda h, r: curve(1.0 / h["u"][0]),
                                       extend=extend, search=search, **kw)
    assert len(set(calls)) == len(calls) == len(rates)  # each weight decoded once
    return 1.0 / best, {1.0 / s: r for s, r in rates.items()}, calls


def _steps_beyond(w, weights=WEIGHTS, step=1.2):
    """How many ×1.2 steps ``w`` lies beyond the end of ``weights`` (0 inside)."""
    return round(max(0.0, math.log(min(weights) / w), math.log(w / max(weights))) / math.log(step))


def _v_curve(opt, left=1.0, right=1.0):
    """Strictly unimodal in log(LM weight), minimum at ``opt``, slopes ``left``/``right``."""
    return lambda w: 10.0 + (left if w < opt else right) * abs(math.log(w / opt))


@pytest.mark.parametrize("opt", _candidates())
def test_every_optimum_on_the_grid_found_in_at_most_five_decodes_plus_one_per_step_beyond(opt):
    """Interior, at either end of lm_weights (9, 32) and beyond it (7.5..5.2, 38.4..55.3): the grid's answer;
    ≤ 5 decodes when the optimum is one of lm_weights, one more per ×1.2 step beyond (the grid: 9-12)."""
    for left, right in ((1.0, 1.0), (3.0, 0.3), (0.3, 3.0)):
        curve = _v_curve(opt, left, right)
        best, rates, calls = _search(curve)
        gbest, grates, gcalls = _search(curve, "grid")
        assert best == pytest.approx(opt) and gbest == pytest.approx(opt)
        assert all(rates[w] == grates[w] for w in rates if w in grates)
        assert len(calls) <= 5 + _steps_beyond(opt), (opt, calls)
        assert calls[0] == DEFAULT_LM_WEIGHT_START
        if WEIGHTS[0] <= opt <= WEIGHTS[-1]:
            assert len(calls) <= 5 and len(gcalls) >= 9


def test_stops_climbing_once_the_error_rises():
    """Real speech (optimum near 9): never decodes above the first weight that did worse than 13."""
    best, rates, calls = _search(_v_curve(9.0))
    assert best == 9.0 and max(calls) <= 20 and len(calls) <= 5
    best, rates, calls = _search(_v_curve(11.0))
    assert best == 11.0 and calls == [13.0, 20.0, 11.0, 9.0]  # big step, then the better side, then its neighbour


def test_decodes_listed_in_the_rate_dict_and_logged(caplog):
    with caplog.at_level(logging.INFO, logger="senone.decode.sweep"):
        best, rates, calls = _search(_v_curve(23.0))
    assert sorted(rates) == sorted(calls)  # the weights tried, nothing else (best_lm_weight.json's dict)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("LM weight ")]
    assert len(lines) == len(calls) and all("error rate" in m and " s wall" in m for m in lines)
    assert lines[0].startswith("LM weight 13 ")


#: BENCHMARKS.md, "LM weight sweep on dev (CER %)": synth_zh's measured dev curves on the grid 9..32 (+38.4 where
#: the grid's extension decoded it); the grid chose mono 11, tri1 20, tri2 32, tri3 23 (the table's *).
MEASURED = {
    "mono": ({9: 21.80, 11: 21.40, 13: 21.46, 15: 21.46, 17: 21.80, 20: 21.68, 23: 21.85, 27: 21.74, 32: 22.47}, 11),
    "tri1": ({9: 19.99, 11: 19.54, 13: 18.80, 15: 18.13, 17: 17.67, 20: 17.05, 23: 17.45, 27: 17.62, 32: 17.62}, 20),
    "tri2": ({9: 19.82, 11: 18.75, 13: 18.13, 15: 17.67, 17: 17.39, 20: 17.05, 23: 16.71, 27: 16.54, 32: 16.26,
              38.4: 16.49}, 32),
    "tri3": ({9: 15.13, 11: 14.85, 13: 14.74, 15: 14.68, 17: 14.62, 20: 14.51, 23: 14.29, 27: 14.40, 32: 14.40}, 23),
}


@pytest.mark.parametrize("system", sorted(MEASURED))
def test_measured_synth_zh_dev_curves(system):
    """The real curves (noisy: mono's 20 beats 17; tri1 flat at 27-32): the grid's choice in ≤ 5 decodes, each of
    them a measured weight (a KeyError would mean the search wanted one the benchmark never decoded)."""
    table, chosen = MEASURED[system]

    def curve(w):
        return table[round(w, 6)]

    best, rates, calls = _search(curve)
    gbest, _, gcalls = _search(curve, "grid")
    assert best == gbest == chosen
    assert len(calls) <= 5 < len(gcalls)


def test_flat_curves_and_ties_keep_the_grid_tie_rule():
    """Equal error rates go to the weight closest to 10 (acoustic scale 0.1) on a log scale, as the grid does."""
    flat = lambda w: 5.0  # noqa: E731
    best, _, calls = _search(flat)
    gbest, _, _ = _search(flat, "grid")
    assert best == gbest == 11.0 and len(calls) <= 5
    # a plateau at the minimum (23..32 equal), and one above it (tri1's 27-32)
    for curve in (lambda w: 12.0 + max(0.0, math.log(23 / w)) + max(0.0, math.log(w / 32)),
                  lambda w: 12.0 + min(abs(math.log(w / 17)), 0.4)):
        best, rates, calls = _search(curve)
        gbest, grates, _ = _search(curve, "grid")
        assert rates[best] == min(grates.values()) and len(calls) <= 5
        assert best == gbest or rates[best] == grates[gbest]
    # two neighbours tie at the minimum: the one nearer 10 wins, as in the grid
    two = lambda w: {15: 3.0, 17: 3.0}.get(round(w), 3.0 + abs(math.log(w / 16)))  # noqa: E731
    assert _search(two)[0] == _search(two, "grid")[0] == 15.0


def test_noisy_near_unimodal_curves():
    """Real dev curves wobble by ±0.1 CER points between neighbours (synth_zh's 10-minute dev: one error is 0.05).
    On 200 seeded curves (optimum anywhere in 9..32, curvature 1-6 points per log² unit, noise ±0.1): the grid's
    error in ≥ 95% of them, never more than 0.2 points worse, ~4.7 decodes on average (grid: ~9.2)."""
    same, worst, decodes, grid_decodes = 0, 0.0, [], []
    for seed in range(200):
        rng = random.Random(seed)
        opt = math.exp(rng.uniform(math.log(9), math.log(32)))
        curvature = rng.uniform(1, 6)
        noise: dict[float, float] = {}

        def curve(w):
            key = round(w, 6)
            if key not in noise:
                noise[key] = rng.uniform(-0.1, 0.1)
            return round(14 + curvature * math.log(w / opt) ** 2 + noise[key], 2)

        gbest, grates, gcalls = _search(curve, "grid")
        best, rates, calls = _search(curve)  # the same noise draw at each weight
        same += rates[best] == grates[gbest]
        worst = max(worst, rates[best] - grates[gbest])
        decodes.append(len(calls))
        grid_decodes.append(len(gcalls))
    assert same >= 190 and worst <= 0.2 + 1e-9
    assert sum(decodes) / len(decodes) <= 5 and max(decodes) <= 6 and sum(grid_decodes) / len(grid_decodes) >= 9


def test_network_grid_and_short_lists():
    """nn.decode's lm_weights [7..15] (start 13 from decode): ≤ 4 decodes for an optimum in the list; a single weight
    is one decode with no extension (tests/e2e.py's [1000]); a two-weight list still finds its optimum."""
    nn_weights = [float(w) for w in NN_DECODE["lm_weights"]]
    start = float(NN_DECODE.get("lm_weight_start", DEFAULT_LM_WEIGHT_START))
    for opt in nn_weights:
        best, _, calls = _search(_v_curve(opt), weights=nn_weights, start=1.0 / start,
                                 search=NN_DECODE.get("lm_weight_search", DEFAULT_LM_WEIGHT_SEARCH))
        assert best == opt and len(calls) <= 4
    best, rates, calls = _search(_v_curve(5.0), weights=[1000.0])
    assert best == 1000.0 and calls == [1000.0]
    best, _, calls = _search(_v_curve(7.0), weights=[7.0, 11.0], extend=0)
    assert best == 7.0 and sorted(calls) == [7.0, 11.0]


def test_conf_and_library_defaults_agree():
    """One source of truth: the library's defaults are conf/decode.yaml's (steps/decode.py falls back on them)."""
    assert DECODE["lm_weight_search"] == DEFAULT_LM_WEIGHT_SEARCH == "bracket"
    assert float(DECODE["lm_weight_start"]) == DEFAULT_LM_WEIGHT_START
    assert NN_DECODE["lm_weight_search"] in ("bracket", "grid")
    with pytest.raises(SenoneError, match="lm_weight_search"):
        _search(_v_curve(13.0), search="golden")
    with pytest.raises(SenoneError, match="lm_weight_start"):
        _search(_v_curve(13.0), start=0.0)


def test_sweep_plot_with_few_points(tmp_path):
    """The sweep plot takes what the search decoded: one point, or a handful unevenly spread."""
    _, rates, _ = _search(_v_curve(23.0))
    plot_acwt_sweep(rates, 23.0, tmp_path / "few.png", xlabel="LM weight")
    plot_acwt_sweep({13.0: 20.0}, 13.0, tmp_path / "one.png", xlabel="LM weight")
    assert all((tmp_path / n).read_bytes()[:4] == b"\x89PNG" for n in ("few.png", "one.png"))


def test_decoder_default_is_one_value():
    """conf/decode.yaml's decoder and the library's default (decode_dataset, search_options) agree."""
    from senone.decode.decoder import DEFAULT_DECODER, search_options

    assert DECODE["decoder"] == DEFAULT_DECODER == "faster"
    assert search_options({"beam": 13, "max_active": 7000})["decoder"] == DEFAULT_DECODER


def test_search_defaults_of_library_and_conf_agree():
    """decode_dataset's beam and max_active are conf/decode.yaml's (a notebook user gets the recipes' search)."""
    import inspect

    from senone.decode.decoder import decode_dataset

    params = inspect.signature(decode_dataset).parameters
    assert params["max_active"].default == DECODE["max_active"] and params["beam"].default == DECODE["beam"]
    assert params["lattice_beam"].default == DECODE["lattice_beam"]


def test_search_subset_spreads_over_the_ids_and_stays_within_its_hours():
    from senone.decode.sweep import DEFAULT_LM_WEIGHT_SEARCH_HOURS, search_subset

    durations = {f"spk{s}-{u:03d}": 6.0 + (u % 5) for s in range(4) for u in range(150)}  # 600 utts, 1.33 h
    subset = search_subset(durations, 0.5)
    assert sum(durations[u] for u in subset) <= 1800.0 < sum(durations.values())
    assert {u.split("-")[0] for u in subset} == {"spk0", "spk1", "spk2", "spk3"}  # every speaker
    assert subset == sorted(durations)[::3] and search_subset(durations, 0.5) == subset  # deterministic
    assert search_subset(durations, None) == sorted(durations) == search_subset(durations, 2.0)
    with pytest.raises(SenoneError, match="lm_weight_search_hours"):
        search_subset(durations, 0.0)
    assert DECODE["lm_weight_search_hours"] == DEFAULT_LM_WEIGHT_SEARCH_HOURS
