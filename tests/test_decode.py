"""Decoding over a toy HCLG: word recovery, alignment, parallel determinism, GMM vs NN scorer, sweep."""

from __future__ import annotations

import math
import pickle
import sys
from pathlib import Path

import kaldi_hmm_gmm as khg

import numpy as np
import pytest

from senone import SenoneError
from senone.decode import (
    DecodeResult,
    DecodeStats,
    GmmScorer,
    NnScorer,
    decode_dataset,
    gmm_loglikes,
    lmwt_scales,
    load_transition_model,
    sweep_acoustic_scale,
)
from senone.graph import make_hclg

sys.path.insert(0, str(Path(__file__).parent))
import test_graph as toy_lang  # noqa: E402  (the toy lang builder lives with the graph tests)

SENTENCES = [["ab", "ca"], ["abc"], ["ca", "ab", "abc", "ab"], ["abc", "abc", "ca"], ["ab"], ["ca", "abc"]]


@pytest.fixture(scope="module")
def system(tmp_path_factory):
    root = tmp_path_factory.mktemp("dec")
    toy = toy_lang.build_toy_system(root)
    make_hclg(toy.lang_dir, toy.g_path, toy.ctx_dep, toy.trans_model, root / "graph")
    rng = np.random.default_rng(7)
    utts = {}
    for k, words in enumerate(SENTENCES):
        feats, pdfs = toy.synth(words, rng)
        utts[f"utt{k:02d}"] = (words, feats, pdfs)
    return toy, root / "graph", utts


def _decode(system, num_jobs=1, scorer=None, data="feats", scale=0.1, stats=None, decoder="lattice-faster"):
    toy, graph, utts = system
    scorer = scorer or (lambda: GmmScorer(toy.am, toy.trans_model))
    if data == "feats":
        items = [(u, feats) for u, (_, feats, _) in utts.items()]
    else:
        items = [(u, gmm_loglikes(toy.am, feats)) for u, (_, feats, _) in utts.items()]
    return decode_dataset(graph / "HCLG.fst", graph / "words.txt", toy.trans_model, scorer, iter(items),
                          acoustic_scale=scale, num_jobs=num_jobs, stats=stats, progress=False, decoder=decoder)


def test_gmm_decoding_recovers_words_and_alignment(system):
    toy, _, utts = system
    stats = DecodeStats()
    res = _decode(system, stats=stats)
    assert list(res) == list(utts)  # input order
    tid2pdf = np.asarray(toy.trans_model.transition_id_to_pdf_array())
    for utt, (words, feats, pdfs) in utts.items():
        r = res[utt]
        assert r.status == "ok"
        assert r.words == words
        assert r.num_frames == len(feats) == len(r.alignment)
        assert np.array_equal(tid2pdf[r.alignment], pdfs)  # frame-exact pdf alignment
        assert np.isfinite(r.likelihood) and r.likelihood < 0
    assert stats.num_utts == len(utts) and stats.num_partial == stats.num_failed == 0
    assert stats.num_frames == sum(len(f) for _, f, _ in utts.values())


def test_parallel_decoding_is_identical_to_serial(system):
    serial = _decode(system, num_jobs=1)
    parallel = _decode(system, num_jobs=2)
    assert list(parallel) == list(serial)
    assert parallel == serial  # dataclass equality: words, alignment, likelihood, frames, status


def test_faster_decoder_gives_the_same_best_paths(system):
    lattice = _decode(system)
    faster = _decode(system, decoder="faster", num_jobs=2)
    for utt, r in lattice.items():
        assert (faster[utt].words, faster[utt].alignment, faster[utt].status) == (r.words, r.alignment, r.status)
        assert faster[utt].likelihood == pytest.approx(r.likelihood, rel=1e-5, abs=1e-3)


def test_nn_scorer_reproduces_gmm_scorer(system):
    toy, _, utts = system
    gmm = _decode(system)
    nn = _decode(system, scorer=lambda: NnScorer(toy.trans_model), data="loglikes")
    for utt in utts:
        assert nn[utt].alignment == gmm[utt].alignment
        assert nn[utt].words == gmm[utt].words
        assert nn[utt].likelihood == pytest.approx(gmm[utt].likelihood, rel=1e-4, abs=1e-3)


def test_nn_scorer_applies_acoustic_scale_per_transition_id(system):
    toy, _, utts = system
    tm = toy.trans_model
    _, feats, _ = next(iter(utts.values()))
    ll = gmm_loglikes(toy.am, feats)
    scale = 0.37
    nn_dec = NnScorer(tm).decodable(ll, scale)
    gmm_dec = GmmScorer(toy.am, tm).decodable(feats, scale)
    assert nn_dec.num_frames_ready() == gmm_dec.num_frames_ready() == len(feats)
    for t in (0, len(feats) // 2, len(feats) - 1):
        for tid in range(1, tm.num_transition_ids + 1):
            expected = scale * ll[t, tm.transition_id_to_pdf(tid)]
            assert nn_dec.log_likelihood(t, tid) == pytest.approx(expected, rel=1e-5, abs=1e-4)
            assert gmm_dec.log_likelihood(t, tid) == pytest.approx(expected, rel=1e-4, abs=1e-3)


@pytest.mark.parametrize("decoder", ["lattice-faster", "faster"])
def test_too_short_utterance_gives_partial_path(system, decoder):
    toy, graph, utts = system
    _, feats, _ = utts["utt00"]
    stats = DecodeStats()
    # 3 frames cannot reach a final state (every word needs >= 6 frames with a 3-state topology).
    res = decode_dataset(graph / "HCLG.fst", graph / "words.txt", toy.trans_model,
                         GmmScorer(toy.am, toy.trans_model), [("short", feats[:3]), ("empty", feats[:0])],
                         acoustic_scale=0.1, stats=stats, progress=False, decoder=decoder)
    assert res["short"].status == "partial" and len(res["short"].alignment) == 3
    assert res["empty"].status == "failed" and res["empty"].words == []
    assert (stats.num_partial, stats.num_failed) == (1, 1)
    assert stats.partial_ids == ["short"] and stats.failed_ids == ["empty"]


def test_decode_input_errors(system, tmp_path):
    toy, graph, utts = system
    _, feats, _ = utts["utt00"]
    args = (graph / "HCLG.fst", graph / "words.txt", toy.trans_model, GmmScorer(toy.am, toy.trans_model))
    with pytest.raises(SenoneError, match="shape"):
        decode_dataset(*args, [("u", feats[:, :2])], acoustic_scale=0.1, progress=False)
    with pytest.raises(SenoneError, match="twice"):
        decode_dataset(*args, [("u", feats), ("u", feats)], acoustic_scale=0.1, progress=False)
    with pytest.raises(SenoneError, match="acoustic_scale"):
        decode_dataset(*args, [("u", feats)], acoustic_scale=0.0, progress=False)
    with pytest.raises(SenoneError, match="decoder"):
        decode_dataset(*args, [("u", feats)], acoustic_scale=0.1, progress=False, decoder="simple")
    with pytest.raises(SenoneError, match="pdfs"):
        NnScorer(toy.trans_model).decodable(np.zeros((5, 3), np.float32), 0.1)
    with pytest.raises(SenoneError, match="pdfs"):
        GmmScorer(khg.AmDiagGmm(), toy.trans_model)


def test_transition_model_from_pickle(system, tmp_path):
    toy, _, _ = system
    path = tmp_path / "tm.pkl"
    path.write_bytes(pickle.dumps(toy.trans_model))
    tm = load_transition_model(path)
    assert tm.transition_id_to_pdf_array() == toy.trans_model.transition_id_to_pdf_array()
    (tmp_path / "junk").write_text("x")
    with pytest.raises(SenoneError, match="junk"):
        load_transition_model(tmp_path / "junk")


def test_triphone_graph_decodes(tmp_path):
    toy = toy_lang.build_toy_system(tmp_path, triphone=True)
    make_hclg(toy.lang_dir, toy.g_path, toy.ctx_dep, toy.trans_model, tmp_path / "graph")
    rng = np.random.default_rng(3)
    data = {f"t{k}": toy.synth(words, rng) for k, words in enumerate(SENTENCES)}
    res = decode_dataset(tmp_path / "graph" / "HCLG.fst", tmp_path / "graph" / "words.txt", toy.trans_model,
                         GmmScorer(toy.am, toy.trans_model), [(u, f) for u, (f, _) in data.items()],
                         acoustic_scale=0.1, progress=False)
    tid2pdf = np.asarray(toy.trans_model.transition_id_to_pdf_array())
    for k, words in enumerate(SENTENCES):
        r = res[f"t{k}"]
        assert r.words == words
        assert np.array_equal(tid2pdf[r.alignment], data[f"t{k}"][1])  # context-dependent pdfs


def test_sweep_picks_lowest_error_and_breaks_ties_towards_default():
    calls = []

    def decode_fn(scale):
        calls.append(scale)
        return {"u": DecodeResult(words=[f"{scale:.3f}"], alignment=[], likelihood=0.0, num_frames=0)}

    table = {0.05: 0.3, 0.09: 0.2, 0.125: 0.2, 0.2: 0.4}

    def score_fn(hyps, refs):
        assert isinstance(hyps["u"], list)  # DecodeResult reduced to words
        return table[float(hyps["u"][0])]

    best, rates = sweep_acoustic_scale(decode_fn, {"u": ["x"]}, [0.2, 0.125, 0.05, 0.09, 0.09], score_fn,
                                       search="grid")
    assert calls == [0.05, 0.09, 0.125, 0.2]  # each scale decoded once, ascending
    assert list(rates) == [0.05, 0.09, 0.125, 0.2] and rates[0.2] == 0.4
    # 0.09 and 0.125 tie: 0.09 is closer to 0.1 on a log scale (|ln 0.9| < |ln 1.25|).
    assert best == 0.09
    best2, _ = sweep_acoustic_scale(decode_fn, {}, [0.05, 0.2], lambda h, r: 0.5, search="grid")
    assert best2 == 0.05  # equally far from 0.1 on a log scale: the smaller scale
    with pytest.raises(SenoneError):
        sweep_acoustic_scale(decode_fn, {}, [], score_fn, search="grid")
    assert lmwt_scales([10]) == [0.1]


def test_sweep_extends_past_the_end_of_the_grid_only_when_the_best_is_there():
    calls = []

    def decode_fn(scale):
        calls.append(scale)
        return {"u": [scale]}

    def error(hyps, refs):  # optimum at scale 0.04 (LM weight 25), below the grid
        return abs(math.log(hyps["u"][0] / 0.04))

    best, rates = sweep_acoustic_scale(decode_fn, {}, [0.1, 0.0625, 0.05], error, extend=3, search="grid")
    assert calls[:3] == [0.05, 0.0625, 0.1]
    assert calls[3:] == pytest.approx([0.05 / 1.2, 0.05 / 1.44])  # the second one is worse: stop
    assert best == pytest.approx(0.05 / 1.2) and list(rates) == sorted(rates)
    calls.clear()
    best, _ = sweep_acoustic_scale(decode_fn, {}, [0.1, 0.04, 0.02], error, extend=3, search="grid")
    assert best == 0.04 and len(calls) == 3  # interior optimum: nothing extra
    calls.clear()
    sweep_acoustic_scale(decode_fn, {}, [0.2, 0.1], error, extend=2, search="grid")
    assert len(calls) == 4  # still at the edge after both extra decodes: bounded by extend


def test_sweep_on_real_decodes(system):
    """End to end: the search (default: bracket) over real decodes finds a scale with zero word errors."""
    toy, _, utts = system
    refs = {u: words for u, (words, _, _) in utts.items()}

    def wer(hyps, refs):
        errs = sum(hyps[u] != refs[u] for u in refs)
        return errs / len(refs)

    best, rates = sweep_acoustic_scale(lambda s: _decode(system, scale=s), refs, [0.05, 0.1], wer)
    assert rates[best] == 0.0 and best == 0.1
