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
``s = L − overlap``. Every labelled frame is scored exactly once, in the first chunk that contains
it: chunk 0 scores all its (labelled) frames, chunk k > 0 all but its ``overlap`` first, which chunk
k − 1 has scored. The last chunk is padded to L frames by repeating the last input frame; padded
frames are never scored. What the overlap frames are for depends on the trainer's state rule
(``nn.train.carry_state``):

* **Reset** (``carry_state: false``, the paper's reading): every chunk starts from a zero state, and
  the overlap frames of chunk k > 0 are *warm-up*: the network runs over them to build up a state,
  and scores the frames after them. The output at position p has seen the p input frames before it
  in its chunk and no earlier one; it carries the label of frame p − d of the chunk, so that frame's
  past in view is p − d frames: with the defaults (p from 5 to 14 in every chunk: the first 5
  positions are the delay in chunk 0, the warm-up in the others) 0 to 9 frames, while a
  whole-utterance decode gives every frame all of its past. ``nn.decode.chunked`` decodes in exactly
  these chunks, for the matching condition (see :mod:`senone.nn.infer`).
* **Carried** (``carry_state: true``, Kaldi nnet1's multi-stream training): chunk k + 1 starts from
  the state chunk k reached after its first s frames (at extended frame (k + 1)·s, where chunk k + 1
  begins); chunk 0 from zero. The gradient stops there (the state is detached). Forward, every frame
  then has its whole past, as in a whole-utterance decode, and the overlap frames of chunk k + 1 are
  recomputed from the very state and inputs chunk k had: their outputs are the ones chunk k gave.
  Scoring them again, or in chunk k + 1 instead of chunk k, would change nothing forward; what the
  choice sets is how far back a scored frame's gradient reaches: an output at position p
  back-propagates through p + 1 steps (positions 0 to p; the state it started from is cut off).
  Scoring each frame in the first chunk that contains it keeps every scored output of a chunk k > 0
  at p ≥ overlap, so it back-propagates through at least ``overlap`` + 1 steps, where the first
  scored outputs of chunks without the overlap would get a one-step gradient. So the rule stays
  as under reset, and the overlap becomes a *gradient margin*, the role of nnet3's
  ``--trainer.deriv-truncate-margin`` (the carried state standing in for an unbounded extra left
  context): frames run again only so that derivatives can flow into them before the truncation
  point, at the price of ``overlap / L`` (a third) of the frames run being recomputed. ``overlap: 0`` with a carried state is exactly nnet1's
  ``--num-streams`` LSTM training (consecutive non-overlapping chunks, each frame scored once,
  BPTT of 1 to L steps); the paper's 15/5 adds the margin. The worked example in the tests gives the
  state each chunk of T = 23 starts from.

**Context** (FFNNs): a model that splices ±c frames consumes ``left`` frames before and ``right``
frames after each output frame. Each chunk's input then carries those frames too (edge frames of
the utterance repeated beyond its ends), and the model returns L outputs for L + left + right inputs.

A chunk's targets are the pdf-ids to score, or ``IGNORE`` (−100, PyTorch's default
``ignore_index``) for frames that the previous chunk scored (overlap), padding or before the delay.
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
    inputs = chunk_frames(x, cfg)
    starts = np.arange(n) * s
    tgt_idx = starts[:, None] + np.arange(L)[None, :]
    targets = targets_ext[tgt_idx]
    if cfg.overlap:
        targets[1:, : cfg.overlap] = IGNORE  # overlap frames: scored in the previous chunk
    return inputs, targets


def chunk_frames(x: np.ndarray, cfg: ChunkConfig) -> np.ndarray:
    """The input chunks of one utterance (T × F): N × (left + L + right) × F, float32, as
    :func:`chunk_utterance` cuts them for training (and :mod:`senone.nn.infer` for a chunked decode)."""
    x = np.asarray(x, dtype=np.float32)
    n = num_chunks(len(x), cfg)
    if n == 0:
        return np.zeros((0, cfg.input_len, x.shape[1] if x.ndim == 2 else 0), np.float32)
    total = (n - 1) * cfg.step + cfg.chunk_len
    # input: label-delay extension and padding of the last chunk both repeat the last frame
    x_ext = pad_edges(x, cfg.left_context, total - len(x) + cfg.right_context)
    starts = np.arange(n) * cfg.step
    return x_ext[starts[:, None] + np.arange(cfg.input_len)[None, :]]


def join_chunks(outputs: np.ndarray, cfg: ChunkConfig, num_frames: int) -> np.ndarray:
    """Per-frame outputs of the extended utterance (``num_frames`` + delay rows) from its chunks'
    outputs (N × L × ·), each frame taken from the first chunk that contains it — the chunk that scores
    it in training: all of chunk 0, then chunk k > 0 from its ``overlap``-th frame on."""
    if not len(outputs):
        return outputs.reshape(0, *outputs.shape[2:])
    rest = outputs[1:, cfg.overlap:]
    joined = np.concatenate([outputs[0], rest.reshape(-1, *outputs.shape[2:])])
    return joined[: num_frames + cfg.label_delay]


def undo_delay(outputs: np.ndarray, label_delay: int, num_frames: int) -> np.ndarray:
    """Per-frame network outputs of an utterance run with the label-delay extension, delay removed.

    ``outputs`` has ``num_frames + label_delay`` rows (the extended utterance); row ``t + d`` belongs
    to frame t.
    """
    if len(outputs) != num_frames + label_delay:
        raise SenoneError(f"network output has {len(outputs)} frames, expected {num_frames} + delay {label_delay}")
    return outputs[label_delay:]
