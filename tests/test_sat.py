"""Speaker-adaptive training (train_sat.sh) on the toy HMM world with speaker-specific distortions."""

from __future__ import annotations

import numpy as np
import pytest

from senone.feats.deltas import add_deltas
from senone.feats.fmllr import fmllr_logdet, identity_transform
from senone.gmm.mono import MonoConfig, train_mono
from senone.gmm.sat import SatConfig, adapt, train_sat
from senone.gmm.triphone import TriConfig, train_triphone
from tests import toy_hmm
from tests.test_lda_mllt import toy_lang


def speaker_corpus():
    """Three speakers, each a different affine distortion of the toy features; 'tiny' has one utterance."""
    transcripts, feats, _ = toy_hmm.make_corpus(61, seed=11)
    rng = np.random.default_rng(3)
    utts = sorted(feats)
    utt2spk = {u: ("tiny" if i == 60 else f"s{i % 2}") for i, u in enumerate(utts)}
    distort = {s: (np.eye(toy_hmm.DIM) + 0.3 * rng.normal(size=(toy_hmm.DIM, toy_hmm.DIM)),
                   rng.normal(scale=2.0, size=toy_hmm.DIM)) for s in ("s0", "s1", "tiny")}
    out = {}
    for u, x in feats.items():
        a, b = distort[utt2spk[u]]
        out[u] = add_deltas((x @ a.T + b).astype(np.float32)).astype(np.float32)
    return transcripts, out, utt2spk


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("sat")
    transcripts, feats, utt2spk = speaker_corpus()
    mono = train_mono(toy_hmm.topology(), toy_hmm.lexicon_fst(), [], transcripts, feats, toy_hmm.DIM * 3,
                      root / "mono", MonoConfig(num_iters=8, max_iter_inc=5, tot_gauss=30,
                                                realign_iters=(1, 2, 3, 4, 5, 6), init_subset=61))
    lang = toy_lang(root / "lang")
    common = dict(num_leaves=14, tot_gauss=40, min_leaf_count=20.0, num_iters=8, max_iter_inc=6, realign_iters=(3, 6))
    tri = train_triphone(lang, toy_hmm.lexicon_fst(), transcripts, feats, mono.model, mono.alignments, root / "tri",
                         TriConfig(**common))
    sat, transforms = train_sat(lang, toy_hmm.lexicon_fst(), transcripts, feats, utt2spk, mono.model,
                                mono.alignments, root / "sat",
                                SatConfig(**common, fmllr_iters=(2, 4), fmllr_min_count=200.0))
    return root, feats, utt2spk, tri, sat, transforms


def test_sat_fits_better_than_speaker_independent(world):
    """Likelihoods in the adapted space count the transforms' log-determinant (the Jacobian)."""
    _, feats, utt2spk, tri, sat, transforms = world
    frames = {s: sum(len(x) for u, x in feats.items() if utt2spk[u] == s) for s in transforms}
    jacobian = sum(frames[s] * fmllr_logdet(w) for s, w in transforms.items()) / sum(frames.values())
    assert sat.history[-1].like_per_frame + jacobian > tri.history[-1].like_per_frame + 0.2


def test_each_speaker_gets_a_transform_and_a_tiny_one_keeps_identity(world):
    root, feats, utt2spk, _, _, transforms = world
    assert set(transforms) == {"s0", "s1", "tiny"}
    np.testing.assert_allclose(transforms["tiny"], identity_transform(feats[next(iter(feats))].shape[1]))
    assert np.abs(transforms["s0"] - identity_transform(transforms["s0"].shape[0])).max() > 0.05
    # every update is kept, as Kaldi's trans.* files, plus the final one
    for name in ("trans.0.ark", "trans.2.ark", "trans.4.ark", "trans.ark", "final.pkl", "tree"):
        assert (root / "sat" / name).is_file(), name
    adapted = adapt(feats, utt2spk, transforms)
    u = next(u for u, s in utt2spk.items() if s == "tiny")
    np.testing.assert_allclose(adapted[u], feats[u], atol=1e-5)


def test_transforms_do_not_depend_on_the_number_of_jobs(world):
    """Speakers, not utterances, are sharded: each speaker's statistics are summed in the same order."""
    root, feats, utt2spk, tri, _, _ = world
    from senone.gmm.sat import estimate_transforms

    one, two = (estimate_transforms(tri.model, feats, tri.alignments, utt2spk, {1}, min_count=200.0, num_jobs=n) for n in (1, 2))
    assert sorted(one) == sorted(two) == ["s0", "s1", "tiny"]
    for spk in one:
        np.testing.assert_array_equal(one[spk], two[spk])
    assert np.abs(one["s0"] - identity_transform(one["s0"].shape[0])).max() > 0.05
