"""Phonetic questions for tree building: Kaldi's ``cluster-phones`` and ``compile-questions``.

``cluster_phones`` finds phone classes automatically (Kaldi's ``AutomaticallyObtainQuestions``):
the phone sets of ``phones/sets.int`` are clustered top-down into a binary hierarchy by the
likelihood of one Gaussian per cluster (Kaldi's ``TreeCluster``: each node is split by 2-means
with several random starts, the best split first), using the statistics of the central HMM state
only (``--pdf-class-list=1``). Every node of the hierarchy becomes a question (a set of phones),
and so does every original set.

``compile_questions`` adds the hand-written questions (``phones/extra_questions.int``), sorts and
de-duplicates them, and asks the same phone questions of every context position; the pdf-class
(key -1) gets the questions ``{0}``, ``{0,1}``, … as Kaldi's ``compile-questions`` does.
"""

from __future__ import annotations

import heapq
import logging
from dataclasses import dataclass
from math import gcd
from pathlib import Path
from typing import Mapping, Sequence

import kaldi_hmm_gmm as khg
import numpy as np

from senone import SenoneError
from senone.hmm.tree_io import PDF_CLASS_KEY
from senone.hmm.tree_stats import TreeStats, gauss_objf
from senone.io import atomic_open

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Questions:
    """Kaldi's ``Questions``: the yes-sets that may be asked of each event key.

    ``phone_questions`` are asked of every context position 0..N-1, ``pdf_class_questions`` of the
    pdf-class key (-1). Both are sorted tuples of sorted tuples, without duplicates.
    """

    phone_questions: tuple[tuple[int, ...], ...]
    pdf_class_questions: tuple[tuple[int, ...], ...]
    context_width: int = 3

    @property
    def keys(self) -> list[int]:
        """Keys with questions, in Kaldi's order (-1 first, then the context positions)."""
        keys = [PDF_CLASS_KEY] if self.pdf_class_questions else []
        return keys + (list(range(self.context_width)) if self.phone_questions else [])

    def for_key(self, key: int) -> tuple[tuple[int, ...], ...]:
        if key == PDF_CLASS_KEY:
            return self.pdf_class_questions
        if 0 <= key < self.context_width:
            return self.phone_questions
        return ()

    def membership(self, key: int, num_values: int) -> np.ndarray:
        """(num_questions, num_values) 0/1 matrix: does question q contain value v?"""
        qs = self.for_key(key)
        m = np.zeros((len(qs), num_values), dtype=np.float64)
        for i, q in enumerate(qs):
            vals = [v for v in q if 0 <= v < num_values]
            m[i, vals] = 1.0
        return m


def read_phone_sets(path: str | Path) -> list[list[int]]:
    """A Kaldi integer sets file (``sets.int``, ``extra_questions.int``, ``questions.int``): one set per line."""
    path = Path(path)
    if not path.is_file():
        raise SenoneError(f"{path}: missing; rebuild the lang directory")
    out = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            out.append([int(x) for x in line.split()])
        except ValueError:
            raise SenoneError(f"{path}:{n}: expected phone ids (integers), got {line.strip()!r}") from None
    return out


def write_phone_sets(path: str | Path, sets: Sequence[Sequence[int]]) -> None:
    """Write sets one per line (Kaldi's ``questions.int`` format), atomically."""
    with atomic_open(path) as f:
        for s in sets:
            f.write(" ".join(str(p) for p in s) + "\n")


# --------------------------------------------------------------------------------------------
# cluster-phones
# --------------------------------------------------------------------------------------------

class _Points:
    """Gaussian statistics of the points (phone sets) being clustered, as one (n, 1+2D) array."""

    def __init__(self, acc: np.ndarray, var_floor: float) -> None:
        self.acc = acc
        self.dim = (acc.shape[1] - 1) // 2
        self.var_floor = var_floor

    def objf(self, rows: np.ndarray) -> np.ndarray:
        rows = np.atleast_2d(rows)
        d = self.dim
        return gauss_objf(rows[:, 0], rows[:, 1:1 + d], rows[:, 1 + d:], self.var_floor)


def _two_means_once(points: _Points, idx: np.ndarray, rng: np.random.Generator,
                    max_passes: int) -> tuple[float, np.ndarray]:
    """Kaldi's ``ClusterKMeansOnce`` with k=2: a pseudo-random round-robin start, then points move
    one at a time to the other cluster while that raises the likelihood."""
    n = len(idx)
    skip = 1 if n == 1 else int(rng.integers(1, n))
    while n > 1 and gcd(skip, n) != 1:
        skip = skip % (n - 1) + 1
    assign = np.zeros(n, dtype=np.int64)
    i = 0
    for count in range(n):
        assign[i] = count % 2
        i = (i + skip) % n
    x = points.acc[idx]
    clusters = np.stack([x[assign == 0].sum(axis=0), x[assign == 1].sum(axis=0)])
    total = clusters.sum(axis=0)
    objf = points.objf(clusters)
    for _ in range(max_passes):
        moved = False
        for p in range(n):
            own = assign[p]
            other = 1 - own
            cand = np.stack([clusters[own] - x[p], clusters[other] + x[p]])
            new = points.objf(cand)
            if new.sum() - objf[own] - objf[other] > 1e-9 * max(1.0, abs(objf.sum())):
                clusters[own], clusters[other] = cand
                objf[own], objf[other] = new
                assign[p] = other
                moved = True
        if not moved:
            break
    impr = float(objf.sum() - points.objf(total[None, :])[0])
    return impr, assign


def _two_means(points: _Points, idx: np.ndarray, rng: np.random.Generator, num_tries: int,
               max_passes: int) -> tuple[float, np.ndarray]:
    best_impr, best_assign = 0.0, np.zeros(len(idx), dtype=np.int64)
    for t in range(num_tries):
        impr, assign = _two_means_once(points, idx, rng, max_passes)
        if t == 0 or impr > best_impr:
            best_impr, best_assign = impr, assign
    return best_impr, best_assign


def tree_cluster(acc: np.ndarray, var_floor: float, *, num_tries: int = 10, max_passes: int = 100,
                 seed: int = 0, thresh: float = 0.0) -> list[list[int]]:
    """Kaldi's ``TreeCluster`` (branch factor 2) of points given as rows (count, Σx, Σx²).

    Returns the point indices of every node of the binary hierarchy (root included), in the order
    the nodes were made. Splits are taken best-first while they gain more than ``thresh``.
    """
    points = _Points(np.asarray(acc, dtype=np.float64), var_floor)
    rng = np.random.default_rng(seed)
    n = points.acc.shape[0]
    nodes: list[np.ndarray] = [np.arange(n)]
    heap: list[tuple[float, int, np.ndarray]] = []

    def consider(node_id: int) -> None:
        idx = nodes[node_id]
        if len(idx) <= 1:
            return
        impr, assign = _two_means(points, idx, rng, num_tries, max_passes)
        if impr > thresh and 0 < assign.sum() < len(idx):
            heapq.heappush(heap, (-impr, node_id, assign))

    consider(0)
    while heap:
        _neg, node_id, assign = heapq.heappop(heap)
        idx = nodes[node_id]
        for side in (0, 1):
            nodes.append(idx[assign == side])
            consider(len(nodes) - 1)
    return [sorted(ix.tolist()) for ix in nodes]


def cluster_phones(stats: TreeStats, phone_sets: Sequence[Sequence[int]], *, pdf_classes: Sequence[int] = (1,),
                   num_tries: int = 10, seed: int = 0) -> list[list[int]]:
    """Kaldi's ``cluster-phones`` (questions mode): automatic phone questions from tree statistics.

    ``phone_sets`` are the units that are never separated (``phones/sets.int``: e.g. the tones of a
    final). Statistics of the central phone's ``pdf_classes`` (Kaldi's default: class 1, the middle
    state) are pooled per set and clustered top-down; every cluster of the hierarchy and every
    original set is returned as a sorted phone list (sorted, unique).
    """
    sets = [sorted(int(p) for p in s) for s in phone_sets]
    if not sets:
        raise SenoneError("cluster_phones: no phone sets given (phones/sets.int is empty)")
    flat = [p for s in sets for p in s]
    if len(flat) != len(set(flat)):
        dup = sorted({p for p in flat if flat.count(p) > 1})
        raise SenoneError(f"phone sets: phones {dup} are in more than one set; fix phones/sets.int")
    if any(not s for s in sets):
        raise SenoneError("phone sets: an empty set; fix phones/sets.int")
    centre = stats.key_column(stats.central_position).astype(np.int64)
    keep = np.isin(stats.key_column(-1), np.asarray(pdf_classes))
    d = stats.dim
    acc_all = np.concatenate([stats.count[:, None], stats.sum, stats.sumsq], axis=1)
    max_phone = max(max(flat), int(centre.max()) if centre.size else 0)
    per_phone = np.zeros((max_phone + 1, 1 + 2 * d))
    np.add.at(per_phone, centre[keep], acc_all[keep])
    stray = sorted(set(np.flatnonzero(per_phone[:, 0] > 0).tolist()) - set(flat))
    if stray:
        log.warning("phones %s have statistics but are in no phone set; they are left out of the questions", stray)
    per_set = np.stack([per_phone[s].sum(axis=0) for s in sets])
    for s, row in zip(sets, per_set):
        if row[0] == 0:
            log.warning("cluster_phones: no statistics for phone set %s", s)
    nodes = tree_cluster(per_set, stats.var_floor, num_tries=num_tries, seed=seed)
    out = {tuple(sorted(p for i in node for p in sets[i])) for node in nodes}
    out |= {tuple(s) for s in sets}
    out.discard(())
    return [list(q) for q in sorted(out)]


# --------------------------------------------------------------------------------------------
# compile-questions
# --------------------------------------------------------------------------------------------

def compile_questions(topo: khg.HmmTopology, question_sets: Mapping[str, Sequence[Sequence[int]]], *,
                      context_width: int = 3) -> Questions:
    """Kaldi's ``compile-questions``: the questions of each event key.

    ``question_sets`` maps a name (a file name or e.g. ``"cluster-phones"``, used in messages) to
    phone sets; all are pooled, sorted and de-duplicated. A phone that the topology does not define
    raises ``SenoneError`` naming the question set and the phone. The pdf-class questions are
    ``{0}``, ``{0,1}``, …, up to the largest number of pdf-classes of any phone, minus one.
    """
    topo_phones = set(int(p) for p in topo.phones)
    pooled: set[tuple[int, ...]] = set()
    total = 0
    for name, sets in question_sets.items():
        for i, q in enumerate(sets, 1):
            q = [int(p) for p in q]
            bad = [p for p in q if p not in topo_phones]
            if bad:
                raise SenoneError(f"{name}: question {i} names phone {bad[0]}, which the HMM topology does not "
                                  "define; fix the question set (phone ids must be real phones of phones.txt)")
            if len(set(q)) != len(q):
                raise SenoneError(f"{name}: question {i} lists a phone twice; fix the question set")
            if q:
                pooled.add(tuple(sorted(q)))
                total += 1
    if total != len(pooled):
        log.info("compile_questions: %d duplicate questions removed", total - len(pooled))
    seen = {p for q in pooled for p in q}
    unasked = sorted(topo_phones - seen)
    if unasked:
        log.warning("compile_questions: phones %s appear in no question (the tree can never tell them apart "
                    "from others in context)", unasked)
    num_classes = np.asarray(topo.get_phone_to_num_pdf_classes())
    max_classes = int(num_classes[sorted(topo_phones)].max()) if topo_phones else 0
    pdf_q = tuple(tuple(range(i + 1)) for i in range(max_classes - 1))
    return Questions(phone_questions=tuple(sorted(pooled)), pdf_class_questions=pdf_q,
                     context_width=context_width)
