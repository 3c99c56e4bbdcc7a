"""Minibatches of chunks drawn from several utterances at once ("streams"), as the paper trains,
or, for FFNNs, of single frames shuffled over the whole epoch.

The paper's GPU "operates in parallel on 20 subsequences from different utterances at a time".
:class:`StreamBatcher` keeps ``num_streams`` utterances open; each minibatch takes the next chunk
of every open utterance, and an utterance that runs out of chunks is replaced by the next one of
the epoch's (seeded) shuffled order. So the chunks of one minibatch always come from different
utterances, only ``num_streams`` utterances are in memory at a time (features are read when an
utterance is opened, which lets a corpus far larger than memory stream from storage), and the epoch
is the same for the same seed and epoch number — which is what makes a resumed run identical to an
uninterrupted one. Towards the end of an epoch, when no utterance is left to open, minibatches
shrink as streams run dry.

**Stream slots.** The layout is Kaldi nnet1's multi-stream one: chunk k + 1 of an utterance sits in
the same stream slot of the next minibatch as chunk k sat in this one, so a trainer that carries the
recurrent state across chunks (``nn.train.carry_state``) can hand each stream its own state. A
:class:`Batch` says which slot each row is (``streams``, 0 .. num_streams − 1) and whether the row
opens a new utterance (``starts``: its state must start from zero). When streams run dry at the end
of an epoch the batch has fewer rows, and row i is no longer slot i: the slots say where each row's
state lives.

With several processes (DistributedDataParallel), process ``rank`` of ``world_size`` takes every
``world_size``-th utterance of the shuffled order; all processes must run the same number of
minibatches, so :func:`num_batches` tells each its count without reading any features and the
trainer runs the smallest.

**Frame batches** (:class:`FrameBatcher`, FFNNs with ``nn.train.batching: frames``): Kaldi nnet1's
frame-level shuffling (``nnet-train-frmshuff``, which shuffles within a buffer of 32768 frames; here
the whole epoch is one buffer). An FFNN's output at a frame depends only on its ±5-frame window, so
nothing ties the frames of a minibatch to a few utterances: every labelled frame of the epoch is drawn
in one seeded random order, and a minibatch of ``frames_per_batch`` frames
mixes many utterances and speakers, the gradient of each step being a less correlated estimate than
that of 20 chunks of 15 consecutive frames. Only an index is shuffled (4 bytes a frame: about 220 MB
for 150 h), and each minibatch gathers its frames' windows from its utterances' features; it wants the
features in memory (``load`` is called once per utterance of a minibatch). Process ``rank`` takes
every ``world_size``-th frame of the order, and the order depends only on (seed, epoch): every
labelled frame is trained on once per epoch, and a resumed run sees the same minibatches.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator, Mapping, Sequence

import numpy as np

from senone import SenoneError
from senone.nn.chunks import ChunkConfig, chunk_utterance, num_chunks


@dataclass
class Batch:
    """``inputs``: B × (left + L + right) × F float32; ``targets``: B × L int64 (``IGNORE`` = not scored).

    Stream batches also say, per row, its stream slot (``streams``, int64) and whether it is the
    first chunk of its utterance (``starts``, bool); frame batches (L = 1) have neither.
    """

    inputs: np.ndarray
    targets: np.ndarray
    streams: np.ndarray | None = None
    starts: np.ndarray | None = None

    @property
    def num_scored(self) -> int:
        return int((self.targets >= 0).sum())


def epoch_order(utts: Sequence[str], seed: int, epoch: int, rank: int = 0, world_size: int = 1) -> list[str]:
    """This process's utterances for ``epoch``, in a shuffled order that depends only on (seed, epoch)."""
    rng = np.random.default_rng([seed, epoch])
    order = [utts[i] for i in rng.permutation(len(utts))]
    return order[rank::world_size]


def _stream_sizes(chunks_per_utt: Sequence[int], num_streams: int) -> Iterator[int]:
    """Batch sizes the stream scheme produces for utterances with these chunk counts, in order."""
    queue = (n for n in chunks_per_utt if n > 0)  # utterances without chunks are never opened
    left = [n for _, n in zip(range(num_streams), queue)]  # remaining chunks per open stream
    while left:
        yield len(left)
        left = [n - 1 if n > 1 else next(queue, 0) for n in left]
        left = [n for n in left if n]


def num_batches(utts: Sequence[str], num_frames: Mapping[str, int], cfg: ChunkConfig, num_streams: int) -> int:
    """How many minibatches :class:`StreamBatcher` yields for ``utts`` in this order."""
    return sum(1 for _ in _stream_sizes([num_chunks(num_frames[u], cfg) for u in utts], num_streams))


class StreamBatcher:
    """Iterates the minibatches of one epoch (see the module docstring).

    ``load(utt)`` returns the utterance's features (T × F); ``labels[utt]`` its pdf-ids (T).
    """

    def __init__(self, utts: Sequence[str], load: Callable[[str], np.ndarray], labels: Mapping[str, np.ndarray],
                 cfg: ChunkConfig, num_streams: int) -> None:
        if num_streams < 1:
            raise SenoneError(f"nn num_streams={num_streams}: must be at least 1")
        self.utts = list(utts)
        self.load = load
        self.labels = labels
        self.cfg = cfg
        self.num_streams = num_streams

    def __len__(self) -> int:
        return num_batches(self.utts, {u: len(self.labels[u]) for u in self.utts}, self.cfg, self.num_streams)

    def _open(self, queue: Iterator[str]) -> tuple[np.ndarray, np.ndarray] | None:
        for utt in queue:
            inputs, targets = chunk_utterance(self.load(utt), self.labels[utt], self.cfg)
            if len(inputs):
                return inputs, targets
        return None

    def __iter__(self) -> Iterator[Batch]:
        queue = iter(self.utts)
        streams: list[list] = []  # [inputs, targets, next chunk index, slot]
        for slot in range(self.num_streams):
            opened = self._open(queue)
            if opened is None:
                break
            streams.append([*opened, 0, slot])
        while streams:
            inputs = np.stack([s[0][s[2]] for s in streams])
            targets = np.stack([s[1][s[2]] for s in streams])
            yield Batch(inputs, targets, streams=np.array([s[3] for s in streams], dtype=np.int64),
                        starts=np.array([s[2] == 0 for s in streams], dtype=bool))
            nxt = []
            for s in streams:
                s[2] += 1
                if s[2] == len(s[0]):
                    opened = self._open(queue)
                    if opened is None:
                        continue  # the slot runs dry; the rows after it keep their own slots
                    s = [*opened, 0, s[3]]  # the next utterance takes over the slot, from a zero state
                nxt.append(s)
            streams = nxt


def num_frame_batches(num_labelled: int, frames_per_batch: int, rank: int = 0, world_size: int = 1) -> int:
    """How many minibatches :class:`FrameBatcher` yields to process ``rank`` for ``num_labelled``
    frames in all (its share: every ``world_size``-th frame of the epoch's order)."""
    mine = len(range(rank, num_labelled, world_size))
    return -(-mine // frames_per_batch)


class FrameBatcher:
    """FFNN minibatches of single frames with their context, shuffled over the whole epoch (see the
    module docstring).

    ``utts`` must be the same list, in the same order, in every process (the frame index is built
    over it); ``load(utt)`` returns the features (T × F), ``labels[utt]`` the pdf-ids (T). A batch has
    ``inputs`` B × (left + 1 + right) × F, the window of each frame with the utterance's edge frames
    repeated beyond its ends (as :func:`senone.nn.chunks.pad_edges`), and ``targets`` B × 1.
    """

    def __init__(self, utts: Sequence[str], load: Callable[[str], np.ndarray], labels: Mapping[str, np.ndarray],
                 left_context: int, right_context: int, frames_per_batch: int, seed: int, epoch: int,
                 rank: int = 0, world_size: int = 1) -> None:
        if frames_per_batch < 1:
            raise SenoneError(f"nn frames_per_batch={frames_per_batch}: must be at least 1")
        self.utts = list(utts)
        self.load = load
        self.labels = labels
        self.left, self.right = left_context, right_context
        self.frames_per_batch = frames_per_batch
        self.seed, self.epoch, self.rank, self.world_size = seed, epoch, rank, world_size
        lengths = np.array([len(labels[u]) for u in self.utts], dtype=np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(lengths)])  # frame index g is frame g - offsets[u] of utts[u]

    @property
    def num_labelled(self) -> int:
        return int(self.offsets[-1])

    def __len__(self) -> int:
        return num_frame_batches(self.num_labelled, self.frames_per_batch, self.rank, self.world_size)

    def order(self) -> np.ndarray:
        """This process's frame indices for the epoch, in training order (seeded by seed and epoch)."""
        n = self.num_labelled
        perm = np.arange(n, dtype=np.int32 if n < 2**31 else np.int64)
        np.random.default_rng([self.seed, self.epoch, 1]).shuffle(perm)  # [.., 1]: not epoch_order's draw
        return perm[self.rank::self.world_size]

    def __iter__(self) -> Iterator[Batch]:
        order = self.order()
        offs = np.arange(-self.left, self.right + 1)
        for b0 in range(0, len(order), self.frames_per_batch):
            g = order[b0:b0 + self.frames_per_batch].astype(np.int64)
            u = np.searchsorted(self.offsets, g, side="right") - 1
            t = g - self.offsets[u]
            by_utt = np.argsort(u, kind="stable")
            bounds = np.flatnonzero(np.diff(u[by_utt])) + 1
            inputs: np.ndarray | None = None
            targets = np.empty((len(g), 1), dtype=np.int64)
            for rows in np.split(by_utt, bounds):
                utt = self.utts[u[rows[0]]]
                x = np.asarray(self.load(utt), dtype=np.float32)
                y = np.asarray(self.labels[utt])
                if len(x) != len(y):
                    raise SenoneError(f"{utt}: features have {len(x)} frames but the alignment has {len(y)}")
                if inputs is None:
                    inputs = np.empty((len(g), len(offs), x.shape[1]), dtype=np.float32)
                inputs[rows] = x[np.clip(t[rows, None] + offs[None, :], 0, len(x) - 1)]
                targets[rows, 0] = y[t[rows]]
            yield Batch(inputs, targets)
