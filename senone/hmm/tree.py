"""Decision-tree clustering of context-dependent HMM states: Kaldi's ``build-tree``, ``gmm-init-model``
and ``convert-ali``.

``build_tree`` follows Kaldi's ``BuildTree``:

1. A *stub* tree with one leaf per root (``phones/roots.int``: a line of phones that share one
   tree, e.g. the five tones of a Mandarin final; ``shared`` roots have one leaf for all pdf-classes,
   ``not-shared`` ones one leaf per pdf-class; ``not-split`` roots are never split further).
2. Greedy top-down splitting: the leaf whose best question gains most log-likelihood (one diagonal
   Gaussian per leaf, from the tree statistics) is split, until the best gain falls to ``thresh`` or
   the tree has ``max_leaves`` leaves. A question is a phone set asked of one context position, or a
   pdf-class set; the yes-leaf keeps its number, the no-leaf takes the next free one.
3. Merging (Kaldi's ``ClusterEventMapRestrictedByMap``): within each root, leaves are merged
   bottom-up, cheapest first, while a merge costs less than ``cluster_thresh`` (by default the
   smallest gain of any split made), then leaves are renumbered 0..L-1 — the pdf-ids.

One addition to Kaldi: ``min_count`` refuses questions that leave either side with fewer frames
(Kaldi's build-tree has no such floor; it only warns about leaves under 100 frames). Set it to 0 for
Kaldi's exact behaviour.

Phones never seen in training still get pdfs: the stub covers every phone of the roots, and a
split asks whether a phone is in a set, so an unseen phone follows the "no" branch (or "yes" when a
question names it) down to some leaf of its root. A root without any statistics keeps one leaf,
which ``init_model_from_tree`` fills with the global Gaussian (Kaldi's ``gmm-init-model`` does the
same, with a warning).
"""

from __future__ import annotations

import heapq
import logging
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Mapping, Sequence

import kaldi_hmm_gmm as khg
import numpy as np

from senone import SenoneError
from senone.hmm.questions import Questions
from senone.hmm.tree_io import (
    PDF_CLASS_KEY,
    ConstantEventMap,
    ContextDependencyTree,
    EventMap,
    SplitEventMap,
    TableEventMap,
    leaves,
    map_events,
    renumber_leaves,
    replace_leaves,
)
from senone.hmm.tree_stats import TransitionTables, TreeStats, gauss_objf, is_reordered, phone_windows, split_to_phones

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------
# Roots
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Root:
    """One line of Kaldi's ``roots.txt``: phones sharing a tree root, and how."""

    phones: tuple[int, ...]
    shared: bool = True   # one root for all pdf-classes (the tree may ask about the pdf-class)
    split: bool = True    # the root may be split by questions


def roots_from_sets(phone_sets: Sequence[Sequence[int]], not_split: Sequence[int] = ()) -> list[Root]:
    """Roots from ``phones/sets.int`` as Kaldi's ``prepare_lang.sh`` writes them ("shared split").

    A set containing a phone of ``not_split`` (e.g. the silence phones, if they should keep one
    pdf per HMM state whatever the context) becomes "not-shared not-split".
    """
    ns = set(int(p) for p in not_split)
    out = []
    for s in phone_sets:
        phones = tuple(sorted(int(p) for p in s))
        out.append(Root(phones, shared=False, split=False) if ns & set(phones) else Root(phones))
    return out


def read_roots(path: str | Path) -> list[Root]:
    """Read Kaldi's ``roots.int`` (``shared|not-shared split|not-split phone...`` per line)."""
    path = Path(path)
    if not path.is_file():
        raise SenoneError(f"{path}: missing; rebuild the lang directory")
    out = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        f = line.split()
        if not f:
            continue
        if len(f) < 3 or f[0] not in ("shared", "not-shared") or f[1] not in ("split", "not-split"):
            raise SenoneError(f"{path}:{n}: expected 'shared|not-shared split|not-split <phone ids>', got {line.strip()!r}")
        try:
            phones = tuple(sorted(int(x) for x in f[2:]))
        except ValueError:
            raise SenoneError(f"{path}:{n}: phone ids must be integers (use roots.int, not roots.txt)") from None
        out.append(Root(phones, shared=f[0] == "shared", split=f[1] == "split"))
    return out


def _check_roots(roots: Sequence[Root], topo: khg.HmmTopology) -> None:
    if not roots:
        raise SenoneError("no tree roots given (phones/roots.int or phones/sets.int is empty)")
    topo_phones = set(int(p) for p in topo.phones)
    seen: dict[int, int] = {}
    for i, r in enumerate(roots):
        if not r.phones:
            raise SenoneError(f"tree root {i + 1} has no phones; fix phones/roots.int")
        if r.split and not r.shared:
            raise SenoneError(f"tree root {i + 1} {list(r.phones)} is 'not-shared split', which Kaldi does not "
                              "support; make it 'shared split' or 'not-shared not-split'")
        for p in r.phones:
            if p in seen:
                raise SenoneError(f"phone {p} is in tree roots {seen[p] + 1} and {i + 1}; each phone needs exactly one root")
            if p not in topo_phones:
                raise SenoneError(f"tree root {i + 1} names phone {p}, which the HMM topology does not define; "
                                  "fix phones/roots.int (or sets.int)")
            seen[p] = i
    missing = sorted(topo_phones - set(seen))
    if missing:
        raise SenoneError(f"phones {missing} of the HMM topology are in no tree root, so the tree could not give them "
                          "pdfs; add them to phones/sets.int (or roots.int)")


def stub_map(roots: Sequence[Root], phone2num_pdf_classes: Sequence[int], central_position: int) -> tuple[EventMap, int]:
    """Kaldi's ``GetStubMap``: a balanced binary tree of questions on the central phone down to one
    leaf per shared root (or one per pdf-class of a not-shared root). Returns the map and #leaves."""
    counter = [0]

    def build(rs: Sequence[Root]) -> EventMap:
        if len(rs) == 1:
            r = rs[0]
            if r.shared:
                leaf = counter[0]
                counter[0] += 1
                return ConstantEventMap(leaf)
            n = max(phone2num_pdf_classes[p] for p in r.phones)
            table = []
            for _ in range(n):
                table.append(ConstantEventMap(counter[0]))
                counter[0] += 1
            return TableEventMap(PDF_CLASS_KEY, tuple(table))
        half = len(rs) // 2
        first, second = build(rs[:half]), build(rs[half:])
        yes = tuple(sorted(p for r in rs[:half] for p in r.phones))
        return SplitEventMap(central_position, yes, first, second)

    emap = build(list(roots))
    return emap, counter[0]


# --------------------------------------------------------------------------------------------
# Statistics per leaf
# --------------------------------------------------------------------------------------------

@dataclass
class LeafStats:
    """Pooled single-Gaussian statistics per pdf-id (what ``gmm-init-model`` needs)."""

    count: np.ndarray   # (L,)
    sum: np.ndarray     # (L, D)
    sumsq: np.ndarray   # (L, D)
    var_floor: float

    @property
    def num_leaves(self) -> int:
        return int(self.count.shape[0])

    @property
    def dim(self) -> int:
        return int(self.sum.shape[1])

    def objf(self) -> float:
        """Total log-likelihood of the training frames with one Gaussian per leaf."""
        return float(gauss_objf(self.count, self.sum, self.sumsq, self.var_floor).sum())

    def save(self, path: str | Path) -> None:
        from senone.io import atomic_path

        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, count=self.count, sum=self.sum, sumsq=self.sumsq, var_floor=self.var_floor)

    @classmethod
    def load(cls, path: str | Path) -> "LeafStats":
        from senone.io import require_file

        with np.load(require_file(path, "tree building")) as z:
            return cls(z["count"], z["sum"], z["sumsq"], float(z["var_floor"]))


def _event_columns(stats: TreeStats) -> dict[int, np.ndarray]:
    cols = {k: stats.key_column(k).astype(np.int64) for k in range(stats.context_width)}
    cols[PDF_CLASS_KEY] = stats.key_column(PDF_CLASS_KEY).astype(np.int64)
    return cols


def leaf_stats(tree: ContextDependencyTree | EventMap, stats: TreeStats, num_leaves: int | None = None) -> LeafStats:
    """Kaldi's ``SplitStatsByMap`` + sum: the statistics of each leaf of ``tree``."""
    emap = tree.to_pdf if isinstance(tree, ContextDependencyTree) else tree
    leaf = map_events(emap, _event_columns(stats))
    if (leaf < 0).any():
        i = int(np.flatnonzero(leaf < 0)[0])
        raise SenoneError(f"tree statistics event {stats.events[i].tolist()} does not map to a leaf: the tree and "
                          "statistics disagree (context width, central position or phone set)")
    n = (max(leaves(emap)) + 1) if num_leaves is None else num_leaves
    count = np.bincount(leaf, weights=stats.count, minlength=n)
    s1 = np.zeros((n, stats.dim))
    s2 = np.zeros((n, stats.dim))
    np.add.at(s1, leaf, stats.sum)
    np.add.at(s2, leaf, stats.sumsq)
    return LeafStats(count, s1, s2, stats.var_floor)


# --------------------------------------------------------------------------------------------
# Splitting
# --------------------------------------------------------------------------------------------

@dataclass
class _Node:
    leaf: int
    idx: np.ndarray
    gain: float = 0.0
    key: int = 0
    yes_set: tuple[int, ...] = ()
    yes: "_Node | None" = None
    no: "_Node | None" = None

    def to_map(self) -> EventMap:
        if self.yes is None or self.no is None:
            return ConstantEventMap(self.leaf)
        return SplitEventMap(self.key, self.yes_set, self.yes.to_map(), self.no.to_map())


class _Splitter:
    """Finds the best question for a set of events, all questions of a key at once:
    statistics summed per key value, then yes-sums = membership matrix × per-value sums."""

    def __init__(self, stats: TreeStats, questions: Questions, min_count: float) -> None:
        self.acc = np.concatenate([stats.count[:, None], stats.sum, stats.sumsq], axis=1)
        self.dim = stats.dim
        self.var_floor = stats.var_floor
        self.min_count = max(float(min_count), 1e-6)
        self.cols = _event_columns(stats)
        self.keys = questions.keys
        self.questions = {k: questions.for_key(k) for k in self.keys}
        self.members = {}
        for k in self.keys:
            top = max([int(self.cols[k].max()) if self.cols[k].size else 0] +
                      [max(q) for q in self.questions[k] if q])
            self.members[k] = questions.membership(k, top + 1)

    def objf(self, rows: np.ndarray) -> np.ndarray:
        d = self.dim
        return gauss_objf(rows[:, 0], rows[:, 1:1 + d], rows[:, 1 + d:], self.var_floor)

    def best(self, idx: np.ndarray) -> tuple[float, int, tuple[int, ...]]:
        if idx.size <= 1:
            return 0.0, 0, ()
        a = self.acc[idx]
        total = a.sum(axis=0)
        base = self.objf(total[None, :])[0]
        best_gain, best_key, best_set = 0.0, 0, ()
        for key in self.keys:
            v = self.cols[key][idx]
            if v.min() < 0:   # the key is absent from some event (context of a CI phone): cannot ask
                continue
            order = np.argsort(v, kind="stable")
            vs = v[order]
            starts = np.flatnonzero(np.r_[True, vs[1:] != vs[:-1]])
            if starts.size < 2:
                continue
            per_value = np.add.reduceat(a[order], starts, axis=0)
            yes = self.members[key][:, vs[starts]] @ per_value
            no = total[None, :] - yes
            gain = self.objf(yes) + self.objf(no) - base
            ok = (yes[:, 0] >= self.min_count) & (no[:, 0] >= self.min_count)
            gain = np.where(ok, gain, 0.0)
            j = int(np.argmax(gain))
            if gain[j] > best_gain:
                best_gain, best_key, best_set = float(gain[j]), key, self.questions[key][j]
        return best_gain, best_key, best_set

    def partition(self, idx: np.ndarray, key: int, yes_set: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
        is_yes = np.isin(self.cols[key][idx], np.asarray(yes_set, dtype=np.int64))
        return idx[is_yes], idx[~is_yes]


# --------------------------------------------------------------------------------------------
# Bottom-up merging
# --------------------------------------------------------------------------------------------

def _merge_bottom_up(rows: np.ndarray, thresh: float, var_floor: float) -> np.ndarray:
    """Kaldi's ``ClusterBottomUp``: repeatedly merge the two clusters whose merge loses the least
    log-likelihood while that loss is below ``thresh``. Returns each point's cluster representative
    (the smallest point index in its cluster).

    Kaldi admits a loss equal to the threshold for the first pairs; with the default threshold (the
    smallest split gain) that re-merges the two leaves of that split when nothing split them further,
    or not, depending on float rounding. The strict test here never undoes a split that was made.
    """
    n = rows.shape[0]
    d = (rows.shape[1] - 1) // 2

    def objf(r: np.ndarray) -> np.ndarray:
        r = np.atleast_2d(r)
        return gauss_objf(r[:, 0], r[:, 1:1 + d], r[:, 1 + d:], var_floor)

    clusters = rows.astype(np.float64).copy()
    own = objf(clusters)
    alive = np.ones(n, dtype=bool)
    version = np.zeros(n, dtype=np.int64)
    parent = np.arange(n)
    heap: list[tuple[float, int, int, int, int]] = []
    limit = thresh - 1e-6 * abs(thresh)   # a loss equal to a split's gain, up to rounding, is not "below"

    def push_pairs(i: int, others: np.ndarray) -> None:
        if others.size == 0:
            return
        merged = objf(clusters[i][None, :] + clusters[others])
        dist = own[i] + own[others] - merged
        for j, dj in zip(others.tolist(), dist.tolist()):
            if dj < limit:
                heapq.heappush(heap, (dj, min(i, j), max(i, j), int(version[min(i, j)]), int(version[max(i, j)])))

    for i in range(1, n):
        push_pairs(i, np.arange(i))
    while heap:
        _dist, i, j, vi, vj = heapq.heappop(heap)
        if not (alive[i] and alive[j]) or version[i] != vi or version[j] != vj:
            continue
        clusters[i] += clusters[j]
        own[i] = objf(clusters[i])[0]
        alive[j] = False
        parent[j] = i
        version[i] += 1
        push_pairs(i, np.flatnonzero(alive & (np.arange(n) != i)))
    rep = np.arange(n)
    for p in range(n):
        r = p
        while parent[r] != r:
            r = parent[r]
        rep[p] = r  # i < j for every merge, so the root is the cluster's smallest index
    return rep


# --------------------------------------------------------------------------------------------
# build-tree
# --------------------------------------------------------------------------------------------

@dataclass
class TreeResult:
    """A built tree, its leaves' statistics and what the building did."""

    tree: ContextDependencyTree
    leaf_stats: LeafStats
    num_frames: float
    objf_stub: float          # log-likelihood with one Gaussian per stub leaf (root)
    objf_split: float         # ... after splitting
    objf_final: float         # ... after merging (the tree returned)
    num_splits: int
    leaves_after_split: int
    num_merged: int
    smallest_split: float
    cluster_thresh: float
    unseen_leaves: list[int] = field(default_factory=list)

    @property
    def num_leaves(self) -> int:
        return self.tree.num_pdfs

    @property
    def like_gain_per_frame(self) -> float:
        """Log-likelihood gain per frame of the final tree over one Gaussian per root."""
        return (self.objf_final - self.objf_stub) / max(self.num_frames, 1.0)

    def summary(self) -> dict:
        """JSON-ready figures (for ``tree.json`` / logs)."""
        d = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("tree", "leaf_stats")}
        d["unseen_leaves"] = list(self.unseen_leaves)
        d.update(num_leaves=self.num_leaves, like_gain_per_frame=self.like_gain_per_frame,
                 like_per_frame_stub=self.objf_stub / max(self.num_frames, 1.0),
                 like_per_frame_final=self.objf_final / max(self.num_frames, 1.0))
        return d


def build_tree(stats: TreeStats, questions: Questions, roots: Sequence[Root], topo: khg.HmmTopology, *,
               max_leaves: int = 0, thresh: float = 300.0, cluster_thresh: float = -1.0,
               min_count: float = 100.0) -> TreeResult:
    """Kaldi's ``build-tree``: a decision tree mapping (phone context, pdf-class) to pdf-ids.

    ``max_leaves`` (Kaldi's ``--max-leaves``, 0 = no limit) caps the leaves made by splitting;
    splitting also stops when the best gain is at most ``thresh`` (Kaldi's ``--thresh``, 300).
    ``cluster_thresh`` (Kaldi's ``--cluster-thresh``): merge leaves of one root while a merge costs
    less; negative = the smallest split gain, 0 = no merging. ``min_count``: no question may leave
    fewer frames on either side (0 = Kaldi). Raises ``SenoneError`` for roots that do not cover the
    topology's phones, phones with statistics but no root, or mismatched context widths.
    """
    if stats.num_events == 0:
        raise SenoneError("tree statistics are empty; accumulate them from alignments first")
    if questions.context_width != stats.context_width:
        raise SenoneError(f"questions are for context width {questions.context_width} but the tree statistics "
                          f"for {stats.context_width}; compile the questions with the same width")
    if not (thresh > 0 or max_leaves > 0):
        raise SenoneError("build_tree: give max_leaves > 0 or thresh > 0, or the tree would split without end")
    _check_roots(roots, topo)
    p = stats.central_position
    phone2num = list(topo.get_phone_to_num_pdf_classes())
    root_phones = {ph for r in roots for ph in r.phones}
    stray = sorted(set(stats.phones()) - root_phones)
    if stray:
        raise SenoneError(f"phones {stray} have tree statistics but are in no tree root; add them to phones/sets.int")

    stub, num_leaves = stub_map(roots, phone2num, p)
    num_stub_leaves = num_leaves
    cols = _event_columns(stats)
    stub_leaf = map_events(stub, cols)
    if (stub_leaf < 0).any():
        i = int(np.flatnonzero(stub_leaf < 0)[0])
        raise SenoneError(f"tree statistics event {stats.events[i].tolist()} has a pdf-class beyond its phone's "
                          "topology; the statistics come from another topology")
    stub_objf = leaf_stats(stub, stats, num_stub_leaves).objf()
    no_split = np.isin(cols[p], np.asarray(sorted(ph for r in roots if not r.split for ph in r.phones), dtype=np.int64))

    splitter = _Splitter(stats, questions, min_count)
    order = np.argsort(stub_leaf, kind="stable")
    bounds = np.searchsorted(stub_leaf[order], np.arange(num_stub_leaves + 1))
    root_nodes: list[_Node] = []
    heap: list[tuple[float, int]] = []
    current: dict[int, _Node] = {}
    for leaf in range(num_stub_leaves):
        idx = order[bounds[leaf]:bounds[leaf + 1]]
        idx = idx[~no_split[idx]]
        node = _Node(leaf, np.sort(idx))
        node.gain, node.key, node.yes_set = splitter.best(node.idx)
        root_nodes.append(node)
        current[leaf] = node
        if node.gain > 0:
            heapq.heappush(heap, (-node.gain, leaf))

    num_splits = 0
    impr = 0.0
    smallest = float("inf")
    while heap:
        gain = -heap[0][0]
        if gain <= thresh or (max_leaves > 0 and num_leaves >= max_leaves):
            break
        _neg, leaf = heapq.heappop(heap)
        node = current[leaf]
        yes_idx, no_idx = splitter.partition(node.idx, node.key, node.yes_set)
        node.yes, node.no = _Node(leaf, yes_idx), _Node(num_leaves, no_idx)
        node.idx = np.zeros(0, dtype=np.int64)
        num_leaves += 1
        num_splits += 1
        impr += gain
        smallest = min(smallest, gain)
        for child in (node.yes, node.no):
            child.gain, child.key, child.yes_set = splitter.best(child.idx)
            current[child.leaf] = child
            if child.gain > 0:
                heapq.heappush(heap, (-child.gain, child.leaf))
        if num_splits % 200 == 0:
            log.info("tree: %d splits, %d leaves, last gain %.1f", num_splits, num_leaves, gain)
    split_map = replace_leaves(stub, {n.leaf: n.to_map() for n in root_nodes})
    leaves_after_split = num_leaves
    total_frames = stats.num_frames
    log.info("tree: split %d times, %d leaves, log-likelihood gain %.4f per frame over %.0f frames",
             num_splits, num_leaves, impr / max(total_frames, 1.0), total_frames)
    objf_split = leaf_stats(split_map, stats, num_leaves).objf()

    if cluster_thresh < 0:
        cluster_thresh = smallest if num_splits else 0.0
    num_merged = 0
    final_map = split_map
    if cluster_thresh > 0 and num_splits:
        leaf_of = map_events(split_map, cols)
        lstats = leaf_stats(split_map, stats, num_leaves)
        acc = np.concatenate([lstats.count[:, None], lstats.sum, lstats.sumsq], axis=1)
        mapping: dict[int, EventMap] = {}
        for g in range(num_stub_leaves):
            group = np.unique(leaf_of[stub_leaf == g])
            if group.size < 2:
                continue
            rep = _merge_bottom_up(acc[group], cluster_thresh, stats.var_floor)
            for k, r in enumerate(rep.tolist()):
                if r != k:
                    mapping[int(group[k])] = ConstantEventMap(int(group[r]))
                    num_merged += 1
        final_map = replace_leaves(split_map, mapping)
        log.info("tree: merged away %d leaves (threshold %.1f)", num_merged, cluster_thresh)
    final_map, _old2new = renumber_leaves(final_map)
    tree = ContextDependencyTree(stats.context_width, p, final_map)
    ls = leaf_stats(tree, stats)
    unseen = np.flatnonzero(ls.count <= 0).tolist()
    if unseen:
        log.warning("tree: %d leaves have no statistics (phones unseen in training whose root has no data); "
                    "gmm-init-model gives them the global Gaussian", len(unseen))
    result = TreeResult(tree=tree, leaf_stats=ls, num_frames=total_frames, objf_stub=stub_objf, objf_split=objf_split,
                        objf_final=ls.objf(), num_splits=num_splits, leaves_after_split=leaves_after_split,
                        num_merged=num_merged, smallest_split=smallest if num_splits else 0.0,
                        cluster_thresh=cluster_thresh, unseen_leaves=unseen)
    log.info("tree: %d leaves; log-likelihood per frame %.4f -> %.4f (gain %.4f)", result.num_leaves,
             stub_objf / max(total_frames, 1.0), result.objf_final / max(total_frames, 1.0), result.like_gain_per_frame)
    return result


# --------------------------------------------------------------------------------------------
# gmm-init-model
# --------------------------------------------------------------------------------------------

def init_model_from_tree(tree: ContextDependencyTree, leaf_stats: LeafStats, topo: khg.HmmTopology, *,
                         var_floor: float = 0.01) -> tuple[khg.TransitionModel, khg.AmDiagGmm]:
    """Kaldi's ``gmm-init-model``: the transition model of ``tree`` and ``topo`` (transition
    probabilities from the topology) and one Gaussian per pdf from its leaf's pooled statistics
    (variances floored at ``var_floor``). A leaf without statistics gets the global Gaussian, with a
    warning naming its phones. Use ``tree.to_kaldi()`` for the matching ``ContextDependency``.
    """
    num_pdfs = tree.num_pdfs
    if leaf_stats.num_leaves != num_pdfs:
        raise SenoneError(f"leaf statistics for {leaf_stats.num_leaves} pdfs but the tree has {num_pdfs}; "
                          "use the statistics that came with this tree")
    ctx = tree.to_kaldi()
    trans_model = khg.TransitionModel(ctx, topo)
    total_n = leaf_stats.count.sum()
    if total_n <= 0:
        raise SenoneError("no statistics in any leaf: cannot initialise the model")
    g_sum, g_sumsq = leaf_stats.sum.sum(axis=0), leaf_stats.sumsq.sum(axis=0)
    empty = np.flatnonzero(leaf_stats.count <= 0)
    if empty.size:
        phones = list(topo.phones)
        info = tree.pdf_info(phones, list(topo.get_phone_to_num_pdf_classes()))
        for pdf in empty.tolist():
            log.warning("pdf-id %d has no statistics (phones %s): initialised with the global Gaussian; such phones "
                        "were unseen in training and share a root with no seen phone", pdf,
                        sorted({ph for ph, _ in info[pdf]}))
    am = khg.AmDiagGmm()
    for pdf in range(num_pdfs):
        n = leaf_stats.count[pdf]
        s1, s2 = (leaf_stats.sum[pdf], leaf_stats.sumsq[pdf]) if n > 0 else (g_sum, g_sumsq)
        n = n if n > 0 else total_n
        mean = s1 / n
        var = np.maximum(s2 / n - mean * mean, var_floor)
        gmm = khg.DiagGmm(1, leaf_stats.dim)
        gmm.set_weights(np.ones(1, dtype=np.float32))
        gmm.set_invvars((1.0 / var).astype(np.float32)[None, :])
        gmm.set_means(mean.astype(np.float32)[None, :])
        gmm.compute_gconsts()
        am.add_pdf(gmm)
    return trans_model, am


# --------------------------------------------------------------------------------------------
# convert-ali
# --------------------------------------------------------------------------------------------

def _reorder_visits(tables: TransitionTables, tids: np.ndarray, utt_start: np.ndarray, to_reordered: bool) -> np.ndarray:
    """Permute each HMM-state visit between Kaldi's two self-loop orders:
    reordered = [forward, loop, loop], not reordered = [loop, loop, forward]."""
    n = len(tids)
    sl = tables.self_loop[tids]
    ts = tables.tstate[tids]
    pos = np.arange(n)
    src = pos.copy()
    if not to_reordered:   # input reordered: a visit is a head followed by its self-loops
        cont = np.zeros(n, dtype=bool)
        cont[1:] = sl[1:] & (ts[1:] == ts[:-1]) & ~utt_start[1:]
        head = np.where(~cont, pos, 0)
        np.maximum.accumulate(head, out=head)
        last = np.ones(n, dtype=bool)
        last[:-1] = ~cont[1:]
        # positions head..last: output[p] = input[p+1] for p < last, output[last] = input[head]
        src = np.where(last, head, pos + 1)
    else:                  # input not reordered: self-loops, then the forward transition that ends the visit
        lead = np.zeros(n, dtype=bool)   # a self-loop continuing into the same state's next frame
        lead[:-1] = sl[:-1] & (ts[:-1] == ts[1:]) & ~utt_start[1:]
        # the visit's end is the first frame at or after p that is not a leading self-loop
        end = np.where(~lead, pos, n)
        end = np.minimum.accumulate(end[::-1])[::-1]
        first = np.ones(n, dtype=bool)
        first[1:] = ~lead[:-1] | utt_start[1:]
        src = np.where(first, end, pos - 1)
    return tids[src]


def convert_alignments(old_trans_model: khg.TransitionModel, new_trans_model: khg.TransitionModel,
                       new_ctx_dep: khg.ContextDependency | ContextDependencyTree,
                       alignments: Mapping[str, np.ndarray], *, reorder: bool = True) -> dict[str, np.ndarray]:
    """Kaldi's ``convert-ali``: alignments of one model rewritten as transition-ids of another with the
    same topology (e.g. monophone → triphone). Every frame keeps its phone, HMM state and transition;
    its pdfs come from the new tree with the phone's context read off the phone sequence (phone 0
    beyond the utterance edges). ``reorder``: the self-loop order of the output (Kaldi's default,
    and kaldi-hmm-gmm's graph compiler's, is reordered); the input's order is detected. Utterances
    whose alignment does not end on a phone boundary are skipped with a warning, as Kaldi does.
    """
    tree = new_ctx_dep if isinstance(new_ctx_dep, ContextDependencyTree) else ContextDependencyTree.from_kaldi(new_ctx_dep)
    old = TransitionTables.from_model(old_trans_model)
    new = TransitionTables.from_model(new_trans_model)
    utts = [u for u, a in alignments.items() if len(a)]
    if not utts:
        return {}
    arrays = [np.asarray(alignments[u], dtype=np.int64) for u in utts]
    tids = np.concatenate(arrays)
    if tids.min() < 1 or tids.max() > old.num_transition_ids:
        raise SenoneError(f"alignments contain transition-ids outside 1..{old.num_transition_ids} of the old model; "
                          "convert with the model that made them")
    lengths = np.array([len(a) for a in arrays])
    offsets = np.r_[0, np.cumsum(lengths)]
    utt_start = np.zeros(len(tids), dtype=bool)
    utt_start[offsets[:-1]] = True
    old_reordered = is_reordered(old, tids, utt_start)
    phone_start, ok = split_to_phones(old, tids, utt_start, old_reordered)
    inst = np.cumsum(phone_start) - 1
    first = np.flatnonzero(phone_start)
    inst_phone = old.phone[tids[first]]
    inst_utt = (np.cumsum(utt_start) - 1)[first]
    windows = phone_windows(inst_phone, inst_utt, tree.context_width, tree.central_position)

    # pdf-classes of each (phone, HMM state) from the new model's topology
    topo = new_trans_model.topo
    phone = old.phone[tids]
    state = old.hmm_state[tids]
    max_phone, max_state = int(phone.max()), int(state.max())
    fwd_class = np.full((max_phone + 1, max_state + 1), -1, dtype=np.int64)
    loop_class = fwd_class.copy()
    for ph in np.unique(phone).tolist():
        for s, st in enumerate(topo.topology_for_phone(ph)):
            if s <= max_state:
                fwd_class[ph, s] = st.forward_pdf_class
                loop_class[ph, s] = st.self_loop_pdf_class
    fc, lc = fwd_class[phone, state], loop_class[phone, state]
    if (fc < 0).any():
        i = int(np.flatnonzero(fc < 0)[0])
        raise SenoneError(f"phone {int(phone[i])} HMM state {int(state[i])} is not an emitting state of the new "
                          "topology; convert_alignments needs the same topology in both models")
    # look the pdfs up once per distinct (phone instance's window, HMM state)
    key = inst * (max_state + 1) + state
    uniq, first_frame, inverse = np.unique(key, return_index=True, return_inverse=True)
    w = windows[inst[first_frame]]
    fwd_pdf = tree.compute_many(w, fc[first_frame])[inverse]
    loop_pdf = tree.compute_many(w, lc[first_frame])[inverse]
    if (fwd_pdf < 0).any() or (loop_pdf < 0).any():
        i = int(np.flatnonzero((fwd_pdf < 0) | (loop_pdf < 0))[0])
        raise SenoneError(f"the new tree has no pdf for phone {int(phone[i])} in context "
                          f"{windows[inst[i]].tolist()}; the tree does not cover the alignment's phones")
    # (phone, hmm_state, forward pdf, self-loop pdf) -> new transition state
    radix_s = max(max_state, int(new.tuples[:, 1].max())) + 1
    radix_p = max(int(new.tuples[:, 2:].max()), int(max(fwd_pdf.max(), loop_pdf.max()))) + 2

    def code(ph, st, fp, lp):
        return ((ph.astype(np.int64) * radix_s + st) * radix_p + (fp + 1)) * radix_p + (lp + 1)

    tcodes = code(new.tuples[1:, 0], new.tuples[1:, 1], new.tuples[1:, 2], new.tuples[1:, 3])
    torder = np.argsort(tcodes)
    fcodes = code(phone, state, fwd_pdf, loop_pdf)
    where = np.searchsorted(tcodes[torder], fcodes)
    where = np.clip(where, 0, len(tcodes) - 1)
    found = tcodes[torder][where] == fcodes
    if not found.all():
        i = int(np.flatnonzero(~found)[0])
        raise SenoneError(f"the new transition model has no state for phone {int(phone[i])}, HMM state {int(state[i])}, "
                          f"pdfs {int(fwd_pdf[i])}/{int(loop_pdf[i])}; was it built from this tree and topology?")
    new_tstate = torder[where] + 1
    new_tids = new.state2id[new_tstate] + old.trans_index[tids]
    if bool(old_reordered) != bool(reorder):
        new_tids = _reorder_visits(new, new_tids, utt_start, to_reordered=reorder)
    out: dict[str, np.ndarray] = {}
    bad = 0
    for k, u in enumerate(utts):
        s, e = offsets[k], offsets[k + 1]
        if not ok[s]:
            bad += 1
            continue
        out[u] = new_tids[s:e].astype(np.int32)
    if bad:
        log.warning("convert_alignments: %d alignments do not end on a phone boundary; skipped", bad)
    return out
