"""Cross-entropy training of a senone classifier with truncated BPTT, checkpoints and resume.

What one run does (the paper's section 4.1, in Kaldi nnet1's manner):

* every epoch walks the training utterances in a seeded order through :class:`StreamBatcher`:
  minibatches of ``num_streams`` chunks (15 frames, 5 overlapping, labels delayed by 5 for
  recurrent models) from different utterances; FFNNs may instead take frames shuffled over the
  whole epoch (``batching: frames``, :class:`FrameBatcher`, Kaldi nnet1's frame shuffling);
* recurrent models start every chunk from a zero state (``carry_state: false``), or carry each
  stream's state from one chunk of its utterance to the next (``carry_state: true``, Kaldi nnet1's
  multi-stream truncated BPTT): the state reached ``chunk_len − overlap`` frames into a chunk, where
  the next chunk begins, is the next chunk's initial state, detached (see :mod:`senone.nn.chunks`
  for what is scored and why). A stream that opens an utterance starts from zero, and the state
  follows its stream slot when minibatches shrink at the end of the epoch. Every epoch starts
  every stream afresh, so no state outlives an epoch and the per-epoch checkpoints still resume to
  the same model;
* the learning rate decays exponentially, step by step, from ``lr_initial`` to ``lr_final`` over
  the whole run; gradients are clipped to a maximum norm (the paper scales gradients down, [38]);
* after every epoch the model is scored on the held-out validation utterances (whole utterances,
  as at test time: frame cross-entropy and frame accuracy), a checkpoint is written atomically,
  and the model with the best validation cross-entropy becomes ``final.pt`` (model selection);
* a killed run resumes at the epoch after its last checkpoint and ends bit-identical to an
  uninterrupted run: the data order depends only on (seed, epoch), and the checkpoint holds the
  model, the optimiser state and the step count. A checkpoint written under other settings
  (model, data, schedule) is not resumed; "data" is the content, not only the names: the senone
  targets of every utterance, the features through the model's initial state (its input
  normalisation holds their per-dimension mean and variance over every training frame) and the
  exact features of a few utterances (:func:`data_key`).

Several processes (``torchrun --nproc_per_node N``) train one model with DistributedDataParallel:
each takes every N-th utterance of the epoch's order, gradients are averaged, and only rank 0
writes. The device is CUDA when present (NCCL between GPUs), else the CPU (gloo).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
import torch.distributed as dist

from senone import SenoneError
from senone.io import atomic_path, write_json
from senone.nn.batches import Batch, FrameBatcher, StreamBatcher, epoch_order, num_batches, num_frame_batches
from senone.nn.chunks import IGNORE, ChunkConfig
from senone.nn.infer import log_posteriors
from senone.nn.lstm import LstmState

log = logging.getLogger(__name__)

CHECKPOINT_DIR = "checkpoints"
FINAL = "final.pt"
HISTORY = "history.json"


@dataclass
class TrainConfig:
    """Training settings (``nn.train`` in conf/nn.yaml; a model may override any of them)."""

    num_epochs: int = 4
    optimizer: str = "adam"         # "adam", or "sgd" (momentum, the paper's choice: recipes/hkust.yaml)
    lr_initial: float = 0.002
    lr_final: float = 0.0002
    momentum: float = 0.9
    weight_decay: float = 0.0
    max_grad_norm: float = 5.0
    num_streams: int = 20           # chunks per minibatch, each from a different utterance
    chunk_len: int = 15
    overlap: int = 5
    label_delay: int = 5            # recurrent models only; FFNNs see ±5 frames and use no delay
    seed: int = 0
    log_every: int = 500            # minibatches between progress lines
    valid_batch_frames: int = 20000
    carry_state: bool = False       # recurrent models: carry the state from chunk to chunk (else zero per chunk)
    batching: str = "streams"       # FFNNs: "streams" (chunks of num_streams utterances) or "frames" (shuffled)
    frames_per_batch: int = 256     # batching "frames": frames per minibatch (Kaldi nnet1's minibatch size)

    def __post_init__(self) -> None:
        if self.optimizer not in ("sgd", "adam"):
            raise SenoneError(f"nn optimizer {self.optimizer!r}: use 'sgd' or 'adam'")
        if self.batching not in ("streams", "frames"):
            raise SenoneError(f"nn batching {self.batching!r}: use 'streams' or 'frames'")
        if not isinstance(self.carry_state, bool):
            raise SenoneError(f"nn carry_state={self.carry_state!r}: use true or false")
        if self.frames_per_batch < 1:
            raise SenoneError(f"nn frames_per_batch={self.frames_per_batch}: must be at least 1")
        if self.num_epochs < 1:
            raise SenoneError(f"nn num_epochs={self.num_epochs}: must be at least 1")
        if not (self.lr_initial > 0 and self.lr_final > 0):
            raise SenoneError("nn lr_initial and lr_final must be > 0")

    @staticmethod
    def from_dict(data: Mapping[str, Any]) -> "TrainConfig":
        known = set(TrainConfig.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise SenoneError(f"unknown nn training setting(s) {unknown}; known: {sorted(known)}")
        return TrainConfig(**dict(data))

    def chunking(self, model: torch.nn.Module) -> ChunkConfig:
        """Chunks for this model: recurrent models get the label delay, FFNNs their splice context."""
        recurrent = bool(getattr(model, "is_recurrent", True))
        return ChunkConfig(chunk_len=self.chunk_len, overlap=self.overlap if recurrent else 0,
                           label_delay=self.label_delay if recurrent else 0,
                           left_context=int(getattr(model, "left_context", 0)),
                           right_context=int(getattr(model, "right_context", 0)))

    def carries_state(self, model: torch.nn.Module) -> bool:
        """Whether ``model`` trains with the state carried across chunks: recurrent models with
        ``carry_state`` (an FFNN has no state to carry)."""
        return self.carry_state and bool(getattr(model, "is_recurrent", True))

    def frame_batches(self, model: torch.nn.Module) -> bool:
        """Whether ``model`` trains on frames shuffled over the epoch: FFNNs with ``batching: frames``
        (a recurrent model needs consecutive frames, so it always takes stream chunks)."""
        return self.batching == "frames" and not bool(getattr(model, "is_recurrent", True))


@dataclass
class EpochRecord:
    epoch: int
    lr: float
    train_loss: float
    train_acc: float
    valid_loss: float
    valid_acc: float
    frames: int
    seconds: float
    frames_per_second: float
    data_share: float  # share of the epoch's wall time spent outside forward/backward/update


@dataclass
class TrainResult:
    history: list[EpochRecord]
    best_epoch: int
    final_path: Path
    resumed_from: int = 0
    extra: dict = field(default_factory=dict)


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model


def flush_denormals() -> None:
    """Flush subnormal floats to zero on the CPU.

    As training goes on, saturated gates make some LSTM values and gradients subnormal (below
    1e-38); x86 CPUs handle those in microcode, and a CLSTM training step was measured to slow
    from 25 ms to over 100 ms within a hundred minibatches. Treating them as zero changes nothing a
    network can resolve and keeps every step at full speed (GPUs flush them anyway).
    """
    torch.set_flush_denormal(True)


def pick_device() -> torch.device:
    """CUDA when present (this process's local GPU under torchrun), else the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return torch.device("cpu")


def world() -> tuple[int, int]:
    """(rank, world size) of this process; (0, 1) outside torchrun."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def init_distributed() -> tuple[int, int]:
    """Join the process group when started by torchrun (WORLD_SIZE > 1); gloo on CPU, NCCL on GPUs."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
    return world()


def _all_reduce(values: Sequence[float], op=None) -> list[float]:
    if world()[1] == 1:
        return list(values)
    t = torch.tensor(list(values), dtype=torch.float64)
    dist.all_reduce(t, op=op or dist.ReduceOp.SUM)
    return t.tolist()


def lr_at(step: int, total: int, cfg: TrainConfig) -> float:
    """Exponential decay from lr_initial (step 0) to lr_final (last step)."""
    frac = step / max(total - 1, 1)
    return cfg.lr_initial * math.exp(frac * math.log(cfg.lr_final / cfg.lr_initial))


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=cfg.lr_initial, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(model.parameters(), lr=cfg.lr_initial, momentum=cfg.momentum,
                           weight_decay=cfg.weight_decay)


def settings_key(settings: Mapping[str, Any]) -> str:
    """A stable hash of everything that makes two runs the same run."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:16]


def data_key(model: torch.nn.Module, train_utts: Sequence[str], valid_utts: Sequence[str],
             load: Callable[[str], np.ndarray], labels: Mapping[str, np.ndarray]) -> str:
    """A hash of the data a run trains on, for the checkpoint key: new features or alignments must
    not resume the checkpoints of the old ones.

    What goes in, and why it is cheap: every training and validation utterance's senone labels
    (exactly); the initial state of ``model`` (seeded weights and the input normalisation, whose
    buffers are the per-dimension mean and variance of the features over every training frame, computed
    before training anyway); and the exact features of the first and last training utterance and the
    first validation one (a few reads, also when features stream from storage).
    """
    h = hashlib.sha256()
    for utt in list(train_utts) + list(valid_utts):
        y = np.ascontiguousarray(np.asarray(labels[utt], dtype=np.int64))
        h.update(f"{utt}:{y.size}:".encode())
        h.update(y.tobytes())
    for name, value in sorted(unwrap(model).state_dict().items()):
        t = value.detach().cpu().contiguous()
        h.update(f"{name}:{tuple(t.shape)}:{t.dtype}:".encode())
        h.update(t.numpy().tobytes() if t.dtype != torch.bfloat16 else t.float().numpy().tobytes())
    for utt in dict.fromkeys([*train_utts[:1], *train_utts[-1:], *valid_utts[:1]]):
        x = np.ascontiguousarray(load(utt))
        h.update(f"{utt}:{x.shape}:{x.dtype.str}:".encode())
        h.update(x.tobytes())
    return h.hexdigest()[:16]


def evaluate(model: torch.nn.Module, utts: Sequence[str], load: Callable[[str], np.ndarray],
             labels: Mapping[str, np.ndarray], label_delay: int, device: torch.device,
             batch_frames: int = 20000) -> tuple[float, float, int]:
    """Frame cross-entropy, frame accuracy and frames over whole utterances (test-time conditions)."""
    net = unwrap(model)
    loss, correct, frames = 0.0, 0, 0
    for utt, logp in log_posteriors(net, ((u, load(u)) for u in utts), label_delay, batch_frames=batch_frames,
                                    device=device):
        y = np.asarray(labels[utt], dtype=np.int64)
        loss -= float(logp[np.arange(len(y)), y].sum())
        correct += int((logp.argmax(axis=1) == y).sum())
        frames += len(y)
    net.train()
    loss, correct, frames = _all_reduce([loss, correct, frames])
    return (loss / frames if frames else float("nan")), (correct / frames if frames else float("nan")), int(frames)


#: Carried states of one process: one (h, c) per recurrent layer, each with one row per stream slot.
StreamState = list[LstmState]


def _stream_state(store: StreamState | None, batch: Batch, device: torch.device) -> StreamState | None:
    """The initial state of each row of ``batch``: its stream slot's carried state, zero where the row
    opens an utterance; None (zeros throughout) when every row opens one, as at the start of an epoch."""
    if store is None or batch.starts.all():
        return None
    idx = torch.from_numpy(batch.streams).to(device)
    fresh = torch.from_numpy(np.flatnonzero(batch.starts)).to(device)
    out = []
    for h, c in store:
        h0, c0 = h.index_select(0, idx), c.index_select(0, idx)  # copies: zeroing them leaves the store alone
        if len(fresh):
            h0[fresh] = 0
            c0[fresh] = 0
        out.append((h0, c0))
    return out


def _keep_state(store: StreamState | None, carried: StreamState, batch: Batch, num_streams: int) -> StreamState:
    """Write each row's carried state into its stream slot, detached: BPTT is truncated there."""
    idx = torch.from_numpy(batch.streams).to(carried[0][0].device)
    if store is None:
        store = [(h.new_zeros((num_streams, *h.shape[1:])), c.new_zeros((num_streams, *c.shape[1:])))
                 for h, c in carried]
    for (hs, cs), (h, c) in zip(store, carried):
        hs.index_copy_(0, idx, h.detach())
        cs.index_copy_(0, idx, c.detach())
    return store


def _checkpoints(out_dir: Path) -> dict[int, Path]:
    found = {}
    for p in (out_dir / CHECKPOINT_DIR).glob("epoch_*.pt"):
        try:
            found[int(p.stem.split("_")[1])] = p
        except ValueError:
            continue
    return found


def _save(obj: Any, path: Path) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def train(model: torch.nn.Module, train_utts: Sequence[str], valid_utts: Sequence[str],
          load: Callable[[str], np.ndarray], labels: Mapping[str, np.ndarray], cfg: TrainConfig,
          out_dir: str | os.PathLike, *, model_info: Mapping[str, Any], device: torch.device | None = None,
          on_epoch: Callable[[list[EpochRecord]], None] | None = None) -> TrainResult:
    """Train ``model`` (already built and seeded) and write checkpoints, history and ``final.pt``.

    ``load(utt)`` gives an utterance's network input (T × F); ``labels[utt]`` its pdf-ids (T).
    ``model_info`` (spec, input layout, number of pdfs, label delay...) is stored with every model
    file so a decoder can rebuild the network from ``final.pt`` alone.
    """
    out_dir = Path(out_dir)
    rank, size = world()
    device = device or pick_device()
    flush_denormals()
    model.to(device)
    chunk_cfg = cfg.chunking(model)
    carry, by_frames = cfg.carries_state(model), cfg.frame_batches(model)
    if carry and not getattr(model, "takes_state", False):
        raise SenoneError(f"nn.train.carry_state: the model ({type(model).__name__}) does not take a recurrent "
                          "state (forward(x, state=, carry_at=)); set carry_state: false")
    if cfg.carry_state and not carry and rank == 0:
        log.info("carry_state applies to recurrent models only: this FFNN has no state to carry")
    if cfg.batching == "frames" and not by_frames and rank == 0:
        log.info("batching: frames applies to FFNNs only: this recurrent model trains on stream chunks")
    if rank == 0:
        log.info("minibatches: %s", f"{cfg.frames_per_batch} frames shuffled over the epoch" if by_frames else
                 f"{cfg.num_streams} streams of {chunk_cfg.chunk_len}-frame chunks, " +
                 ("state carried from chunk to chunk" if carry else "each chunk from a zero state"))
    train_utts = sorted(train_utts)
    valid_utts = sorted(valid_utts)
    if not train_utts:
        raise SenoneError("no training utterances with alignments; check the senone alignments and features")
    frames = {u: len(labels[u]) for u in train_utts}
    settings = {"model": dict(model_info), "train": asdict(cfg), "world_size": size,
                "train_utts": settings_key({"u": train_utts}), "valid_utts": settings_key({"u": valid_utts}),
                # before any checkpoint is loaded: the model is in its initial state
                "data": data_key(model, train_utts, valid_utts, load, labels)}
    key = settings_key(settings)

    # batches per epoch, fixed by the (seeded) orders: the schedule knows its length up front
    per_epoch = []
    for epoch in range(1, cfg.num_epochs + 1):
        if by_frames:
            n = num_frame_batches(sum(frames.values()), cfg.frames_per_batch, rank, size)
        else:
            n = num_batches(epoch_order(train_utts, cfg.seed, epoch, rank, size), frames, chunk_cfg, cfg.num_streams)
        per_epoch.append(int(_all_reduce([n], op=dist.ReduceOp.MIN if size > 1 else None)[0]))
    total_steps = sum(per_epoch)

    opt = make_optimizer(unwrap(model), cfg)
    history: list[EpochRecord] = []
    best = (math.inf, 0)
    start_epoch, step = 1, 0
    found = _checkpoints(out_dir)
    if found:
        last = max(found)
        ckpt = torch.load(found[last], map_location=device, weights_only=False)
        if ckpt.get("key") == key:
            unwrap(model).load_state_dict(ckpt["model"])
            opt.load_state_dict(ckpt["optimizer"])
            history = [EpochRecord(**r) for r in ckpt["history"]]
            best = tuple(ckpt["best"])
            start_epoch, step = last + 1, ckpt["step"]
            torch.set_rng_state(ckpt["rng"])
            log.info("resuming after epoch %d (%s)", last, found[last])
        elif rank == 0:
            log.warning("checkpoints in %s were written under other settings; starting over", out_dir / CHECKPOINT_DIR)
            for p in found.values():
                p.unlink()
    if size > 1 and not isinstance(model, torch.nn.parallel.DistributedDataParallel):
        model = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    resumed_from = start_epoch - 1
    loss_fn = torch.nn.CrossEntropyLoss(ignore_index=IGNORE, reduction="sum")

    for epoch in range(start_epoch, cfg.num_epochs + 1):
        if by_frames:  # every process indexes the same (sorted) utterances and takes every size-th frame
            batches = FrameBatcher(train_utts, load, labels, chunk_cfg.left_context, chunk_cfg.right_context,
                                   cfg.frames_per_batch, cfg.seed, epoch, rank, size)
        else:
            order = epoch_order(train_utts, cfg.seed, epoch, rank, size)
            batches = StreamBatcher(order, load, labels, chunk_cfg, cfg.num_streams)
        store: StreamState | None = None  # carried states: every stream of a new epoch starts from zero
        model.train()
        t0 = time.perf_counter()
        data_s = 0.0
        sum_loss, sum_correct, sum_frames = 0.0, 0, 0
        it = iter(batches)
        for b in range(per_epoch[epoch - 1]):
            td = time.perf_counter()
            batch = next(it)
            x = torch.from_numpy(batch.inputs).to(device, non_blocking=True)
            y = torch.from_numpy(batch.targets).to(device, non_blocking=True)
            data_s += time.perf_counter() - td
            lr = lr_at(step, total_steps, cfg)
            for g in opt.param_groups:
                g["lr"] = lr
            if carry:
                logits, carried = model(x, state=_stream_state(store, batch, device), carry_at=chunk_cfg.step)
                store = _keep_state(store, carried, batch, cfg.num_streams)
            else:
                logits = model(x)
            scored = int((y != IGNORE).sum())
            loss = loss_fn(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
            opt.zero_grad(set_to_none=True)
            (loss / max(scored, 1)).backward()
            if cfg.max_grad_norm > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
            opt.step()
            step += 1
            with torch.no_grad():
                sum_loss += float(loss)
                sum_correct += int(((logits.argmax(-1) == y) & (y != IGNORE)).sum())
                sum_frames += scored
            if rank == 0 and cfg.log_every and (b + 1) % cfg.log_every == 0:
                el = time.perf_counter() - t0
                log.info("epoch %d: %d/%d minibatches, CE %.3f, frame acc %.3f, lr %.2e, %.0f frames/s",
                         epoch, b + 1, per_epoch[epoch - 1], sum_loss / max(sum_frames, 1),
                         sum_correct / max(sum_frames, 1), lr, sum_frames * size / el)
        seconds = time.perf_counter() - t0
        sum_loss, sum_correct, sum_frames = _all_reduce([sum_loss, sum_correct, sum_frames])
        v_loss, v_acc, _ = evaluate(model, valid_utts[rank::size], load, labels, chunk_cfg.label_delay, device,
                                    cfg.valid_batch_frames) if valid_utts else (float("nan"), float("nan"), 0)
        rec = EpochRecord(epoch=epoch, lr=lr_at(step - 1, total_steps, cfg),
                          train_loss=sum_loss / max(sum_frames, 1), train_acc=sum_correct / max(sum_frames, 1),
                          valid_loss=v_loss, valid_acc=v_acc, frames=int(sum_frames), seconds=seconds,
                          frames_per_second=sum_frames / seconds if seconds else 0.0,
                          data_share=data_s / seconds if seconds else 0.0)
        history.append(rec)
        score = v_loss if valid_utts else rec.train_loss
        if score < best[0]:
            best = (score, epoch)
        log.info("epoch %d: train CE %.3f acc %.3f | valid CE %.3f acc %.3f | %.0f frames/s, %.1f%% outside "
                 "forward/backward, %.0f s", epoch, rec.train_loss, rec.train_acc, v_loss, v_acc,
                 rec.frames_per_second, 100 * rec.data_share, seconds)
        if rank == 0:
            state = {k: v.detach().cpu() for k, v in unwrap(model).state_dict().items()}
            _save({"key": key, "epoch": epoch, "step": step, "model": state, "optimizer": opt.state_dict(),
                   "history": [asdict(r) for r in history], "best": list(best), "rng": torch.get_rng_state(),
                   "model_info": dict(model_info)}, out_dir / CHECKPOINT_DIR / f"epoch_{epoch:03d}.pt")
            write_json(out_dir / HISTORY, {"best_epoch": best[1], "epochs": [asdict(r) for r in history]})
            if on_epoch:
                on_epoch(history)
        if size > 1:
            dist.barrier()

    final_path = out_dir / FINAL
    if rank == 0:
        best_ckpt = torch.load(_checkpoints(out_dir)[best[1]], map_location="cpu", weights_only=False)
        _save({"model_info": dict(model_info), "state_dict": best_ckpt["model"], "epoch": best[1],
               "valid_loss": best[0], "key": key}, final_path)
        log.info("final model: epoch %d (validation CE %.3f) -> %s", best[1], best[0], final_path)
    if size > 1:
        dist.barrier()
    return TrainResult(history=history, best_epoch=best[1], final_path=final_path, resumed_from=resumed_from)
