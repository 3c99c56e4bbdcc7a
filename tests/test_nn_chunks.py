"""Chunking for truncated BPTT, label delay, stream minibatches and priors, against hand-worked examples."""

from __future__ import annotations

import numpy as np
import pytest

from senone import SenoneError
from senone.nn.batches import StreamBatcher, epoch_order, num_batches
from senone.nn.chunks import IGNORE, ChunkConfig, chunk_utterance, num_chunks, undo_delay
from senone.nn.priors import log_priors, pdf_counts, pseudo_loglikes

PAPER = ChunkConfig(chunk_len=15, overlap=5, label_delay=5)


def test_hand_worked_example_23_frames():
    """T=23, L=15, overlap 5, delay 5 (worked by hand):

    extended utterance = 23 + 5 = 28 frames; chunks start every 10 frames: [0,15), [10,25), [20,35).
    chunk 0 scores extended frames 5..14 = labels 0..9 (0..4 are before the delay);
    chunk 1 warms up on 10..14 and scores 15..24 = labels 10..19;
    chunk 2 warms up on 20..24 and scores 25..27 = labels 20..22; 28..34 are padding.
    """
    T = 23
    x = np.arange(T, dtype=np.float32)[:, None] * np.ones((1, 2), np.float32)
    y = np.arange(100, 100 + T)
    inputs, targets = chunk_utterance(x, y, PAPER)
    assert inputs.shape == (3, 15, 2) and targets.shape == (3, 15)
    assert num_chunks(T, PAPER) == 3
    # inputs: frames 0..14, 10..24 (23, 24 repeat frame 22), 20..34 (all beyond 22 repeat frame 22)
    np.testing.assert_array_equal(inputs[0, :, 0], np.arange(15))
    np.testing.assert_array_equal(inputs[1, :, 0], np.minimum(np.arange(10, 25), 22))
    np.testing.assert_array_equal(inputs[2, :, 0], np.minimum(np.arange(20, 35), 22))
    I = IGNORE
    assert targets[0].tolist() == [I] * 5 + list(range(100, 110))
    assert targets[1].tolist() == [I] * 5 + list(range(110, 120))
    assert targets[2].tolist() == [I] * 5 + [120, 121, 122] + [I] * 7
    # every label scored exactly once, output at extended frame t carries the label of frame t - 5
    scored = targets[targets != I]
    assert sorted(scored.tolist()) == y.tolist()


@pytest.mark.parametrize("T", [1, 4, 10, 14, 15, 16, 24, 25, 26, 100, 101])
@pytest.mark.parametrize("cfg", [PAPER, ChunkConfig(15, 0, 0), ChunkConfig(7, 3, 2), ChunkConfig(1, 0, 0)])
def test_every_frame_scored_once(T, cfg):
    y = np.arange(T)
    inputs, targets = chunk_utterance(np.zeros((T, 3), np.float32), y, cfg)
    scored = targets[targets != IGNORE]
    assert sorted(scored.tolist()) == list(range(T))
    assert len(inputs) == num_chunks(T, cfg)
    # the delay: in each chunk, the target at position p (if scored) is the label of input frame start+p-delay
    step = cfg.chunk_len - cfg.overlap
    for k in range(len(targets)):
        for p in np.nonzero(targets[k] != IGNORE)[0]:
            assert targets[k, p] == k * step + p - cfg.label_delay


def test_ffnn_context_frames_repeat_edges():
    cfg = ChunkConfig(chunk_len=4, overlap=0, label_delay=0, left_context=2, right_context=2)
    x = np.arange(6, dtype=np.float32)[:, None]
    inputs, targets = chunk_utterance(x, np.arange(6), cfg)
    assert inputs.shape == (2, 8, 1)
    assert inputs[0, :, 0].tolist() == [0, 0, 0, 1, 2, 3, 4, 5]
    assert inputs[1, :, 0].tolist() == [2, 3, 4, 5, 5, 5, 5, 5]
    assert targets.tolist() == [[0, 1, 2, 3], [4, 5, IGNORE, IGNORE]]


def test_mismatched_lengths_and_bad_config_are_clear():
    with pytest.raises(SenoneError, match="same frames"):
        chunk_utterance(np.zeros((10, 2), np.float32), np.zeros(9, int), PAPER)
    with pytest.raises(SenoneError, match="overlap"):
        ChunkConfig(chunk_len=5, overlap=5)


def test_undo_delay():
    out = np.arange(8)[:, None]
    assert undo_delay(out, 3, 5)[:, 0].tolist() == [3, 4, 5, 6, 7]
    with pytest.raises(SenoneError):
        undo_delay(out, 3, 4)


def _toy(lengths):
    feats = {f"u{i}": np.full((n, 2), i, np.float32) for i, n in enumerate(lengths)}
    labels = {u: np.arange(len(f)) for u, f in feats.items()}
    return feats, labels


def test_stream_batches_come_from_different_utterances_and_cover_everything():
    lengths = [5, 40, 23, 1, 60, 12, 33, 8]
    feats, labels = _toy(lengths)
    order = epoch_order(sorted(feats), seed=3, epoch=1)
    batcher = StreamBatcher(order, feats.__getitem__, labels, PAPER, num_streams=3)
    seen = []
    batches = list(batcher)
    for b in batches:
        assert b.inputs.shape[0] <= 3
        utt_ids = b.inputs[:, 0, 0].tolist()
        assert len(set(utt_ids)) == len(utt_ids)  # one chunk per utterance in a minibatch
        seen.append(b.num_scored)
    assert sum(seen) == sum(lengths)  # every frame scored once over the epoch
    assert len(batches) == len(batcher) == num_batches(order, {u: len(v) for u, v in labels.items()}, PAPER, 3)
    assert [b.inputs.shape[0] for b in batches][0] == 3


def test_epoch_order_depends_on_seed_and_epoch_and_shards_by_rank():
    utts = [f"u{i}" for i in range(50)]
    assert epoch_order(utts, 0, 1) == epoch_order(utts, 0, 1)
    assert epoch_order(utts, 0, 1) != epoch_order(utts, 0, 2)
    shards = [epoch_order(utts, 0, 1, r, 2) for r in range(2)]
    assert sorted(shards[0] + shards[1]) == sorted(utts) and not set(shards[0]) & set(shards[1])


def test_priors_floor_unseen_pdfs_and_scale():
    counts = pdf_counts([np.array([0, 0, 1, 3]), np.array([3, 3])], num_pdfs=5)
    assert counts.tolist() == [2, 1, 0, 3, 0]
    lp = log_priors(counts)
    # unseen pdfs (2, 4) get the prior of a pdf seen once
    assert lp[2] == pytest.approx(lp[1]) and lp[4] == pytest.approx(lp[1])
    np.testing.assert_allclose(np.exp(lp), np.array([2, 1, 1, 3, 1]) / 8, rtol=1e-6)
    logpost = np.log(np.full((2, 5), 0.2, np.float32))
    ll = pseudo_loglikes(logpost, lp, prior_scale=1.0)
    np.testing.assert_allclose(ll, logpost - lp[None, :], rtol=1e-6)
    np.testing.assert_allclose(pseudo_loglikes(logpost, lp, 0.0), logpost)
    with pytest.raises(SenoneError, match="different trees"):
        pdf_counts([np.array([5])], num_pdfs=5)
