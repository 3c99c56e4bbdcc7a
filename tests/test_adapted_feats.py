"""nn.fmllr_features: the SAT stage's adapted features as extra network inputs."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from senone import SenoneError
from senone.feats.adapted import adapted_features, append_adapted
from senone.feats.cmvn import apply_cmvn, compute_cmvn_stats, read_features
from senone.feats.deltas import splice
from senone.feats.fmllr import write_fmllr_transforms
from senone.feats.lda import write_kaldi_matrix
from senone.feats.transform import MATRIX_FILE, StageFeatures, write_feature_pipeline
from tests.test_feature_source import stored_cuts

STATIC, LDA_DIM, SPLICE = 4, 3, 1


@pytest.fixture()
def sat_stage(tmp_path):
    """Stored static features of 6 utterances (3 speakers), and a stage dir with a random LDA matrix."""
    rng = np.random.default_rng(0)
    feats = {f"u{i}": rng.normal(size=(20 + i, STATIC)).astype(np.float32) for i in range(6)}
    cuts = stored_cuts(feats, tmp_path / "storage", speakers=3)
    matrix = rng.normal(size=(LDA_DIM, STATIC * (2 * SPLICE + 1))).astype(np.float32)
    stage = tmp_path / "tri3"
    stage.mkdir()
    write_kaldi_matrix(stage / MATRIX_FILE, matrix)
    write_feature_pipeline(stage, StageFeatures.lda(matrix, splice_context=SPLICE), STATIC)
    transforms = {f"spk{s}": np.hstack([np.eye(LDA_DIM) * (s + 2), np.full((LDA_DIM, 1), float(s))])
                  for s in range(3)}
    return cuts, stage, matrix, transforms


def expected(cut, stats, matrix, transform) -> np.ndarray:
    """By hand: CMVN (means) → splice ±1 → LDA → x·Aᵀ + b."""
    x = apply_cmvn(read_features(cut), stats[cut.supervisions[0].speaker])
    y = splice(x, SPLICE, SPLICE) @ matrix.astype(np.float64).T
    return y @ transform[:, :-1].T + transform[:, -1]


def test_adapted_features_are_the_sat_stage_pipeline_with_each_speakers_transform(sat_stage, tmp_path):
    cuts, stage, matrix, transforms = sat_stage
    stats = compute_cmvn_stats(cuts)
    write_fmllr_transforms(tmp_path / "trans.ark", transforms)
    adapted = adapted_features(stage, cuts, stats, tmp_path / "trans.ark")  # read from the archive
    assert adapted.dim == LDA_DIM
    assert sorted(adapted) == sorted(c.id for c in cuts)
    for cut in cuts:
        spk = cut.supervisions[0].speaker
        np.testing.assert_allclose(adapted[cut.id], expected(cut, stats, matrix, transforms[spk]), rtol=1e-4, atol=1e-4)


def test_a_speaker_without_a_transform_keeps_unadapted_features(sat_stage, caplog):
    cuts, stage, matrix, transforms = sat_stage
    stats = compute_cmvn_stats(cuts)
    del transforms["spk1"]
    with caplog.at_level(logging.WARNING):
        adapted = adapted_features(stage, cuts, stats, transforms)
    assert "1 speaker(s) have no fMLLR transform" in caplog.text
    cut = next(c for c in cuts if c.supervisions[0].speaker == "spk1")
    identity = np.hstack([np.eye(LDA_DIM), np.zeros((LDA_DIM, 1))])
    np.testing.assert_allclose(adapted[cut.id], expected(cut, stats, matrix, identity), rtol=1e-4, atol=1e-4)


def test_transforms_of_another_dimension_are_refused(sat_stage):
    cuts, stage, _, _ = sat_stage
    wrong = {"spk0": np.zeros((LDA_DIM + 1, LDA_DIM + 2))}
    with pytest.raises(SenoneError, match=r"spk0 is 4×5.*3-dim"):
        adapted_features(stage, cuts, compute_cmvn_stats(cuts), wrong)


def test_append_adapted_concatenates_and_checks_the_frames():
    x = np.ones((5, 96), np.float32)
    out = append_adapted("u1", x, np.zeros((5, 40)))
    assert out.shape == (5, 136) and out.dtype == np.float32
    np.testing.assert_array_equal(out[:, :96], x)
    with pytest.raises(SenoneError, match="u1: 5 network-input frames but 4 frames"):
        append_adapted("u1", x, np.zeros((4, 40)))
