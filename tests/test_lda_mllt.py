"""LDA+MLLT triphone training (train_lda_mllt.sh) on the toy HMM world, and the stage feature pipeline."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from senone import SenoneError
from senone.feats.cmvn import apply_cmvn, feature_stats
from senone.feats.deltas import add_deltas, splice
from senone.feats.lda import read_kaldi_matrix, write_kaldi_matrix
from senone.feats.mllt import mllt_objective
from senone.feats.transform import StageFeatures, load_stage_features, stage_features, write_feature_pipeline
from senone.gmm.lda_mllt import LdaMlltConfig, MlltHook, accumulate_mllt_stats, train_lda_mllt
from senone.gmm.mono import MonoConfig, train_mono
from senone.gmm.passes import load_checkpoint
from senone.hmm.model import GmmHmm
from senone.lang.prepare import Lang
from tests import toy_hmm

SIL = 1


def toy_lang(d: Path) -> Lang:
    (d / "phones").mkdir(parents=True, exist_ok=True)
    (d / "topo").write_text(toy_hmm.TOPO, encoding="utf-8")
    return Lang(dir=d, phones={"<eps>": 0, "SIL": 1, "a": 2, "b": 3}, words=dict(toy_hmm.WORDS), silence_phones=[SIL],
                nonsilence_phones=[2, 3], optional_silence=SIL, disambig_phones=[], wdisambig_phone=0,
                wdisambig_word=0, oov_word="A", oov_id=1, bos_id=0, eos_id=0, phone_sets=[[1], [2], [3]],
                extra_questions=[])


def correlated_corpus(num_utts: int, seed: int):
    """Toy features mixed by a fixed non-orthogonal matrix plus noise smoothed over time, so that
    spliced frames carry information and the dimensions are correlated (what LDA/MLLT are for),
    with two modes per state so that mixing up has something to find."""
    transcripts, feats, _ = toy_hmm.make_corpus(num_utts, seed=seed)
    rng = np.random.default_rng(100 + seed)
    mix = np.eye(toy_hmm.DIM) + 0.6 * rng.normal(size=(toy_hmm.DIM, toy_hmm.DIM))
    out = {}
    for utt, x in feats.items():
        noise = rng.normal(size=x.shape)
        noise[1:] += 0.7 * noise[:-1]
        noise[:, 0] += rng.choice([-2.5, 2.5], size=len(x))  # two modes per state: mixing up pays
        out[utt] = ((x + noise) @ mix.T).astype(np.float32)
    return transcripts, out


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("lda_mllt")
    transcripts, static = correlated_corpus(50, seed=7)
    mono = train_mono(toy_hmm.topology(), toy_hmm.lexicon_fst(), [], transcripts,
                      {u: add_deltas(x) for u, x in static.items()}, toy_hmm.DIM * 3, root / "mono",
                      MonoConfig(num_iters=6, max_iter_inc=4, tot_gauss=30, realign_iters=(1, 2, 3, 4, 5),
                                 init_subset=50))
    cfg = LdaMlltConfig(lda_dim=5, splice=3, num_leaves=14, tot_gauss=60, min_leaf_count=20.0, num_iters=8,
                        max_iter_inc=6, realign_iters=(3, 6), mllt_iters=(2, 4), mllt_sweeps=30)
    lang = toy_lang(root / "lang")
    result = train_lda_mllt(lang, toy_hmm.lexicon_fst(), transcripts, static, mono.model, mono.alignments,
                            root / "tri2", cfg)
    return SimpleNamespace(root=root, lang=lang, transcripts=transcripts, static=static, mono=mono, cfg=cfg,
                           result=result)


def test_trains_end_to_end_and_likelihood_rises(world):
    res, out = world.result, world.root / "tri2"
    likes = [h.like_per_frame for h in res.history]
    assert [h.iteration for h in res.history] == list(range(1, 8))
    # in the LDA space the within-class covariance is already white, so the gains are modest but steady
    assert likes[-1] > likes[0] + 0.03
    assert all(b >= a - 1e-3 for a, b in zip(likes, likes[1:]))
    assert res.model.dim == 5 and res.model.num_gauss > res.model.num_pdfs
    assert len(res.alignments) == 50
    # Kaldi's file layout: LDA as 0.mat, a matrix per MLLT pass, the composed final.mat
    for name in ("0.mat", "lda.mat", "2.mat", "4.mat", "final.mat", "feature_pipeline.json", "final.pkl",
                 "mllt.json", "lda.json"):
        assert (out / name).is_file(), name
    final = read_kaldi_matrix(out / "final.mat")
    assert final.shape == (5, toy_hmm.DIM * 7)
    np.testing.assert_array_equal(final, read_kaldi_matrix(out / "4.mat"))
    assert not np.allclose(final, read_kaldi_matrix(out / "0.mat"))
    assert [u.iteration for u in res.mllt_updates] == [2, 4]
    assert all(u.auxf_impr_per_frame > 0 for u in res.mllt_updates)
    # the first MLLT does most of the work (Kaldi's logs show the same decay)
    assert res.mllt_updates[0].auxf_impr_per_frame > res.mllt_updates[1].auxf_impr_per_frame


def test_lda_stats_ignore_silence(world):
    """weight-silence-post 0.0: the LDA sees only non-silence frames."""
    import json

    summary = json.loads((world.root / "tri2" / "lda.json").read_text())
    tid2pdf = world.mono.model.tid2pdf()
    tm = world.mono.model.trans_model
    nonsil = sum(int(sum(tm.transition_id_to_phone(int(t)) != SIL for t in ali))
                 for ali in world.mono.alignments.values())
    assert summary["frames"] == pytest.approx(nonsil)
    sil_pdfs = {int(tid2pdf[t]) for t in range(1, tm.num_transition_ids + 1) if tm.transition_id_to_phone(t) == SIL}
    assert summary["classes_seen"] == world.mono.model.num_pdfs - len(sil_pdfs)


def test_stage_features_match_training(world):
    out = world.root / "tri2"
    pipeline = stage_features(out)
    assert pipeline.kind == "lda" and (pipeline.splice_left, pipeline.splice_right) == (3, 3)
    for utt, x in world.static.items():
        np.testing.assert_array_equal(pipeline.apply(x), world.result.feats[utt])
    # and through cuts + CMVN as decoding reads them (duck-typed cuts: per-utterance CMVN)
    raw = {u: x + 3.0 for u, x in list(world.static.items())[:5]}
    cuts = [SimpleNamespace(id=u, has_features=True, supervisions=[], load_features=lambda x=x: x)
            for u, x in raw.items()]
    cmvn = {u: feature_stats(x) for u, x in raw.items()}
    got = load_stage_features(out, cuts, cmvn, {"cmvn_norm_vars": False})
    for u, x in raw.items():
        np.testing.assert_array_equal(got[u], pipeline.apply(apply_cmvn(x, cmvn[u])))
    assert got[next(iter(raw))].shape[1] == 5


def test_deltas_stage_and_pipeline_record(tmp_path):
    x = np.random.default_rng(0).normal(size=(20, 4)).astype(np.float32)
    p = stage_features(tmp_path, {"delta_order": 2})
    assert p.kind == "deltas"
    np.testing.assert_array_equal(p.apply(x), add_deltas(x))
    m = np.random.default_rng(1).normal(size=(6, 28))
    write_kaldi_matrix(tmp_path / "final.mat", m)
    write_feature_pipeline(tmp_path, StageFeatures.lda(m, 3), 4)
    lda = stage_features(tmp_path)
    np.testing.assert_allclose(lda.apply(x), splice(x, 3) @ m.T, rtol=1e-4, atol=1e-4)
    with pytest.raises(SenoneError, match="final.mat"):
        lda.apply(np.zeros((5, 3), np.float32))
    (tmp_path / "final.mat").unlink()
    with pytest.raises(SenoneError, match="final.mat"):
        stage_features(tmp_path)


def test_mllt_hook_increases_auxiliary_function(world, tmp_path):
    """At an MLLT pass the estimated A beats the identity on the same statistics; the hook returns the
    features through A and moves the model's means with it (gmm-transform-means)."""
    model = GmmHmm.load(world.root / "tri2")
    pipeline = stage_features(world.root / "tri2")
    feats = world.result.feats
    hook = MlltHook(world.static, pipeline, tmp_path, [SIL], LdaMlltConfig(mllt_iters=(9,), mllt_sweeps=30))
    assert hook(8, model, world.result.alignments, feats) is None  # not an MLLT pass
    before = accumulate_mllt_stats(model, feats, world.result.alignments, [SIL])
    new_feats = hook(9, model, world.result.alignments, feats)
    a = hook.last_matrix
    assert mllt_objective(a, hook.last_stats) > mllt_objective(np.eye(5), hook.last_stats)
    assert hook.updates[-1].auxf_impr_per_frame > 0
    np.testing.assert_allclose(hook.last_stats.g_packed, before.g_packed, rtol=1e-8)
    utt = next(iter(feats))
    np.testing.assert_allclose(new_feats[utt], feats[utt] @ a.T, rtol=1e-3, atol=1e-3)
    assert (tmp_path / "9.mat").is_file()
    # means moved with A: μ' = A μ
    old = GmmHmm.load(world.root / "tri2")
    np.testing.assert_allclose(np.asarray(model.am.get_pdf(0).means), np.asarray(old.am.get_pdf(0).means) @ a.T,
                               rtol=1e-4, atol=1e-4)


def test_resume_gives_same_model(world, tmp_path):
    cfg = world.cfg
    args = (world.lang, toy_hmm.lexicon_fst(), world.transcripts, world.static, world.mono.model,
            world.mono.alignments)
    # stop after pass 4 (its MLLT matrix written), then continue with the full schedule
    short = LdaMlltConfig(**{**cfg.__dict__, "num_iters": 5})
    train_lda_mllt(*args, tmp_path / "b", short)
    assert load_checkpoint(tmp_path / "b" / "checkpoint.pkl")["next_iter"] == 5
    resumed = train_lda_mllt(*args, tmp_path / "b", cfg)
    full = world.result
    assert [h.iteration for h in resumed.history] == [h.iteration for h in full.history]
    assert resumed.history[-1].like_per_frame == full.history[-1].like_per_frame
    np.testing.assert_array_equal(read_kaldi_matrix(tmp_path / "b" / "final.mat"),
                                  read_kaldi_matrix(world.root / "tri2" / "final.mat"))
    for pdf in range(full.model.num_pdfs):
        np.testing.assert_array_equal(np.asarray(resumed.model.am.get_pdf(pdf).means),
                                      np.asarray(full.model.am.get_pdf(pdf).means))
    assert [u.iteration for u in resumed.mllt_updates] == [2, 4]
    for utt in full.alignments:
        np.testing.assert_array_equal(resumed.alignments[utt], full.alignments[utt])


def test_resume_after_crash_between_mllt_and_checkpoint(world, tmp_path):
    """A run killed after writing 4.mat but before pass 4's checkpoint resumes from 2.mat and redoes pass 4."""
    cfg = world.cfg
    args = (world.lang, toy_hmm.lexicon_fst(), world.transcripts, world.static, world.mono.model,
            world.mono.alignments)
    train_lda_mllt(*args, tmp_path / "c", LdaMlltConfig(**{**cfg.__dict__, "num_iters": 4}))
    # a stray 4.mat from the "killed" pass must not be used
    write_kaldi_matrix(tmp_path / "c" / "4.mat", np.eye(5, 28))
    resumed = train_lda_mllt(*args, tmp_path / "c", cfg)
    np.testing.assert_array_equal(read_kaldi_matrix(tmp_path / "c" / "final.mat"),
                                  read_kaldi_matrix(world.root / "tri2" / "final.mat"))
    assert resumed.history[-1].like_per_frame == world.result.history[-1].like_per_frame


def test_parallel_statistics_match_serial(world):
    """Forked workers (Kaldi's JOB=1:nj accumulators) sum to the serial statistics."""
    from senone.gmm.lda_mllt import accumulate_lda_stats

    args = (world.mono.model, world.mono.alignments, world.static, [SIL])
    serial, parallel = (accumulate_lda_stats(*args, num_jobs=j, batch_frames=500) for j in (1, 2))
    np.testing.assert_allclose(parallel.scatter, serial.scatter, rtol=1e-10)
    np.testing.assert_array_equal(parallel.counts, serial.counts)
    model = world.result.model
    s1, s2 = (accumulate_mllt_stats(model, world.result.feats, world.result.alignments, [SIL], num_jobs=j)
              for j in (1, 2))
    assert s2.beta == pytest.approx(s1.beta)
    np.testing.assert_allclose(s2.g_packed, s1.g_packed, rtol=1e-8, atol=1e-8)
