"""Tests for senone.feats.{lda,mllt,fmllr}: Kaldi's LDA, MLLT (global STC) and fMLLR on synthetic data."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import numpy as np
import pytest

from senone import SenoneError
from senone.feats import splice
from senone.feats.fmllr import (
    FmllrStats,
    apply_fmllr,
    compose_affine,
    estimate_fmllr,
    estimate_fmllr_per_speaker,
    fmllr_logdet,
    fmllr_objective,
    identity_transform,
    read_fmllr_transforms,
    write_fmllr_transforms,
)
from senone.feats.lda import (
    LdaStats,
    apply_transform,
    compose_transforms,
    estimate_lda,
    read_kaldi_matrix,
    write_kaldi_matrix,
)
from senone.feats.mllt import (
    MlltStats,
    component_posteriors,
    estimate_mllt,
    gmm_means,
    mllt_objective,
    transform_am_means,
    transform_means,
)


def random_rotation(rng: np.random.Generator, dim: int) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(dim, dim)))
    return q * np.sign(np.diag(r))


def diag_gmm(means: np.ndarray, variances: np.ndarray, weights: np.ndarray | None = None) -> SimpleNamespace:
    """A GMM in Kaldi's storage (gconsts with log weights, means·invvars, invvars), G × D."""
    means = np.atleast_2d(means)
    inv_vars = 1.0 / np.atleast_2d(variances)
    g, d = means.shape
    w = np.full(g, 1.0 / g) if weights is None else weights
    gconsts = np.log(w) - 0.5 * (d * np.log(2 * np.pi) - np.log(inv_vars).sum(1) + (means * means * inv_vars).sum(1))
    return SimpleNamespace(gconsts=gconsts, means_invvars=means * inv_vars, inv_vars=inv_vars)


def fit_diag_per_class(z: np.ndarray, labels: np.ndarray, num_classes: int) -> list[SimpleNamespace]:
    return [diag_gmm(z[labels == c].mean(0), z[labels == c].var(0)) for c in range(num_classes)]


def diag_loglike(z: np.ndarray, labels: np.ndarray, gmms: list[SimpleNamespace]) -> float:
    return float(sum(component_posteriors(gmms[c], z[labels == c])[1].sum() for c in range(len(gmms))))


def nearest_mean_accuracy(train: np.ndarray, train_lab: np.ndarray, test: np.ndarray, test_lab: np.ndarray) -> float:
    means = np.stack([train[train_lab == c].mean(0) for c in range(train_lab.max() + 1)])
    pred = ((test[:, None, :] - means[None]) ** 2).sum(-1).argmin(1)
    return float((pred == test_lab).mean())


# ----------------------------------------------------------------------------------------------- LDA


def lda_data(rng: np.random.Generator, n_per_class: int = 300, mix: np.ndarray | None = None):
    """5 classes whose means differ only in 2 low-variance directions, hidden among 8 noisy ones.

    Returns (frames, labels, mixing matrix); pass ``mix`` to draw more data from the same space.
    """
    c, d = 5, 10
    angles = 2 * np.pi * np.arange(c) / c
    means = np.zeros((c, d))
    means[:, 0], means[:, 1] = 3 * np.cos(angles), 3 * np.sin(angles)
    std = np.r_[1.0, 1.0, np.full(d - 2, 10.0)]
    labels = np.repeat(np.arange(c), n_per_class)
    y = means[labels] + rng.normal(size=(len(labels), d)) * std
    if mix is None:
        mix = random_rotation(rng, d) @ np.diag(rng.uniform(0.5, 2.0, d))
    return y @ mix.T + 5.0, labels, mix


def test_lda_whitens_within_class_and_orders_between_class():
    rng = np.random.default_rng(0)
    x, lab, _ = lda_data(rng)
    stats = LdaStats.zeros(5, x.shape[1])
    stats.accumulate(x, lab)
    res = estimate_lda(stats, dim=2)
    assert res.matrix.shape == (2, 10) and res.full_matrix.shape == (10, 10)
    total, between, _ = stats.covariances()
    within = total - between
    np.testing.assert_allclose(res.matrix @ within @ res.matrix.T, np.eye(2), atol=1e-8)
    np.testing.assert_allclose(res.full_matrix @ within @ res.full_matrix.T, np.eye(10), atol=1e-8)
    np.testing.assert_allclose(res.full_matrix @ between @ res.full_matrix.T, np.diag(res.eigenvalues), atol=1e-8)
    assert np.all(np.diff(res.eigenvalues) <= 1e-12)
    assert res.eigenvalues[:2].min() > 1.0 and abs(res.eigenvalues[2:]).max() < 0.05  # rank C-1 = 4, 2 real directions

    # the same whitening holds for the projected data computed directly
    z = apply_transform(x, res.matrix).astype(np.float64)
    pooled = sum(np.cov(z[lab == c].T, bias=True) * (lab == c).sum() for c in range(5)) / len(z)
    np.testing.assert_allclose(pooled, np.eye(2), atol=1e-4)

    # Fisher's criterion tr(W⁻¹B) of LDA beats every random 2-dim projection
    def fisher(p):
        return np.trace(np.linalg.solve(p @ within @ p.T, p @ between @ p.T))

    best = fisher(res.matrix)
    np.testing.assert_allclose(best, res.eigenvalues[:2].sum(), rtol=1e-8)
    assert all(fisher(rng.normal(size=(2, 10))) < best for _ in range(200))


def test_lda_separates_classes_where_pca_does_not():
    rng = np.random.default_rng(1)
    x, lab, mix = lda_data(rng)
    x_test, lab_test, _ = lda_data(rng, 200, mix)
    stats = LdaStats.zeros(5, 10)
    stats.accumulate(x, lab)
    m = estimate_lda(stats, dim=2).matrix
    acc_lda = nearest_mean_accuracy(apply_transform(x, m), lab, apply_transform(x_test, m), lab_test)
    centred = x - x.mean(0)
    pca = np.linalg.eigh(centred.T @ centred)[1][:, ::-1][:, :2].T
    acc_pca = nearest_mean_accuracy(x @ pca.T, lab, x_test @ pca.T, lab_test)
    assert acc_lda > 0.9
    assert acc_pca < 0.5


def test_lda_stats_merge_weights_and_spliced_shapes():
    rng = np.random.default_rng(2)
    x, lab, _ = lda_data(rng)
    whole = LdaStats.zeros(5, 10)
    whole.accumulate(x, lab)
    a, b = LdaStats.zeros(5, 10), LdaStats.zeros(5, 10)
    a.accumulate(x[:700], lab[:700])
    b.accumulate(x[700:], lab[700:])
    a.add(b)
    for f in ("counts", "sums", "scatter"):
        np.testing.assert_allclose(getattr(a, f), getattr(whole, f), rtol=1e-10, atol=1e-8)

    # weight 0 frames (silence) contribute nothing; weights scale counts
    w = np.where(lab == 4, 0.0, 2.0)
    weighted = LdaStats.zeros(5, 10)
    weighted.accumulate(x, lab, w)
    assert weighted.counts[4] == 0.0 and weighted.counts[0] == 2 * 300
    np.testing.assert_allclose(weighted.sums[0], 2 * x[lab == 0].sum(0))

    # Kaldi's shape: 16-dim frames spliced ±3 → 112, 40-dim LDA over 60 pdfs
    frames = rng.normal(size=(3000, 16)).cumsum(0) * 0.1 + rng.normal(size=(3000, 16))
    spliced = splice(frames, 3)
    pdfs = rng.integers(0, 60, 3000)
    st = LdaStats.zeros(60, 112)
    st.accumulate(spliced, pdfs)
    res = estimate_lda(st)
    assert res.matrix.shape == (40, 112)
    total, between, _ = st.covariances()
    np.testing.assert_allclose(res.matrix @ (total - between) @ res.matrix.T, np.eye(40), atol=1e-6)


def test_lda_options_and_errors(tmp_path):
    rng = np.random.default_rng(3)
    x, lab, _ = lda_data(rng)
    stats = LdaStats.zeros(5, 10)
    stats.accumulate(x, lab)
    with pytest.raises(SenoneError, match="classes"):
        estimate_lda(stats, dim=5)
    assert estimate_lda(stats, dim=6, allow_large_dim=True).matrix.shape == (6, 10)
    with pytest.raises(SenoneError, match="pdf-ids"):
        stats.accumulate(x[:3], np.array([0, 1, 5]))
    with pytest.raises(SenoneError, match="12-dim|10-dim"):
        stats.accumulate(x[:3, :-2], lab[:3])

    # remove_offset: affine, projected data has zero mean
    aff = estimate_lda(stats, dim=2, remove_offset=True).matrix
    assert aff.shape == (2, 11)
    np.testing.assert_allclose(apply_transform(x, aff).mean(0), 0.0, atol=1e-4)

    # within_class_factor: projected total variance of direction i becomes factor + λ_i
    plain = estimate_lda(stats, dim=3)
    scaled = estimate_lda(stats, dim=3, within_class_factor=0.25).matrix
    total, _, _ = stats.covariances()
    np.testing.assert_allclose(np.diag(scaled @ total @ scaled.T), 0.25 + plain.eigenvalues[:3], rtol=1e-8)

    stats.save(tmp_path / "lda.npz")
    again = LdaStats.load(tmp_path / "lda.npz")
    np.testing.assert_array_equal(again.scatter, stats.scatter)
    write_kaldi_matrix(tmp_path / "0.mat", plain.matrix)
    np.testing.assert_allclose(read_kaldi_matrix(tmp_path / "0.mat"), plain.matrix, rtol=1e-6)
    with pytest.raises(SenoneError, match="not found"):
        read_kaldi_matrix(tmp_path / "missing.mat")


def test_apply_and_compose_transforms():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(50, 6))
    lin = rng.normal(size=(4, 6))
    aff = rng.normal(size=(4, 7))
    np.testing.assert_allclose(apply_transform(x, lin), x @ lin.T, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(apply_transform(x, aff), x @ aff[:, :6].T + aff[:, 6], rtol=1e-5, atol=1e-5)
    assert apply_transform(x, lin).dtype == np.float32
    with pytest.raises(SenoneError, match="columns"):
        apply_transform(x, rng.normal(size=(4, 8)))
    outer_lin, outer_aff = rng.normal(size=(3, 4)), rng.normal(size=(3, 5))
    for outer in (outer_lin, outer_aff):
        for inner, is_aff in ((lin, False), (aff, True)):
            composed = compose_transforms(outer, inner, inner_is_affine=is_aff)
            np.testing.assert_allclose(apply_transform(x, composed), apply_transform(apply_transform(x, inner), outer),
                                       rtol=1e-4, atol=1e-4)
    with pytest.raises(SenoneError, match="inner_is_affine"):
        compose_transforms(outer_aff, aff)
    assert compose_transforms(outer_lin, aff).shape == (3, 7)  # linear outer: no ambiguity
    # a square inner matrix with an affine outer one (MLLT after LDA with offset)
    sq = rng.normal(size=(4, 4))
    np.testing.assert_allclose(apply_transform(x @ lin.T, compose_transforms(outer_aff, sq)),
                               apply_transform(apply_transform(x @ lin.T, sq), outer_aff), rtol=1e-4, atol=1e-4)


# ---------------------------------------------------------------------------------------------- MLLT


def stc_data(rng: np.random.Generator, n_per_class: int = 1500):
    """Classes that are diagonal Gaussians in a hidden basis, observed through a rotation Q."""
    c, d = 6, 4
    means = rng.normal(scale=2.0, size=(c, d))
    variances = np.exp(rng.uniform(np.log(0.05), np.log(5.0), size=(c, d)))
    labels = np.repeat(np.arange(c), n_per_class)
    y = means[labels] + rng.normal(size=(len(labels), d)) * np.sqrt(variances[labels])
    q = random_rotation(rng, d)
    return y @ q.T, labels, q


def test_mllt_stats_match_definition():
    rng = np.random.default_rng(5)
    d, g = 3, 2
    gmms = [diag_gmm(rng.normal(size=(g, d)), rng.uniform(0.5, 2.0, (g, d)), np.array([0.3, 0.7])) for _ in range(3)]
    x = rng.normal(size=(40, d))
    pdfs = rng.integers(0, 3, 40)
    w = rng.uniform(size=40)
    stats = MlltStats.zeros(d)
    stats.accumulate(x, pdfs, gmms, w)
    ref = np.zeros((d, d, d))
    for t in range(40):
        gm = gmms[pdfs[t]]
        post = component_posteriors(gm, x[t:t + 1])[0][0] * w[t]
        for j, mu in enumerate(gmm_means(gm)):
            diff = x[t] - mu
            ref += post[j] * gm.inv_vars[j][:, None, None] * np.outer(diff, diff)[None]
    np.testing.assert_allclose(stats.G, ref, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(stats.beta, w.sum())


def test_mllt_increases_auxf_and_recovers_rotation():
    rng = np.random.default_rng(6)
    x, lab, q = stc_data(rng)
    a_total = np.eye(4)
    ll_before = diag_loglike(x, lab, fit_diag_per_class(x, lab, 6))
    first_gain = None
    for _pass in range(6):
        z = x @ a_total.T
        gmms = fit_diag_per_class(z, lab, 6)
        stats = MlltStats.zeros(4)
        stats.accumulate(z, lab, gmms)
        res = estimate_mllt(stats, num_iters=40)
        hist = np.array(res.objf_history)
        assert hist[0] == pytest.approx(mllt_objective(np.eye(4), stats))
        assert np.all(np.diff(hist) >= -1e-9 * np.abs(hist[:-1]))  # never decreases
        if first_gain is None:
            first_gain = hist[-1] - hist[0]
        a_total = res.matrix @ a_total
    assert first_gain > 0.05 * len(x)
    z = x @ a_total.T
    ll_after = diag_loglike(z, lab, fit_diag_per_class(z, lab, 6)) + len(x) * np.linalg.slogdet(a_total)[1]
    assert ll_after > ll_before + 0.05 * len(x)
    # A·Q is a scaled signed permutation: each row of the recovered basis matches one hidden axis
    p = a_total @ q
    p /= np.linalg.norm(p, axis=1, keepdims=True)
    assert np.abs(p).max(axis=1).min() > 0.99
    assert sorted(np.abs(p).argmax(axis=1).tolist()) == [0, 1, 2, 3]


def test_mllt_merge_and_transform_means(tmp_path):
    rng = np.random.default_rng(7)
    x, lab, _ = stc_data(rng, 200)
    gmms = fit_diag_per_class(x, lab, 6)
    whole, a, b = MlltStats.zeros(4), MlltStats.zeros(4), MlltStats.zeros(4)
    whole.accumulate(x, lab, gmms)
    a.accumulate(x[::2], lab[::2], gmms)
    b.accumulate(x[1::2], lab[1::2], gmms)
    a.add(b)
    np.testing.assert_allclose(a.g_packed, whole.g_packed, rtol=1e-10)
    assert a.num_frames == whole.num_frames and a.beta == pytest.approx(whole.beta)
    whole.save(tmp_path / "mllt.npz")
    np.testing.assert_array_equal(MlltStats.load(tmp_path / "mllt.npz").G, whole.G)

    means = rng.normal(size=(5, 4))
    m_sq, m_aff = rng.normal(size=(4, 4)), rng.normal(size=(4, 5))
    np.testing.assert_allclose(transform_means(means, m_sq), means @ m_sq.T)
    np.testing.assert_allclose(transform_means(means, m_aff), means @ m_aff[:, :4].T + m_aff[:, 4])
    with pytest.raises(SenoneError, match="cannot transform"):
        transform_means(means, rng.normal(size=(3, 4)))


def test_transform_am_means_on_kaldi_model():
    khg = pytest.importorskip("kaldi_hmm_gmm")
    gmm = khg.DiagGmm(2, 3)
    gmm.set_weights(np.array([0.5, 0.5], dtype=np.float32))
    gmm.set_invvars(np.full((2, 3), 2.0, dtype=np.float32))
    gmm.set_means(np.array([[1, 2, 3], [0, -1, 4]], dtype=np.float32))
    gmm.compute_gconsts()
    am = khg.AmDiagGmm()
    am.init(gmm, 2)
    a = np.array([[0, 1, 0], [2, 0, 0], [0, 0, -1]], dtype=np.float64)
    transform_am_means(am, a)
    for pdf in range(2):
        g = am.get_pdf(pdf)
        np.testing.assert_allclose(np.asarray(g.means), [[2, 2, -3], [-1, 0, -4]])
        np.testing.assert_allclose(np.asarray(g.inv_vars), 2.0)  # variances untouched
        assert np.isfinite(np.asarray(g.gconsts)).all()


# --------------------------------------------------------------------------------------------- fMLLR


def fmllr_model(rng: np.random.Generator, num_pdfs: int = 8, d: int = 4):
    means = rng.normal(scale=3.0, size=(num_pdfs, d))
    variances = rng.uniform(0.3, 2.0, size=(num_pdfs, d))
    return [diag_gmm(means[p], variances[p]) for p in range(num_pdfs)], means, variances


def speaker_data(rng, means, variances, n, m, offset):
    """Samples of the model (labels known) seen through the speaker's affine distortion x = M y + m."""
    lab = rng.integers(0, len(means), n)
    y = means[lab] + rng.normal(size=(n, means.shape[1])) * np.sqrt(variances[lab])
    return y @ m.T + offset, lab, y


def test_fmllr_recovers_inverse_transform_and_auxf_increases():
    rng = np.random.default_rng(8)
    gmms, means, variances = fmllr_model(rng)
    m = np.eye(4) + 0.3 * rng.normal(size=(4, 4))
    offset = rng.normal(size=4)
    x, lab, y = speaker_data(rng, means, variances, 6000, m, offset)
    stats = FmllrStats.zeros(4)
    stats.accumulate(x, lab, gmms)
    res = estimate_fmllr(stats, speaker="spk1")
    assert res.updated and res.matrix.shape == (4, 5)
    hist = np.array(res.objf_history)
    assert len(hist) == 41
    assert hist[0] == pytest.approx(fmllr_objective(identity_transform(4), stats))
    assert np.all(np.diff(hist) >= -1e-9 * np.abs(hist[:-1]))
    assert hist[-1] - hist[0] > 0.1 * len(x)
    m_inv = np.linalg.inv(m)
    w_true = np.hstack([m_inv, -(m_inv @ offset)[:, None]])
    assert fmllr_objective(res.matrix, stats) >= fmllr_objective(w_true, stats) - 1e-6 * abs(hist[-1])
    np.testing.assert_allclose(res.matrix, w_true, atol=0.08)
    recovered = apply_fmllr(x, res.matrix)
    assert np.mean((recovered - y) ** 2) < 0.02 * np.mean((x - y) ** 2)
    assert fmllr_logdet(res.matrix) == pytest.approx(np.linalg.slogdet(m_inv)[1], abs=0.05)


def test_fmllr_reestimate_on_adapted_features_composes():
    """SAT style: stats on already-adapted features give ≈ identity; composing keeps the transform."""
    rng = np.random.default_rng(9)
    gmms, means, variances = fmllr_model(rng)
    m = np.diag([1.5, 0.7, 1.2, 0.9]) + 0.1 * rng.normal(size=(4, 4))
    x, lab, _ = speaker_data(rng, means, variances, 4000, m, rng.normal(size=4))
    st = FmllrStats.zeros(4)
    st.accumulate(x, lab, gmms)
    w1 = estimate_fmllr(st).matrix
    st2 = FmllrStats.zeros(4)
    st2.accumulate(apply_fmllr(x, w1), lab, gmms)
    w2 = estimate_fmllr(st2).matrix
    np.testing.assert_allclose(w2, identity_transform(4), atol=1e-3)
    np.testing.assert_allclose(compose_affine(w2, w1), w1, atol=5e-3)
    wa, wb = rng.normal(size=(4, 5)), rng.normal(size=(4, 5))
    np.testing.assert_allclose(apply_fmllr(x, compose_affine(wa, wb)), apply_fmllr(apply_fmllr(x, wb), wa),
                               rtol=1e-4, atol=1e-3)


def test_fmllr_few_frames_keep_identity(caplog):
    rng = np.random.default_rng(10)
    gmms, means, variances = fmllr_model(rng)
    x, lab, _ = speaker_data(rng, means, variances, 120, np.eye(4) * 2.0, np.ones(4))
    short = FmllrStats.zeros(4)
    short.accumulate(x, lab, gmms)
    long_x, long_lab, _ = speaker_data(rng, means, variances, 800, np.eye(4) * 2.0, np.ones(4))
    long = FmllrStats.zeros(4)
    long.accumulate(long_x, long_lab, gmms, np.where(long_lab == 0, 0.0, 1.0))  # silence-weighted
    with caplog.at_level(logging.WARNING, logger="senone.feats.fmllr"):
        results = estimate_fmllr_per_speaker({"short_spk": short, "long_spk": long})
    assert not results["short_spk"].updated
    np.testing.assert_array_equal(results["short_spk"].matrix, identity_transform(4))
    assert any("short_spk" in r.getMessage() and "500" in r.getMessage() for r in caplog.records)
    assert results["long_spk"].updated and long.beta == pytest.approx((long_lab != 0).sum())
    np.testing.assert_allclose(results["long_spk"].matrix[:, :4], np.eye(4) / 2.0, atol=0.05)
    # a lower threshold lets the short speaker adapt
    assert estimate_fmllr(short, min_count=100.0).updated


def test_fmllr_flat_and_per_pdf_accumulation_agree(tmp_path):
    rng = np.random.default_rng(11)
    d, g = 3, 2
    gmms = [diag_gmm(rng.normal(size=(g, d)), rng.uniform(0.5, 2.0, (g, d))) for _ in range(4)]
    x = rng.normal(size=(60, d))
    pdfs = rng.integers(0, 4, 60)
    by_e_step = FmllrStats.zeros(d)
    by_e_step.accumulate(x, pdfs, gmms)
    rows = []
    for t in range(60):
        gm = gmms[pdfs[t]]
        post = component_posteriors(gm, x[t:t + 1])[0][0]
        rows += [(t, gmm_means(gm)[j], gm.inv_vars[j], post[j]) for j in range(g)]
    flat = FmllrStats.zeros(d)
    flat.accumulate_flat(x, np.array([r[0] for r in rows]), np.array([r[1] for r in rows]),
                         np.array([r[2] for r in rows]), np.array([r[3] for r in rows]))
    ref_k, ref_g = np.zeros((d, d + 1)), np.zeros((d, d + 1, d + 1))
    for t, mu, iv, p in rows:
        xi = np.append(x[t], 1.0)
        ref_k += p * np.outer(mu * iv, xi)
        ref_g += p * iv[:, None, None] * np.outer(xi, xi)[None]
    for st in (by_e_step, flat):
        np.testing.assert_allclose(st.k, ref_k, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(st.G, ref_g, rtol=1e-10, atol=1e-12)
        assert st.beta == pytest.approx(60.0)
    halves = FmllrStats.zeros(d)
    halves.accumulate(x[:30], pdfs[:30], gmms)
    other = FmllrStats.zeros(d)
    other.accumulate(x[30:], pdfs[30:], gmms)
    halves.add(other)
    np.testing.assert_allclose(halves.g_packed, by_e_step.g_packed, rtol=1e-10)
    by_e_step.save(tmp_path / "spk.npz")
    np.testing.assert_array_equal(FmllrStats.load(tmp_path / "spk.npz").k, by_e_step.k)

    w = {"spkA": identity_transform(d), "spkB": rng.normal(size=(d, d + 1))}
    write_fmllr_transforms(tmp_path / "trans.ark", w)
    back = read_fmllr_transforms(tmp_path / "trans.ark")
    assert sorted(back) == ["spkA", "spkB"]
    np.testing.assert_allclose(back["spkB"], w["spkB"], rtol=1e-6)
    with pytest.raises(SenoneError, match="does not fit"):
        apply_fmllr(x, rng.normal(size=(d, d)))
