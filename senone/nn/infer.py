"""Run a trained network over utterances: whole, or in the chunks reset training saw.

**Whole utterances** (the default, ``nn.decode.chunked: false``): a recurrent network runs over each
whole utterance from a zero state, so every frame gets all of its past. That is the training
condition of a network trained with a carried state (``nn.train.carry_state: true``): its chunks,
fed with the state of the chunk before, compute exactly what the whole utterance computes.

**Chunked** (``nn.decode.chunked: true``, recurrent models only): the matching condition for a
network trained with a state reset per chunk (``carry_state: false``), which never saw more than a
chunk's worth of the past. The extended utterance is cut as training cuts it
(:func:`senone.nn.chunks.chunk_frames`): chunks of ``chunk_len`` frames every ``chunk_len −
left_context`` frames, each run from a zero state; the first ``left_context`` frames of every chunk
but the first are warm-up (nnet3's ``--extra-left-context``) and each frame's output is taken from
the first chunk that contains it (:func:`senone.nn.chunks.join_chunks`). With the training values
(``chunk_len`` = ``nn.train.chunk_len``, ``left_context`` = ``nn.train.overlap``) every frame is
scored by exactly the computation that scored it in training. The chunks of many utterances share a
forward pass (each chunk is an independent sequence, so that is exact); an FFNN, whose output at a
frame depends on its ±5-frame window alone, gives the same outputs either way and runs whole.

In both modes utterances are extended by the label delay (the last frame repeated d times) and, for
FFNNs, by their splicing context; the first d outputs are dropped again (see :mod:`senone.nn.chunks`).

Whole utterances share one forward pass too: they are sorted by length and padded at the end to the
longest in the batch. That is exact, not approximate: the models are causal (a recurrent output at
t depends on inputs up to t) or local (an FFNN output depends on its ±c window), so frames added
after an utterance's end cannot change any of its outputs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Mapping

import numpy as np
import torch

from senone import SenoneError
from senone.nn.chunks import ChunkConfig, chunk_frames, join_chunks, pad_edges


@dataclass(frozen=True)
class DecodeChunking:
    """How a network is run at test time (``nn.decode``: ``chunked``, ``chunk_len``, ``left_context``).

    The defaults are the training defaults (``nn.train.chunk_len: 15``, ``overlap: 5``), so that
    ``chunked: true`` alone decodes a reset-trained network in its training chunks.
    """

    chunked: bool = False
    chunk_len: int = 15       # frames run per chunk, warm-up included (nn.train.chunk_len)
    left_context: int = 5     # warm-up frames of every chunk but the first (nn.train.overlap)

    KEYS = ("chunked", "chunk_len", "left_context")

    def __post_init__(self) -> None:
        if self.chunk_len < 1 or not 0 <= self.left_context < self.chunk_len:
            raise SenoneError(f"nn.decode chunk_len={self.chunk_len}, left_context={self.left_context}: need "
                              "chunk_len >= 1 and 0 <= left_context < chunk_len")

    @classmethod
    def from_conf(cls, conf: Mapping[str, Any]) -> "DecodeChunking":
        """The chunking keys of a decode configuration (``nn.decode`` merged over ``decode``); the
        other keys are the search's."""
        return cls(**{k: conf[k] for k in cls.KEYS if k in conf})

    def kwargs(self) -> dict[str, int]:
        """Keyword arguments of :func:`log_posteriors` for this setting (none: whole utterances)."""
        return {"chunk_len": int(self.chunk_len), "left_context": int(self.left_context)} if self.chunked else {}

    def describe(self) -> str:
        if not self.chunked:
            return "whole utterances"
        return f"chunks of {self.chunk_len} frames, {self.left_context} of them warm-up, each from a zero state"

    def mismatches(self, training_chunks: Mapping[str, Any] | None, is_recurrent: bool) -> list[str]:
        """What is off between this setting and how the network was trained (``training_chunks`` of its
        ``model_info``: chunk_len, overlap, carry_state; None for networks trained before it was kept)."""
        if not self.chunked:
            return []
        if not is_recurrent:
            return ["nn.decode.chunked has no effect on an FFNN (its outputs are the same either way)"]
        if not training_chunks:
            return []
        if training_chunks.get("carry_state"):
            return ["the network was trained with its state carried across chunks: a chunked decode cuts the "
                    "history it was trained with (nn.decode.chunked: false decodes whole utterances, its "
                    "training condition)"]
        trained = (int(training_chunks["chunk_len"]), int(training_chunks["overlap"]))
        if trained != (self.chunk_len, self.left_context):
            return [f"the network was trained on chunks of {trained[0]} frames from a zero state, {trained[1]} of "
                    f"them warm-up, but nn.decode runs chunks of {self.chunk_len} with {self.left_context}: set "
                    f"nn.decode.chunk_len: {trained[0]} and left_context: {trained[1]} for the matching condition"]
        return []


@torch.no_grad()
def log_posteriors(model: torch.nn.Module, utterances: Iterable[tuple[str, np.ndarray]], label_delay: int, *,
                   batch_frames: int = 20000, device: str | torch.device = "cpu", chunk_len: int | None = None,
                   left_context: int = 0) -> Iterator[tuple[str, np.ndarray]]:
    """Yield ``(utt, log p(senone | frame))`` (T × num_pdfs, float32) for each utterance, in input order.

    ``batch_frames`` bounds the padded frames per forward pass (batch size × the longest extended
    utterance in it: that is what memory holds), except that an utterance longer than the bound runs
    alone. Input order is kept within and across batches so callers can stream results.

    ``chunk_len`` (recurrent models): run in chunks of that many frames, each from a zero state,
    ``left_context`` of them warm-up (see the module docstring); ``batch_frames`` then bounds the
    chunk frames per forward pass.
    """
    torch.set_flush_denormal(True)  # subnormals slow the CPU by 4x and carry no information (see senone.nn.train)
    model.eval()
    left, right = int(getattr(model, "left_context", 0)), int(getattr(model, "right_context", 0))
    if chunk_len is not None and bool(getattr(model, "is_recurrent", False)):
        cfg = ChunkConfig(chunk_len=chunk_len, overlap=left_context, label_delay=label_delay, left_context=left,
                          right_context=right)
        yield from _chunked(model, utterances, cfg, batch_frames, device)
        return
    pending: list[tuple[str, np.ndarray]] = []
    longest = 0  # the longest extended utterance pending: every row of the batch is padded to it

    def flush() -> Iterator[tuple[str, np.ndarray]]:
        order = sorted(range(len(pending)), key=lambda i: -len(pending[i][1]))
        ext = [pad_edges(np.asarray(pending[i][1], dtype=np.float32), left, label_delay + right) for i in order]
        longest = len(ext[0])
        x = np.stack([pad_edges(e, 0, longest - len(e)) for e in ext])
        out = torch.log_softmax(model(torch.from_numpy(x).to(device)), dim=-1).cpu().numpy()
        results: dict[int, np.ndarray] = {}
        for row, i in enumerate(order):
            n = len(pending[i][1])
            results[i] = np.ascontiguousarray(out[row, label_delay:label_delay + n])
        for i in range(len(pending)):
            yield pending[i][0], results[i]

    for utt, feats in utterances:
        n = len(feats) + label_delay + left + right
        if pending and max(longest, n) * (len(pending) + 1) > batch_frames:
            yield from flush()
            pending, longest = [], 0
        pending.append((utt, feats))
        longest = max(longest, n)
    if pending:
        yield from flush()


def _chunked(model: torch.nn.Module, utterances: Iterable[tuple[str, np.ndarray]], cfg: ChunkConfig,
             batch_frames: int, device: str | torch.device) -> Iterator[tuple[str, np.ndarray]]:
    """:func:`log_posteriors` in training's chunks: the chunks of consecutive utterances are stacked
    (all have ``cfg.input_len`` frames: no padding) and run ``batch_frames // input_len`` at a time."""
    rows = max(1, batch_frames // cfg.input_len)
    pending: list[tuple[str, int, np.ndarray]] = []  # utt, frames, chunks
    num_pending = 0

    def flush() -> Iterator[tuple[str, np.ndarray]]:
        x = np.concatenate([c for _, _, c in pending])
        out = np.concatenate([torch.log_softmax(model(torch.from_numpy(x[i:i + rows]).to(device)), dim=-1).cpu().numpy()
                              for i in range(0, len(x), rows)])
        at = 0
        for utt, n, c in pending:
            joined = join_chunks(out[at:at + len(c)], cfg, n)
            at += len(c)
            yield utt, np.ascontiguousarray(joined[cfg.label_delay:])

    for utt, feats in utterances:
        feats = np.asarray(feats, dtype=np.float32)
        if feats.ndim != 2 or not len(feats):
            raise SenoneError(f"{utt}: features of shape {feats.shape}: expected (frames >= 1, dim)")
        chunks = chunk_frames(feats, cfg)
        if pending and num_pending + len(chunks) > rows:
            yield from flush()
            pending, num_pending = [], 0
        pending.append((utt, len(feats), chunks))
        num_pending += len(chunks)
    if pending:
        yield from flush()
