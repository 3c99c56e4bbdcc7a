"""Truncated BPTT with the state carried across chunks (nn.train.carry_state), the matching chunked
decode of reset-trained networks (nn.decode.chunked), and frame-shuffled FFNN minibatches
(nn.train.batching: frames)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from senone import SenoneError
from senone.nn import lstm as lstm_mod
from senone.nn.batches import FrameBatcher, StreamBatcher, num_frame_batches
from senone.nn.chunks import IGNORE, ChunkConfig, chunk_utterance, pad_edges
from senone.nn.infer import DecodeChunking, log_posteriors
from senone.nn.lstm import PeepholeLstm
from senone.nn.model import InputLayout, build_model
from senone.nn.norm import InputNormalized
from senone.nn.train import TrainConfig, _keep_state, _stream_state
from tests.test_nn_train import one_thread  # noqa: F401  (autouse: one intra-op thread for tiny models)

PAPER = ChunkConfig(chunk_len=15, overlap=5, label_delay=5)
LAYOUT = InputLayout(31, 3, 3)
DEFAULT_CLSTM = "CLstm384P256+Pooling+Lstm2000P750+3xReLU2000"
# (spec, width_scale): plain LSTM, LSTMP, the default CLSTM as trained, and small CLSTM stacks
RECURRENT = [("Lstm12", 1.0), ("Lstm16P8+ReLU8", 1.0), (DEFAULT_CLSTM, 0.125), ("CLstm6P4+Pooling+ReLU8", 1.0),
             ("2x(CLstm6P4+Pooling)+Lstm8", 1.0)]


def _model(spec: str, width_scale: float = 1.0, num_pdfs: int = 7) -> torch.nn.Module:
    torch.manual_seed(0)
    model = build_model(spec, LAYOUT, num_pdfs, width_scale).double()
    with torch.no_grad():  # non-trivial peepholes: every term of the carried state matters
        for m in model.modules():
            if isinstance(m, PeepholeLstm):
                m.peep.uniform_(-1.0, 1.0)
    return model


def _feats(T: int, seed: int = 0, utt_index: float = 0.0) -> np.ndarray:
    """float32 features (as the batcher hands them); dimension 0 holds the utterance's index."""
    x = np.random.default_rng(seed).normal(size=(T, LAYOUT.feat_dim)).astype(np.float32)
    x[:, 0] = utt_index
    return x


def _whole(model: torch.nn.Module, x: np.ndarray, delay: int) -> torch.Tensor:
    """Outputs over the whole extended utterance (T + delay frames) from a zero state."""
    with torch.no_grad():
        return model(torch.from_numpy(pad_edges(x, 0, delay)).double()[None])[0]


# -- the model interface ----------------------------------------------------------------------------------

@pytest.mark.parametrize("spec, width_scale", RECURRENT)
@pytest.mark.parametrize("T", [23, 57])
def test_chunks_with_carried_state_equal_the_whole_utterance(spec, width_scale, T):
    """Every chunk fed with the state of the one before gives, on every scored frame (and on every
    frame at all), what the whole-utterance pass gives — with and without autograd recording."""
    model = _model(spec, width_scale)
    x = _feats(T)
    inputs, targets = chunk_utterance(x, np.arange(T), PAPER)
    whole = _whole(model, x, PAPER.label_delay)
    state = None
    scored = 0
    for k in range(len(inputs)):
        chunk = torch.from_numpy(inputs[k:k + 1]).double()
        with torch.no_grad():
            y, new = model(chunk, state=state, carry_at=PAPER.step)
        y_grad, new_grad = model(chunk, state=state, carry_at=PAPER.step)  # the training path (hand-written BPTT)
        assert len(new) == model.num_recurrent_layers
        for (h, c), (hg, cg) in zip(new, new_grad):
            assert not hg.requires_grad and not cg.requires_grad  # truncation: the carried state takes no gradient
            torch.testing.assert_close(h, hg, rtol=0, atol=1e-13)
            torch.testing.assert_close(c, cg, rtol=0, atol=1e-13)
        pos = np.flatnonzero(targets[k] != IGNORE)
        frames = k * PAPER.step + pos
        torch.testing.assert_close(y[0, pos], whole[frames], rtol=0, atol=1e-10)
        torch.testing.assert_close(y_grad[0, pos].detach(), whole[frames], rtol=0, atol=1e-10)
        real = np.arange(PAPER.chunk_len)[k * PAPER.step + np.arange(PAPER.chunk_len) < T + PAPER.label_delay]
        torch.testing.assert_close(y[0, real], whole[k * PAPER.step + real], rtol=0, atol=1e-10)
        scored += len(pos)
        state = new
    assert scored == T


@pytest.mark.parametrize("spec, width_scale", RECURRENT[:3])
def test_reset_chunks_do_not_equal_the_whole_utterance(spec, width_scale):
    """The check above is not blind: from a zero state per chunk the scored frames of later chunks differ."""
    model = _model(spec, width_scale)
    x = _feats(40)
    inputs, targets = chunk_utterance(x, np.arange(40), PAPER)
    whole = _whole(model, x, PAPER.label_delay)
    with torch.no_grad():
        y = model(torch.from_numpy(inputs[1:2]).double())
    pos = np.flatnonzero(targets[1] != IGNORE)
    assert (y[0, pos] - whole[PAPER.step + pos]).abs().amax() > 1e-4


def test_hand_worked_example_of_carried_states():
    """T = 23, L = 15, overlap 5, delay 5 (the example of test_nn_chunks): the extended utterance has
    28 frames, chunks start at 0, 10, 20.

    chunk 0 starts from zero, runs frames 0..14, scores labels 0..9 (outputs 5..14) and hands on the
    state after its first 10 frames (frames 0..9);
    chunk 1 starts from that state, re-runs frames 10..14 (their outputs are chunk 0's: same state,
    same inputs), scores labels 10..19 (outputs 15..24) and hands on the state after frames 0..19;
    chunk 2 starts from the state after frames 0..19, scores labels 20..22 (outputs 25..27), its
    frames 28..34 being padding; its own carried state is never used.
    """
    torch.manual_seed(0)
    layer = PeepholeLstm(2, 4, 3).double()
    with torch.no_grad():
        layer.peep.uniform_(-1, 1)
    T = 23
    x = np.stack([np.arange(T), np.sin(np.arange(T))], 1).astype(np.float32)
    inputs, targets = chunk_utterance(x, np.arange(T), PAPER)
    I = IGNORE
    assert targets.tolist() == [[I] * 5 + list(range(0, 10)), [I] * 5 + list(range(10, 20)),
                                [I] * 5 + [20, 21, 22] + [I] * 7]  # the same frames are scored as under reset
    ext = torch.from_numpy(pad_edges(x, 0, 35 - T)).double()[None]  # extended and padded as the chunks are
    with torch.no_grad():
        _, after_10 = layer(ext, carry_at=10)  # the state after frames 0..9
        _, after_20 = layer(ext, carry_at=20)  # after frames 0..19
        y0, s1 = layer(torch.from_numpy(inputs[0:1]).double(), carry_at=10)
        y1, s2 = layer(torch.from_numpy(inputs[1:2]).double(), state=s1, carry_at=10)
        y2, _ = layer(torch.from_numpy(inputs[2:3]).double(), state=s2, carry_at=10)
    for got, want in zip(s1, after_10):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-12)
    for got, want in zip(s2, after_20):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-12)
    torch.testing.assert_close(y1[0, :5], y0[0, 10:], rtol=0, atol=1e-12)  # the overlap, recomputed identically
    torch.testing.assert_close(y2[0, :5], y1[0, 10:], rtol=0, atol=1e-12)
    with torch.no_grad():
        zero = layer(torch.from_numpy(inputs[1:2]).double())
    assert (zero[0, 5:] - y1[0, 5:]).abs().amax() > 1e-3  # a zero state would not do


# -- the scan with an initial state: hand-written backward against autograd ---------------------------------

@pytest.mark.parametrize("proj", [None, 3])
@pytest.mark.parametrize("carry_at", [-1, 0, 3, 5])
def test_bptt_with_initial_state_equals_autograd(proj, carry_at):
    torch.manual_seed(1)
    T, n, cells = 5, 4, 6
    rec = proj or cells
    args = [torch.randn(T, n, 4 * cells, dtype=torch.float64, requires_grad=True),
            torch.randn(4 * cells, rec, dtype=torch.float64, requires_grad=True),
            torch.randn(3, cells, dtype=torch.float64, requires_grad=True),
            torch.randn(rec, cells, dtype=torch.float64, requires_grad=True) if proj else None,
            torch.randn(n, rec, dtype=torch.float64, requires_grad=True),
            torch.randn(n, cells, dtype=torch.float64, requires_grad=True)]
    assert torch.autograd.gradcheck(lambda *a: lstm_mod.lstm_scan_bptt_from(*a, carry_at)[0], args)
    present = [a for a in args if a is not None]
    grad_out = torch.randn(T, n, rec, dtype=torch.float64)
    h, h_s, c_s = lstm_mod.lstm_scan_bptt_from(*args, carry_at)
    ref_h, ref_hs, ref_cs = lstm_mod.lstm_scan_from(*args, carry_at)
    for got, want in ((h, ref_h), (h_s, ref_hs), (c_s, ref_cs)):
        torch.testing.assert_close(got.detach(), want.detach(), rtol=1e-12, atol=1e-14)
    if carry_at >= 0:  # the carried state is the state after carry_at steps
        assert h_s.shape == (n, rec) and c_s.shape == (n, cells)
        if carry_at > 0:
            assert torch.equal(h_s, h[carry_at - 1].detach())  # the output of step carry_at, bit for bit
    else:
        assert h_s.numel() == 0 and c_s.numel() == 0
    assert not h_s.requires_grad and not c_s.requires_grad  # non-differentiable: BPTT stops there
    ours = torch.autograd.grad(h, present, grad_out)
    ref = torch.autograd.grad(ref_h, present, grad_out)
    for a, b in zip(ours, ref):  # weights, gx and the initial state h0, c0 alike
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    for impl in ("loop", "jit", "bptt"):  # the three implementations of the state path agree
        with torch.no_grad():
            got = lstm_mod.CARRY_SCANS[impl](*args, carry_at)
        for a, b in zip(got, (ref_h, ref_hs, ref_cs)):
            torch.testing.assert_close(a, b.detach(), rtol=1e-12, atol=1e-14)


def test_plain_call_and_state_errors():
    torch.manual_seed(0)
    layer = PeepholeLstm(3, 5, 2)
    x = torch.randn(4, 7, 3)
    y = layer(x)
    y2, (h, c) = layer(x, carry_at=7)
    assert torch.equal(y, y2) and torch.equal(h, y[:, -1])  # a zero state is the plain call's
    assert h.shape == (4, 2) and c.shape == (4, 5)
    assert torch.equal(layer(x, state=(torch.zeros(4, 2), torch.zeros(4, 5))), y)
    with pytest.raises(SenoneError, match=r"expected \(4, 2\) and \(4, 5\)"):
        layer(x, state=(torch.zeros(3, 2), torch.zeros(3, 5)))
    with pytest.raises(SenoneError, match="carry_at=8"):
        layer(x, carry_at=8)
    model = build_model("Lstm8+Lstm4", InputLayout(3, 1, 0), 5)
    _, state = model(x, carry_at=2)
    with pytest.raises(SenoneError, match="2 recurrent layer"):
        model(x, state=state + state[:1], carry_at=2)
    norm = InputNormalized(model, np.zeros(3, np.float32), np.ones(3, np.float32))
    assert norm.takes_state and not InputNormalized(torch.nn.Identity(), np.zeros(3), np.ones(3)).takes_state
    torch.testing.assert_close(norm(x, carry_at=2)[0], model(x))


# -- stream slots: the state follows its stream when minibatches shrink ---------------------------------------

def _corpus(lengths):
    feats = {f"u{i}": _feats(n, seed=i, utt_index=i) for i, n in enumerate(lengths)}
    labels = {u: np.arange(len(x)) for u, x in feats.items()}
    return feats, labels


# utterances of 1 to 14 chunks in an order (3 streams) where slot 1 runs dry first, then slot 0, while the
# 130-frame utterance goes on in slot 2: the last minibatches are slots [0, 2], then [2] alone
SHRINKING = [60, 40, 5, 130, 12, 1, 8, 23]


def test_stream_slots_when_batches_shrink():
    """The batches shrink at the end, and every row says its slot; chunk k + 1 of an utterance comes in
    the slot of chunk k, one minibatch later, whatever row that is."""
    lengths = SHRINKING
    feats, labels = _corpus(lengths)
    order = [f"u{i}" for i in range(len(lengths))]
    batches = list(StreamBatcher(order, feats.__getitem__, labels, PAPER, num_streams=3))
    sizes = [len(b.streams) for b in batches]
    assert sizes[0] == 3 and sizes[-1] < 3 and sizes == sorted(sizes, reverse=True)
    assert [b.streams.tolist() for b in batches[-7:]] == [[0, 2]] * 3 + [[2]] * 4
    assert [b.starts.tolist() for b in batches[:2]] == [[True] * 3, [False, False, True]]
    slot_utt: dict[int, tuple[int, int]] = {}  # slot -> (utterance index, chunk index)
    shrunk_off_zero = False
    for b in batches:
        assert len(set(b.streams.tolist())) == len(b.streams) and set(b.streams.tolist()) <= {0, 1, 2}
        shrunk_off_zero |= b.streams.tolist() != list(range(len(b.streams)))
        for row, slot in enumerate(b.streams.tolist()):
            utt = int(b.inputs[row, 0, 0])
            if b.starts[row]:
                slot_utt[slot] = (utt, 0)
            else:
                prev_utt, k = slot_utt[slot]
                assert utt == prev_utt  # the same utterance continues in the same slot
                slot_utt[slot] = (utt, k + 1)
    assert shrunk_off_zero  # some shrunken batch has rows whose slot is not their row index
    assert sum(int(b.starts.sum()) for b in batches) == sum(1 for n in lengths if n > 0)


@pytest.mark.parametrize("spec, width_scale", [("Lstm16P8+ReLU8", 1.0), ("CLstm6P4+Pooling+Lstm8", 1.0)])
def test_trainer_state_bookkeeping_reproduces_whole_utterances(spec, width_scale):
    """The trainer's per-slot store (_stream_state / _keep_state) over the batcher's shrinking minibatches:
    every scored output equals that utterance's whole-utterance output at the same frame."""
    model = _model(spec, width_scale)
    lengths = SHRINKING
    feats, labels = _corpus(lengths)
    whole = {int(x[0, 0]): _whole(model, x, PAPER.label_delay) for x in feats.values()}
    order = [f"u{i}" for i in range(len(lengths))]
    store = None
    chunk_of: dict[int, int] = {}
    checked = 0
    for b in StreamBatcher(order, feats.__getitem__, labels, PAPER, num_streams=3):
        with torch.no_grad():
            y, carried = model(torch.from_numpy(b.inputs).double(), state=_stream_state(store, b, torch.device("cpu")),
                               carry_at=PAPER.step)
        store = _keep_state(store, carried, b, 3)
        for row, slot in enumerate(b.streams.tolist()):
            chunk_of[slot] = 0 if b.starts[row] else chunk_of[slot] + 1
            pos = np.flatnonzero(b.targets[row] != IGNORE)
            frames = chunk_of[slot] * PAPER.step + pos
            utt = int(b.inputs[row, 0, 0])
            torch.testing.assert_close(y[row, pos], whole[utt][frames], rtol=0, atol=1e-10)
            checked += len(pos)
    assert checked == sum(lengths)


# -- chunked decoding: the condition reset training saw -------------------------------------------------------

@pytest.mark.parametrize("spec, width_scale", [("Lstm16P8+ReLU8", 1.0), ("CLstm6P4+Pooling+Lstm8", 1.0),
                                               (DEFAULT_CLSTM, 0.125)])
def test_chunked_decode_equals_what_reset_training_saw(spec, width_scale):
    model = _model(spec, width_scale).float()
    utts = [(f"u{i}", _feats(n, seed=i)) for i, n in enumerate([23, 7, 61, 1, 30])]
    chunked = dict(log_posteriors(model, utts, PAPER.label_delay, chunk_len=15, left_context=5, batch_frames=100))
    whole = dict(log_posteriors(model, utts, PAPER.label_delay))
    for utt, x in utts:
        T = len(x)
        assert chunked[utt].shape == (T, 7)
        inputs, targets = chunk_utterance(x, np.arange(T), PAPER)  # exactly training's chunks, zero state each
        with torch.no_grad():
            trained = torch.log_softmax(model(torch.from_numpy(inputs)), -1).numpy()
        k, p = np.nonzero(targets != IGNORE)
        np.testing.assert_allclose(chunked[utt][targets[k, p]], trained[k, p], rtol=0, atol=1e-5)
        if T > 10:  # past the first chunk, the decode sees less than the whole past: it differs
            assert np.abs(chunked[utt] - whole[utt]).max() > 1e-4
        else:
            np.testing.assert_allclose(chunked[utt], whole[utt], rtol=0, atol=1e-5)
    # the chunks of several utterances share forward passes exactly: alone gives the same
    for utt, x in utts:
        [(_, alone)] = list(log_posteriors(model, [(utt, x)], PAPER.label_delay, chunk_len=15, left_context=5))
        np.testing.assert_allclose(alone, chunked[utt], rtol=0, atol=1e-5)


def test_chunked_decode_of_an_ffnn_is_the_whole_decode():
    torch.manual_seed(0)
    model = build_model("2xReLU16", LAYOUT, 7)
    utts = [("a", _feats(30)), ("b", _feats(4, seed=1))]
    a = dict(log_posteriors(model, utts, 0, chunk_len=15, left_context=5))
    b = dict(log_posteriors(model, utts, 0))
    for u in a:
        np.testing.assert_array_equal(a[u], b[u])


def test_decode_chunking_settings_and_checks():
    assert DecodeChunking.from_conf({"lm_weights": [9], "beam": 13}).kwargs() == {}
    on = DecodeChunking.from_conf({"chunked": True, "lm_weights": [9]})
    assert on.kwargs() == {"chunk_len": 15, "left_context": 5}
    reset = {"chunk_len": 15, "overlap": 5, "carry_state": False}
    assert on.mismatches(reset, is_recurrent=True) == []
    assert "cuts the history" in on.mismatches({**reset, "carry_state": True}, True)[0]
    assert "chunk_len: 20 and left_context: 4" in on.mismatches({**reset, "chunk_len": 20, "overlap": 4}, True)[0]
    assert "no effect on an FFNN" in on.mismatches(reset, False)[0]
    assert DecodeChunking().mismatches({**reset, "carry_state": True}, True) == []
    with pytest.raises(SenoneError, match="left_context < chunk_len"):
        DecodeChunking(chunked=True, chunk_len=5, left_context=5)


# -- frame-shuffled FFNN minibatches -------------------------------------------------------------------------

def test_frame_batches_cover_every_labelled_frame_once_and_are_seeded():
    lengths = [5, 40, 23, 1, 60, 12]
    feats = {f"u{i}": np.stack([np.full(n, i), np.arange(n)], 1).astype(np.float32) for i, n in enumerate(lengths)}
    labels = {u: 1000 * i + np.arange(len(x)) for i, (u, x) in enumerate(feats.items())}  # label = frame identity
    utts = sorted(feats)

    def batches(epoch, rank=0, size=1, seed=0):
        return list(FrameBatcher(utts, feats.__getitem__, labels, 5, 5, 16, seed, epoch, rank, size))

    one = batches(1)
    assert len(one) == num_frame_batches(sum(lengths), 16) == -(-sum(lengths) // 16)
    got = np.concatenate([b.targets[:, 0] for b in one])
    want = np.concatenate([labels[u] for u in utts])
    assert sorted(got.tolist()) == sorted(want.tolist())  # every labelled frame exactly once
    assert got.tolist() != sorted(got.tolist())  # in a shuffled order...
    assert len({int(u) for u in one[0].inputs[:, 5, 0]}) > 2  # ...that mixes utterances within a minibatch
    for b in one:  # each input is its frame's ±5 window, the utterance's edge frames repeated
        assert b.inputs.shape[1:] == (11, 2) and b.targets.shape[1] == 1 and b.streams is None
        for row, lab in enumerate(b.targets[:, 0]):
            u, t = divmod(int(lab), 1000)
            assert (b.inputs[row, :, 0] == u).all()
            assert b.inputs[row, :, 1].tolist() == np.clip(np.arange(t - 5, t + 6), 0, lengths[u] - 1).tolist()
    # seeded: the same (seed, epoch) gives the same minibatches, another epoch or seed another order
    again = batches(1)
    assert all(np.array_equal(a.inputs, b.inputs) and np.array_equal(a.targets, b.targets) for a, b in zip(one, again))
    assert not np.array_equal(np.concatenate([b.targets for b in batches(2)]), np.concatenate([b.targets for b in one]))
    assert not np.array_equal(np.concatenate([b.targets for b in batches(1, seed=1)]),
                              np.concatenate([b.targets for b in one]))
    # DDP: rank r takes every world_size-th frame of the same order; the ranks together cover the epoch once
    shards = [np.concatenate([b.targets[:, 0] for b in batches(1, r, 3)]) for r in range(3)]
    assert [len(s) for s in shards] == [len(range(r, sum(lengths), 3)) for r in range(3)]
    assert [num_frame_batches(sum(lengths), 16, r, 3) for r in range(3)] == [len(batches(1, r, 3)) for r in range(3)]
    assert sorted(np.concatenate(shards).tolist()) == sorted(want.tolist())
    np.testing.assert_array_equal(shards[1], got[1::3])


# -- settings ----------------------------------------------------------------------------------------------------

def test_conf_defaults_match_the_library():
    conf = yaml.safe_load((Path(__file__).resolve().parents[1] / "conf" / "nn.yaml").read_text())["nn"]
    lib = TrainConfig()
    for key, value in conf["train"].items():  # every shared training setting: one default, in conf and library
        assert value == getattr(lib, key), key
    dec = DecodeChunking()
    for key in DecodeChunking.KEYS:
        assert conf["decode"][key] == getattr(dec, key), key
    # decoding chunks default to training's chunks: chunked: true alone gives the matching condition
    assert (dec.chunk_len, dec.left_context) == (lib.chunk_len, lib.overlap)
    assert lib.carry_state is False and lib.batching == "streams"


def test_bad_settings_are_clear():
    with pytest.raises(SenoneError, match="batching 'shuffled'"):
        TrainConfig(batching="shuffled")
    with pytest.raises(SenoneError, match="carry_state"):
        TrainConfig(carry_state="yes")
    with pytest.raises(SenoneError, match="frames_per_batch=0"):
        TrainConfig(frames_per_batch=0)
