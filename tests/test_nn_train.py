"""The trainer: it learns, it is deterministic, a killed run resumes to the same model, DDP on gloo works
(with a state reset per chunk, a carried state, and frame-shuffled FFNN batches)."""

from __future__ import annotations

import json
import os
import socket

import numpy as np
import pytest
import torch

from senone import SenoneError
from senone.nn.model import InputLayout, build_model
from senone.nn.train import FINAL, HISTORY, TrainConfig, lr_at, train

NUM_PDFS = 4


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models: one intra-op thread is fastest and keeps the 2-core CI machine usable."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


class ToyLstm(torch.nn.Module):
    """A tiny recurrent senone classifier with the interface of senone.nn models."""

    is_recurrent = True
    left_context = 0
    right_context = 0

    def __init__(self, dim: int = 3):
        super().__init__()
        self.lstm = torch.nn.LSTM(dim, 8, batch_first=True)
        self.out = torch.nn.Linear(8, NUM_PDFS)

    def forward(self, x):
        return self.out(self.lstm(x)[0])


def toy_data(num_utts: int = 40, seed: int = 0):
    """Each frame's input is a noisy code of its label; with the label delay (2) the output must
    remember the input of two frames earlier: learnable only through the recurrence."""
    rng = np.random.default_rng(seed)
    feats, labels = {}, {}
    for i in range(num_utts):
        T = int(rng.integers(20, 60))
        y = rng.integers(0, NUM_PDFS, T)
        x = np.zeros((T, 3), np.float32)
        x[np.arange(T), np.minimum(y, 2)] = 1.0
        x[:, :] += rng.normal(0, 0.1, (T, 3)).astype(np.float32)
        x[y == 3, :] = -1.0
        feats[f"utt{i:03d}"] = x
        labels[f"utt{i:03d}"] = y
    return feats, labels


CFG = dict(num_epochs=6, optimizer="adam", lr_initial=0.05, lr_final=0.01, num_streams=4, chunk_len=8, overlap=2,
           label_delay=2, seed=0, log_every=0)
# the same with the state carried across chunks (senone's own LSTM: it takes a state), and an FFNN on
# frames shuffled over the epoch
CARRY = {**CFG, "carry_state": True}
FRAMES = {**CFG, "batching": "frames", "frames_per_batch": 32}


def senone_lstm():
    return build_model("Lstm8", InputLayout(3, 1, 0), NUM_PDFS)


def senone_ffnn():
    return build_model("ReLU16", InputLayout(3, 1, 0), NUM_PDFS)


def run(out_dir, cfg=CFG, kill_after=None, feats_labels=None, make_model=ToyLstm):
    feats, labels = feats_labels or toy_data()
    utts = sorted(feats)
    torch.manual_seed(0)
    model = make_model()

    def on_epoch(history):
        if kill_after is not None and len(history) == kill_after:
            raise KeyboardInterrupt("simulated kill")

    result = train(model, utts[4:], utts[:4], feats.__getitem__, labels, TrainConfig(**cfg), out_dir,
                   model_info={"spec": "toy", "num_pdfs": NUM_PDFS}, device=torch.device("cpu"), on_epoch=on_epoch)
    return model, result


def test_learns_and_selects_best_epoch(tmp_path):
    model, result = run(tmp_path)
    h = result.history
    assert len(h) == 6
    assert h[-1].train_loss < h[0].train_loss
    assert h[-1].valid_acc > 0.85  # chance is 0.25
    final = torch.load(tmp_path / FINAL, weights_only=False)
    assert final["epoch"] == min(h, key=lambda r: r.valid_loss).epoch
    assert final["model_info"]["spec"] == "toy"
    hist = json.loads((tmp_path / HISTORY).read_text())
    assert [e["epoch"] for e in hist["epochs"]] == list(range(1, 7))
    assert 0.0 <= h[0].data_share < 1.0


@pytest.mark.parametrize("cfg, make_model", [(CARRY, senone_lstm), (FRAMES, senone_ffnn)], ids=["carry", "frames"])
def test_carried_state_and_frame_batches_learn(tmp_path, cfg, make_model):
    _, result = run(tmp_path, cfg=cfg, make_model=make_model)
    h = result.history
    assert h[-1].train_loss < h[0].train_loss
    assert h[-1].valid_acc > 0.8  # chance is 0.25
    # every labelled training frame is trained on once per epoch, in either scheme
    feats, labels = toy_data()
    assert {r.frames for r in h} == {sum(len(labels[u]) for u in sorted(feats)[4:])}


def test_carried_state_changes_training_and_needs_a_model_that_takes_it(tmp_path):
    cfg = {**CFG, "num_epochs": 1}
    reset, _ = run(tmp_path / "reset", cfg=cfg, make_model=senone_lstm)
    carry, _ = run(tmp_path / "carry", cfg={**cfg, "carry_state": True}, make_model=senone_lstm)
    assert any(not torch.equal(p, q) for p, q in zip(reset.state_dict().values(), carry.state_dict().values()))
    with pytest.raises(SenoneError, match="does not take a recurrent state"):
        run(tmp_path / "toy", cfg={**cfg, "carry_state": True})  # torch.nn.LSTM inside: no state interface
    # an FFNN has no state: carry_state leaves its training as it was, bit for bit
    a, _ = run(tmp_path / "ffnn_a", cfg=cfg, make_model=senone_ffnn)
    b, _ = run(tmp_path / "ffnn_b", cfg={**cfg, "carry_state": True}, make_model=senone_ffnn)
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))


@pytest.mark.parametrize("cfg, make_model", [(CFG, ToyLstm), (CARRY, senone_lstm), (FRAMES, senone_ffnn)],
                         ids=["reset", "carry", "frames"])
def test_resume_after_kill_equals_uninterrupted(tmp_path, cfg, make_model):
    straight, _ = run(tmp_path / "a", cfg=cfg, make_model=make_model)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "b", cfg=cfg, kill_after=1, make_model=make_model)
    assert not (tmp_path / "b" / FINAL).exists()
    resumed, result = run(tmp_path / "b", cfg=cfg, make_model=make_model)
    assert result.resumed_from == 1
    for (name, p), q in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(p, q), name
    a = torch.load(tmp_path / "a" / FINAL, weights_only=False)
    b = torch.load(tmp_path / "b" / FINAL, weights_only=False)
    assert a["epoch"] == b["epoch"]
    assert all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"])


def test_changed_settings_do_not_resume(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path, kill_after=1)
    _, result = run(tmp_path, cfg={**CFG, "lr_initial": 0.01})
    assert result.resumed_from == 0


def test_lr_decays_exponentially_between_its_ends():
    cfg = TrainConfig(lr_initial=0.1, lr_final=0.001)
    assert lr_at(0, 101, cfg) == pytest.approx(0.1)
    assert lr_at(100, 101, cfg) == pytest.approx(0.001)
    assert lr_at(50, 101, cfg) == pytest.approx(0.01)


DDP_RUNS = {"reset": (CFG, ToyLstm), "carry": (CARRY, senone_lstm), "frames": (FRAMES, senone_ffnn)}


def _ddp_worker(rank: int, world_size: int, port: int, out_dir: str, mode: str = "reset") -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world_size))
    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo", rank=rank, world_size=world_size)
    try:
        cfg, make_model = DDP_RUNS[mode]
        model, result = run(out_dir, cfg=cfg, make_model=make_model)
        torch.save({k: v for k, v in model.state_dict().items()}, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        torch.distributed.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("mode", sorted(DDP_RUNS))
def test_ddp_two_cpu_processes_on_gloo(tmp_path, mode):
    torch.multiprocessing.spawn(_ddp_worker, args=(2, _free_port(), str(tmp_path), mode), nprocs=2, join=True)
    r0 = torch.load(tmp_path / "rank0.pt")
    r1 = torch.load(tmp_path / "rank1.pt")
    for k in r0:
        assert torch.equal(r0[k], r1[k]), k  # gradients were averaged: replicas stay identical
    hist = json.loads((tmp_path / HISTORY).read_text())["epochs"]
    assert hist[-1]["train_loss"] < hist[0]["train_loss"]
    assert hist[-1]["valid_acc"] > 0.8
    assert (tmp_path / FINAL).is_file()
