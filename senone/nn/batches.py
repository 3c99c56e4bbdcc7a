"""Minibatches of chunks drawn from several utterances at once ("streams"), as the paper trains.

The paper's GPU "operates in parallel on 20 subsequences from different utterances at a time".
:class:`StreamBatcher` keeps ``num_streams`` utterances open; each minibatch takes the next chunk
of every open utterance, and an utterance that runs out of chunks is replaced by the next one of
the epoch's (seeded) shuffled order. So the chunks of one minibatch always come from different
utterances, only ``num_streams`` utterances are in memory at a time (features are read when an
utterance is opened, which lets a corpus far larger than memory stream from storage), and the epoch
is the same for the same seed and epoch number — which is what makes a resumed run identical to an
uninterrupted one. Towards the end of an epoch, when no utterance is left to open, minibatches
shrink as streams run dry.

With several processes (DistributedDataParallel), process ``rank`` of ``world_size`` takes every
``world_size``-th utterance of the shuffled order; all processes must run the same number of
minibatches, so :func:`num_batches` tells each its count without reading any features and the
trainer runs the smallest.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator, Mapping, Sequence

import numpy as np

from senone import SenoneError
from senone.nn.chunks import ChunkConfig, chunk_utterance, num_chunks


@dataclass
class Batch:
    """``inputs``: B × (left + L + right) × F float32; ``targets``: B × L int64 (``IGNORE`` = not scored)."""

    inputs: np.ndarray
    targets: np.ndarray

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
        streams: list[list] = []  # [inputs, targets, next chunk index]
        for _ in range(self.num_streams):
            opened = self._open(queue)
            if opened is None:
                break
            streams.append([*opened, 0])
        while streams:
            inputs = np.stack([s[0][s[2]] for s in streams])
            targets = np.stack([s[1][s[2]] for s in streams])
            yield Batch(inputs, targets)
            nxt = []
            for s in streams:
                s[2] += 1
                if s[2] == len(s[0]):
                    opened = self._open(queue)
                    if opened is None:
                        continue
                    s = [*opened, 0]
                nxt.append(s)
            streams = nxt
