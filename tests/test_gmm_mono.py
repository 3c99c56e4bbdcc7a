import numpy as np
import pytest

import kaldi_hmm_gmm as khg

from senone.gmm.mono import MonoConfig, train_mono
from senone.gmm.stats import GaussStats
from senone.hmm.model import GmmHmm
from senone.io import read_alignments, write_alignments
from tests import toy_hmm


def test_vectorised_estep_matches_kaldi_loglike():
    rng = np.random.default_rng(1)
    gmm = khg.DiagGmm(3, 4)
    gmm.set_weights(np.array([0.2, 0.3, 0.5], np.float32))
    gmm.set_invvars(rng.uniform(0.5, 2.0, size=(3, 4)).astype(np.float32))
    gmm.set_means(rng.normal(size=(3, 4)).astype(np.float32))
    gmm.compute_gconsts()
    am = khg.AmDiagGmm()
    am.init(gmm, 2)
    x = rng.normal(size=(50, 4)).astype(np.float32)
    stats = GaussStats.zeros(am, 4)
    total = stats.accumulate(x, np.zeros(50, dtype=np.int64))
    expected = sum(am.log_likelihood(0, row) for row in x)
    assert total == pytest.approx(expected, rel=1e-5)
    assert stats.occ[0].sum() == pytest.approx(50.0)
    assert stats.occ[1].sum() == 0.0


def test_stats_transfer_gives_kaldi_ml_estimate():
    """Kaldi's M-step on the transferred statistics recovers the sample mean and variance."""
    rng = np.random.default_rng(2)
    gmm = khg.DiagGmm(1, 3)
    gmm.set_weights(np.ones(1, np.float32))
    gmm.set_invvars(np.ones((1, 3), np.float32))
    gmm.set_means(np.zeros((1, 3), np.float32))
    gmm.compute_gconsts()
    am = khg.AmDiagGmm()
    am.init(gmm, 1)
    x = (rng.normal(size=(400, 3)) * [1.0, 2.0, 0.5] + [3.0, -1.0, 0.0]).astype(np.float32)
    stats = GaussStats.zeros(am, 2)
    stats.accumulate(x, np.zeros(400, dtype=np.int64))
    flags = khg.str_to_gmm_flags("mvw")
    khg.mle_am_diag_gmm_update(khg.MleDiagGmmOptions(), stats.to_kaldi(am, flags), flags, am)
    g = am.get_pdf(0)
    np.testing.assert_allclose(np.asarray(g.means)[0], x.mean(0), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(np.asarray(g.vars)[0], x.var(0), rtol=1e-3)


def test_train_mono_recovers_toy_alignment(tmp_path):
    transcripts, feats, truth = toy_hmm.make_corpus(60)
    cfg = MonoConfig(num_iters=6, max_iter_inc=4, tot_gauss=30, realign_iters=(1, 2, 3, 4, 5), init_subset=60)
    result = train_mono(toy_hmm.topology(), toy_hmm.lexicon_fst(), [], transcripts, feats, toy_hmm.DIM,
                        tmp_path, cfg)
    # the likelihood must rise over the passes (EM), and the final alignment match the truth
    likes = [h.like_per_frame for h in result.history]
    assert likes[-1] > likes[0] + 1.0
    correct = total = 0
    for utt, ali in result.alignments.items():
        pdfs = result.model.tid2pdf()[ali]
        # monophone pdf-ids are (phone-1)*3 + state for this topology
        correct += int((pdfs == np.asarray(truth[utt])).sum())
        total += len(ali)
    assert len(result.alignments) == 60
    assert correct / total > 0.95
    assert result.model.num_gauss > 9  # mixed up beyond one Gaussian per pdf
    # outputs a later stage reads
    assert (tmp_path / "final.mdl").read_text().startswith("<TransitionModel>")
    loaded = GmmHmm.load(tmp_path)
    assert loaded.num_gauss == result.model.num_gauss


def test_resume_gives_same_model(tmp_path):
    transcripts, feats, _ = toy_hmm.make_corpus(30, seed=3)
    cfg = MonoConfig(num_iters=4, max_iter_inc=3, tot_gauss=20, realign_iters=(1, 2, 3), init_subset=30)
    full = train_mono(toy_hmm.topology(), toy_hmm.lexicon_fst(), [], transcripts, feats, toy_hmm.DIM,
                      tmp_path / "a", cfg)
    # run 2 passes, then "resume" with the full schedule from the checkpoint
    short = MonoConfig(**{**cfg.__dict__, "num_iters": 2})
    train_mono(toy_hmm.topology(), toy_hmm.lexicon_fst(), [], transcripts, feats, toy_hmm.DIM, tmp_path / "b", short)
    resumed = train_mono(toy_hmm.topology(), toy_hmm.lexicon_fst(), [], transcripts, feats, toy_hmm.DIM,
                         tmp_path / "b", cfg)
    assert [h.iteration for h in resumed.history] == [0, 1, 2, 3]
    assert resumed.history[-1].like_per_frame == pytest.approx(full.history[-1].like_per_frame, rel=1e-6)


def test_alignment_archive_round_trip(tmp_path):
    ali = {"b": np.array([3, 4, 4]), "a": np.array([1, 2])}
    write_alignments(tmp_path / "ali.ark", ali)
    back = read_alignments(tmp_path / "ali.ark")
    assert list(back) == ["a", "b"]
    np.testing.assert_array_equal(back["b"], [3, 4, 4])


def test_parallel_jobs_match_serial(tmp_path):
    """Forked alignment/accumulation workers (Kaldi's JOB=1:nj) give the serial result."""
    transcripts, feats, _ = toy_hmm.make_corpus(40, seed=5)
    cfg = MonoConfig(num_iters=4, max_iter_inc=3, tot_gauss=20, realign_iters=(1, 2, 3), init_subset=40)
    serial = train_mono(toy_hmm.topology(), toy_hmm.lexicon_fst(), [], transcripts, feats, toy_hmm.DIM,
                        tmp_path / "s", cfg)
    parallel = train_mono(toy_hmm.topology(), toy_hmm.lexicon_fst(), [], transcripts, feats, toy_hmm.DIM,
                          tmp_path / "p", MonoConfig(**{**cfg.__dict__, "num_jobs": 2}))
    assert list(parallel.alignments) == list(serial.alignments)
    for utt in serial.alignments:
        np.testing.assert_array_equal(parallel.alignments[utt], serial.alignments[utt])
    # statistics are summed in another order, so equal up to float rounding
    assert parallel.history[-1].like_per_frame == pytest.approx(serial.history[-1].like_per_frame, rel=1e-6)


def test_split_targets_follow_kaldi_power_rule():
    from senone.gmm.mixup import split_targets

    # occupancy^0.25: 10000 → 10, 16 → 2; 6 Gaussians go 5:1, capped by min_count on the small pdf
    assert split_targets(np.array([10000.0, 16.0]), 6, 0.25, 1.0) == [5, 1]
    assert sum(split_targets(np.array([500.0, 400.0, 300.0]), 9, 0.2, 20.0)) == 9
    # min_count: 100 frames cannot feed more than 4 Gaussians of 20 frames... (n+1)*20 >= 100 stops at 4
    assert split_targets(np.array([100.0]), 10, 1.0, 20.0) == [4]


def test_mixup_is_deterministic_and_keeps_mass():
    from senone.gmm.mixup import split_by_count

    def model():
        gmm = khg.DiagGmm(1, 3)
        gmm.set_weights(np.ones(1, np.float32))
        gmm.set_invvars(np.full((1, 3), 4.0, np.float32))
        gmm.set_means(np.array([[1.0, 2.0, 3.0]], np.float32))
        gmm.compute_gconsts()
        am = khg.AmDiagGmm()
        am.init(gmm, 2)
        return am

    a, b = model(), model()
    for am in (a, b):
        split_by_count(am, np.array([1000.0, 1000.0], np.float32), 6, perturb_factor=0.01, power=0.2, min_count=20,
                       seed=7)
    assert a.num_gauss == 6
    np.testing.assert_array_equal(np.asarray(a.get_pdf(0).means), np.asarray(b.get_pdf(0).means))
    g = a.get_pdf(0)
    assert np.asarray(g.weights).sum() == pytest.approx(1.0)
    # halves are moved symmetrically: the weighted mean is unchanged
    np.testing.assert_allclose(np.asarray(g.weights) @ np.asarray(g.means), [1.0, 2.0, 3.0], atol=1e-5)


def test_checkpoint_of_other_settings_is_not_resumed(tmp_path):
    """Changing e.g. the Gaussian target must retrain, not silently continue the old run."""
    transcripts, feats, _ = toy_hmm.make_corpus(30, seed=3)
    cfg = MonoConfig(num_iters=3, max_iter_inc=2, tot_gauss=20, realign_iters=(1, 2), init_subset=30)
    train_mono(toy_hmm.topology(), toy_hmm.lexicon_fst(), [], transcripts, feats, toy_hmm.DIM, tmp_path, cfg)
    changed = MonoConfig(**{**cfg.__dict__, "tot_gauss": 12})
    result = train_mono(toy_hmm.topology(), toy_hmm.lexicon_fst(), [], transcripts, feats, toy_hmm.DIM, tmp_path,
                        changed)
    assert [h.iteration for h in result.history] == [0, 1, 2]  # trained from the flat start again
    assert result.model.num_gauss <= 12
    # the refused checkpoint is gone, not kept beside the new one (nothing would ever read it)
    assert sorted(p.name for p in tmp_path.glob("checkpoint*")) == ["checkpoint.pkl"]


def test_phone_never_seen_in_training_is_named(tmp_path, caplog):
    """Transcripts without word B: phone 3 ('b') gets no frames; mono says so and keeps its Gaussian."""
    transcripts, feats, _ = toy_hmm.make_corpus(40, seed=6)
    keep = {u: w for u, w in transcripts.items() if 2 not in w and 3 not in w}
    cfg = MonoConfig(num_iters=3, max_iter_inc=2, tot_gauss=12, realign_iters=(1, 2), init_subset=10)
    with caplog.at_level("WARNING", logger="senone.gmm.mono"):
        res = train_mono(toy_hmm.topology(), toy_hmm.lexicon_fst(), [], keep, {u: feats[u] for u in keep},
                         toy_hmm.DIM, tmp_path, cfg)
    msgs = [r.getMessage() for r in caplog.records if "no training frames" in r.getMessage()]
    assert len(msgs) == 1 and "3 of 9 pdfs" in msgs[0] and "phones [3]" in msgs[0]
    unseen = res.model.am.get_pdf(res.model.tid2pdf()[res.model.tid2phone() == 3][0])
    assert unseen.num_gauss == 1 and np.isfinite(np.asarray(unseen.gconsts)).all()
