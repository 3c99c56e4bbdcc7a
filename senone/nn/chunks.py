"""Truncated-BPTT subsequences ("chunks") of utterances, and the label delay of recurrent models.

The paper (section 4.1) trains its recurrent networks on 15-frame subsequences of each utterance,
adjacent subsequences overlapping by 5 frames, with the output labels delayed by 5 frames. This
module turns one utterance (features ``x`` of shape T×F, senone labels ``y`` of length T) into such
chunks. The rules, worked through on T = 23, chunk length 15, overlap 5, delay 5 in the tests:

**Label delay** ``d``: the output at time t is trained on the label of frame t − d, so the network
has seen d frames of the future before it commits to a frame's senone. The input is extended at the
end by repeating its last frame d times (T + d frames), so that the last label, ``y[T-1]``, has an
output to go to (at t = T − 1 + d); the first d outputs have no label and are never scored. At test
time the same d-frame extension is run and the first d outputs are dropped (:func:`undo_delay`).

**Chunks**: chunk k covers frames ``[k·s, k·s + L)`` of the extended utterance, with step
``s = L − overlap``. Every recurrent chunk starts from a zero state, so the ``overlap`` first frames
of chunk k > 0 serve as *warm-up*: the network runs over them to build up its state, but they are
not scored, because they were already scored at the end of chunk k − 1 — where they had more history
behind them. Hence every labelled frame is scored exactly once: in the first chunk that contains it.
The last chunk is padded to L frames by repeating the last input frame; padded frames are never
scored.

**Context** (FFNNs): a model that splices ±c frames consumes ``left`` frames before and ``right``
frames after each output frame. Each chunk's input then carries those frames too (edge frames of
the utterance repeated beyond its ends), and the model returns L outputs for L + left + right inputs.

A chunk's targets are the pdf-ids to score, or ``IGNORE`` (−100, PyTorch's default
``ignore_index``) for frames that are warm-up, padding or before the delay.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from senone import SenoneError

#: Target value of frames that are not scored (PyTorch's default ``ignore_index``).
IGNORE = -100


@dataclass(frozen=True)
class ChunkConfig:
    """How utterances are cut for training (paper: 15 frames, 5 overlapping, labels delayed by 5)."""

    chunk_len: int = 15
    overlap: int = 5
    label_delay: int = 5
    left_context: int = 0
    right_context: int = 0

    def __post_init__(self) -> None:
        if self.chunk_len < 1:
            raise SenoneError(f"nn chunk_len={self.chunk_len}: must be at least 1 frame")
        if not 0 <= self.overlap < self.chunk_len:
            raise SenoneError(f"nn overlap={self.overlap}: must be in [0, chunk_len={self.chunk_len})")
        if self.label_delay < 0 or self.left_context < 0 or self.right_context < 0:
            raise SenoneError("nn label_delay and model context must be >= 0")

    @property
    def step(self) -> int:
        return self.chunk_len - self.overlap

    @property
    def input_len(self) -> int:
        """Input frames per chunk: the chunk plus the model's left and right context."""
        return self.left_context + self.chunk_len + self.right_context


def num_chunks(num_frames: int, cfg: ChunkConfig) -> int:
    """Chunks an utterance of ``num_frames`` frames is cut into (its labelled frames all covered)."""
    if num_frames <= 0:
        return 0
    extended = num_frames + cfg.label_delay
    # the last chunk is the first whose end reaches the end of the extended utterance
    return max(1, -(-(extended - cfg.chunk_len) // cfg.step) + 1) if extended > cfg.chunk_len else 1


def delayed_targets(labels: np.ndarray, label_delay: int) -> np.ndarray:
    """Targets of the extended utterance (T + d frames): ``IGNORE`` for the first d, then the labels."""
    labels = np.asarray(labels)
    out = np.full(len(labels) + label_delay, IGNORE, dtype=np.int64)
    out[label_delay:] = labels
    return out


def pad_edges(x: np.ndarray, left: int, right: int) -> np.ndarray:
    """Repeat the first frame ``left`` times and the last ``right`` times (Kaldi's edge handling)."""
    if left == 0 and right == 0:
        return x
    idx = np.concatenate([np.zeros(left, dtype=np.int64), np.arange(len(x)), np.full(right, len(x) - 1)])
    return x[idx]


def chunk_utterance(x: np.ndarray, labels: np.ndarray, cfg: ChunkConfig) -> tuple[np.ndarray, np.ndarray]:
    """Cut one utterance into chunks.

    Returns ``inputs`` (N × (left + L + right) × F, float32) and ``targets`` (N × L, int64, ``IGNORE``
    where a frame is not scored). ``x`` (T × F) and ``labels`` (T) must have the same length.
    """
    x = np.asarray(x, dtype=np.float32)
    labels = np.asarray(labels)
    if x.ndim != 2:
        raise SenoneError(f"features must be a (frames, dim) matrix, got shape {x.shape}")
    if len(x) != len(labels):
        raise SenoneError(f"features have {len(x)} frames but the alignment has {len(labels)}; "
                          "features and alignments must come from the same frames (same frame shift and cuts)")
    n = num_chunks(len(x), cfg)
    if n == 0:
        return np.zeros((0, cfg.input_len, x.shape[1]), np.float32), np.zeros((0, cfg.chunk_len), np.int64)
    L, s = cfg.chunk_len, cfg.step
    total = (n - 1) * s + L  # frames covered by the chunks, >= T + delay
    targets_ext = np.full(total, IGNORE, dtype=np.int64)
    targets_ext[: len(x) + cfg.label_delay] = delayed_targets(labels, cfg.label_delay)
    # input: label-delay extension and padding of the last chunk both repeat the last frame
    x_ext = pad_edges(x, cfg.left_context, total - len(x) + cfg.right_context)
    starts = np.arange(n) * s
    in_idx = starts[:, None] + np.arange(cfg.input_len)[None, :]
    tgt_idx = starts[:, None] + np.arange(L)[None, :]
    inputs = x_ext[in_idx]
    targets = targets_ext[tgt_idx]
    if cfg.overlap:
        targets[1:, : cfg.overlap] = IGNORE  # warm-up frames: scored in the previous chunk
    return inputs, targets


def undo_delay(outputs: np.ndarray, label_delay: int, num_frames: int) -> np.ndarray:
    """Per-frame network outputs of an utterance run with the label-delay extension, delay removed.

    ``outputs`` has ``num_frames + label_delay`` rows (the extended utterance); row ``t + d`` belongs
    to frame t.
    """
    if len(outputs) != num_frames + label_delay:
        raise SenoneError(f"network output has {len(outputs)} frames, expected {num_frames} + delay {label_delay}")
    return outputs[label_delay:]
