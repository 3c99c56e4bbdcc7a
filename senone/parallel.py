"""Kaldi's ``JOB=1:nj`` for in-memory stages: a function over strided shards of utterances in forked
workers that inherit the large read-only state (graphs, features, model) copy-on-write.

Nothing backed by pybind11 has to be pickled on the way in: the state is put in a module-level dict
before the fork and read back in the worker with :func:`shared`; only the shards (utterance ids) go
in and the per-shard results come back.
"""

from __future__ import annotations

import multiprocessing
from typing import Any, Callable, Sequence, TypeVar

T = TypeVar("T")

_SHARED: dict[str, Any] = {}


def shared() -> dict[str, Any]:
    """The state given to the running :func:`map_shards` call (in a worker or, serially, in the parent)."""
    return _SHARED


def map_shards(fn: Callable[[list], T], items: Sequence, num_jobs: int, **state: Any) -> list[T]:
    """``fn(shard)`` for ``num_jobs`` strided shards of ``items`` (``items[i::num_jobs]``), in shard order.

    The first shard runs in this process while ``num_jobs - 1`` forked workers run the others: one
    fork fewer per call, and the first result (GMM statistics: megabytes) is not pickled back.
    With one job, or fewer than two items per job, ``fn`` runs once in this process on all items.
    """
    _SHARED.update(state)
    try:
        if num_jobs <= 1 or len(items) < 2 * num_jobs:
            return [fn(list(items))]
        shards = [list(items[i::num_jobs]) for i in range(num_jobs)]
        with multiprocessing.get_context("fork").Pool(num_jobs - 1) as pool:
            others = pool.map_async(fn, shards[1:])
            first = fn(shards[0])
            return [first] + others.get()
    finally:
        _SHARED.clear()


def sum_shards(fn: Callable[[list], T], items: Sequence, num_jobs: int, **state: Any) -> T:
    """:func:`map_shards` for statistics: the shards' results summed with their ``add`` method."""
    parts = map_shards(fn, items, num_jobs, **state)
    total = parts[0]
    for part in parts[1:]:
        total.add(part)  # type: ignore[attr-defined]
    return total
