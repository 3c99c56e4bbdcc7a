"""Whole-utterance inference: batching is exact, the label delay is undone in the right direction,
and a network round-trips through final.pt with its input normalisation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from senone.nn.infer import log_posteriors
from senone.nn.model import InputLayout, build_model
from senone.nn.norm import InputNormalized, input_stats


class Identity(torch.nn.Module):
    """Logits = 10 × input: the posterior of frame t's class peaks where its input is one-hot."""

    is_recurrent = True
    left_context = right_context = 0

    def forward(self, x):
        return 10 * x


def test_delay_is_undone_towards_the_future():
    """With delay d, frame t is scored by the output at t + d (the network has seen d more frames)."""
    y = np.array([0, 1, 2, 3, 2, 1])
    x = np.eye(4, dtype=np.float32)[y]
    [(utt, logp)] = list(log_posteriors(Identity(), [("u", x)], label_delay=2))
    assert utt == "u" and logp.shape == (6, 4)
    # output at t+2 reflects input t+2; beyond the end the last frame is repeated
    assert logp.argmax(1).tolist() == [2, 3, 2, 1, 1, 1]
    np.testing.assert_allclose(np.exp(logp).sum(1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("spec", ["Lstm64P32+ReLU64", "CLstm16P8+Pooling+ReLU32", "2xReLU64"])
def test_batching_and_padding_are_exact(spec):
    torch.manual_seed(0)
    model = build_model(spec, InputLayout(31, 3, 3), num_pdfs=20)
    rng = np.random.default_rng(0)
    utts = [(f"u{i}", rng.normal(size=(n, 96)).astype(np.float32)) for i, n in enumerate([30, 7, 52, 1, 19])]
    alone = {u: lp for u, x in utts for _, lp in log_posteriors(model, [(u, x)], label_delay=3)}
    batched = list(log_posteriors(model, utts, label_delay=3, batch_frames=150))
    assert [u for u, _ in batched] == [u for u, _ in utts]  # input order kept across batches
    for u, lp in batched:
        assert lp.shape == (len(dict(utts)[u]), 20)
        np.testing.assert_allclose(lp, alone[u], atol=1e-5)


def test_batch_frames_bounds_the_padded_batch():
    """Memory goes with batch size × the longest row (all rows are padded to it), not the sum of lengths."""
    shapes = []

    class Recorder(Identity):
        def forward(self, x):
            shapes.append(tuple(x.shape[:2]))
            return 10 * x

    lengths = [5, 5, 5, 40, 5, 5, 120, 3]
    utts = [(f"u{i}", np.zeros((n, 4), np.float32)) for i, n in enumerate(lengths)]
    out = list(log_posteriors(Recorder(), utts, label_delay=2, batch_frames=100))
    assert [len(lp) for _, lp in out] == lengths
    assert sum(b for b, _ in shapes) == len(lengths)
    for batch, longest in shapes:
        assert batch * longest <= 100 or batch == 1  # an utterance above the bound runs alone
    assert (1, 122) in shapes


def test_input_normalisation_is_part_of_the_model():
    rng = np.random.default_rng(1)
    frames = [rng.normal(3.0, [1.0, 0.2, 5.0], size=(100, 3)) for _ in range(5)]
    mean, std = input_stats(frames)
    every = np.concatenate(frames)
    np.testing.assert_allclose(mean, every.mean(0), rtol=1e-5)
    np.testing.assert_allclose(std, every.std(0), rtol=1e-4)
    seen = []

    class Probe(torch.nn.Module):
        def forward(self, x):
            seen.append(x)
            return x

    model = InputNormalized(Probe(), mean, std)
    model(torch.from_numpy(np.stack(frames).astype(np.float32)))
    normed = seen[0].reshape(-1, 3).numpy()
    np.testing.assert_allclose(normed.mean(0), 0.0, atol=1e-4)
    np.testing.assert_allclose(normed.std(0), 1.0, atol=1e-3)
    assert set(dict(model.named_buffers())) == {"mean", "inv_std"}  # saved in the state_dict


def test_load_trained_rebuilds_the_network(tmp_path):
    from senone.nn.stage import load_trained

    torch.manual_seed(0)
    net = build_model("Lstm32+ReLU16", InputLayout(31, 3, 0), num_pdfs=7)
    model = InputNormalized(net, np.full(93, 0.5, np.float32), np.full(93, 2.0, np.float32))
    info = {"spec": "Lstm32+ReLU16", "layout": [31, 3, 0], "num_pdfs": 7, "width_scale": 1.0}
    torch.save({"model_info": info, "state_dict": model.state_dict()}, tmp_path / "final.pt")
    loaded, got = load_trained(tmp_path / "final.pt")
    assert got == info
    x = torch.randn(2, 11, 93)
    torch.testing.assert_close(loaded(x), model.eval()(x))
