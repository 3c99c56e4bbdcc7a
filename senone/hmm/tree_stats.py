"""Decision-tree statistics (Kaldi's ``acc-tree-stats``), vectorised.

For every *event* — the phones of the context window around a phone (keys ``0 .. N-1``, central
position ``P``, phone 0 beyond the utterance edges) and the pdf-class of the HMM state (key -1) —
the statistics of one Gaussian: frame count, Σx and Σx². Tree building only ever needs these
(Kaldi's ``GaussClusterable``). For a context-independent central phone (silence: Kaldi's
``--ci-phones``) the context keys are left out of the event (stored as -1 here), so that no
question about its neighbours can ever be asked.

Kaldi walks the frames one by one; here every frame of a batch of utterances gets an integer
event code (phone ids and pdf-class in mixed radix), frames are sorted by code and the statistics
are summed with one ``np.add.reduceat``. Statistics of shards merge by the same sort-and-sum, so
forked workers (``num_jobs``) and separate runs combine exactly (Kaldi's ``sum-tree-stats``).

The alignment is cut into phones as Kaldi's ``SplitToPhones`` does, for either order of the
self-loops: with ``reorder`` (the default of Kaldi's graph compiler and kaldi-hmm-gmm's) each HMM
state's visit is its forward transition followed by its self-loops, so a phone ends after the
self-loops that follow the transition into the final state; without it the self-loops come first
and the phone ends at that transition.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import kaldi_hmm_gmm as khg
import numpy as np

from senone import SenoneError
from senone.io import atomic_path, require_file
from senone.parallel import shared, sum_shards

log = logging.getLogger(__name__)

#: Kaldi's ``acc-tree-stats --var-floor`` default (used by the likelihood of the tree's Gaussians).
DEFAULT_VAR_FLOOR = 0.01


# --------------------------------------------------------------------------------------------
# What a transition-id means
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class TransitionTables:
    """Per transition-id arrays (index 0, the epsilon, is unused) and the transition model's tuples.

    kaldi-hmm-gmm exposes ``id2state``/``state2id`` and per-id predicates but not the tuples'
    fields, so the (phone, HMM-state, forward-pdf, self-loop-pdf) tuples are read from the
    transition model's Kaldi text form (``<Triples>`` or ``<Tuples>``).
    """

    phone: np.ndarray          # phone of each transition-id
    hmm_state: np.ndarray      # HMM state (in the phone's topology) it leaves from
    trans_index: np.ndarray    # index of the transition among that state's transitions
    pdf_class: np.ndarray      # pdf-class it emits (self-loop or forward pdf-class, as Kaldi's TransitionIdToPdfClass)
    pdf: np.ndarray            # pdf-id it emits
    tstate: np.ndarray         # transition state (1-based, Kaldi's numbering)
    self_loop: np.ndarray      # bool
    final: np.ndarray          # bool: enters the phone's final (non-emitting) state
    tuples: np.ndarray         # (num_tstates + 1, 4): phone, hmm_state, forward_pdf, self_loop_pdf; row 0 unused
    state2id: np.ndarray       # first transition-id of each transition state (Kaldi's state2id_)

    @property
    def num_transition_ids(self) -> int:
        return len(self.phone) - 1

    @classmethod
    def from_model(cls, trans_model: khg.TransitionModel) -> "TransitionTables":
        tuples = _parse_tuples(str(trans_model), trans_model.num_transition_states)
        id2state = np.asarray(trans_model.id2state, dtype=np.int64)
        state2id = np.asarray(trans_model.state2id, dtype=np.int64)
        n = trans_model.num_transition_ids
        tids = np.arange(n + 1)
        tstate = id2state[: n + 1].copy()
        tstate[0] = 0
        trans_index = tids - state2id[tstate]
        trans_index[0] = 0
        phone = tuples[tstate, 0]
        hmm_state = tuples[tstate, 1]
        self_loop = np.zeros(n + 1, dtype=bool)
        final = np.zeros(n + 1, dtype=bool)
        for t in range(1, n + 1):
            self_loop[t] = trans_model.is_self_loop(t)
            final[t] = trans_model.is_final(t)
        topo = trans_model.topo
        # pdf-class per (phone, hmm_state, self-loop?) from the topology
        pdf_class = np.full(n + 1, -1, dtype=np.int64)
        entries: dict[int, list] = {}
        for t in range(1, n + 1):
            ph = int(phone[t])
            if ph not in entries:
                entries[ph] = topo.topology_for_phone(ph)
            st = entries[ph][int(hmm_state[t])]
            pdf_class[t] = st.self_loop_pdf_class if self_loop[t] else st.forward_pdf_class
        pdf = np.where(self_loop, tuples[tstate, 3], tuples[tstate, 2])
        pdf[0] = -1
        phone[0] = 0
        return cls(phone=phone, hmm_state=hmm_state, trans_index=trans_index, pdf_class=pdf_class, pdf=pdf,
                   tstate=tstate, self_loop=self_loop, final=final, tuples=tuples, state2id=state2id)


_TUPLES_RE = re.compile(r"<(Triples|Tuples)>\s+(\d+)")


def _parse_tuples(text: str, num_tstates: int) -> np.ndarray:
    m = _TUPLES_RE.search(text)
    if m is None:
        raise SenoneError("transition model text has no <Triples>/<Tuples> section; unsupported kaldi-hmm-gmm version")
    kind, count = m.group(1), int(m.group(2))
    width = 3 if kind == "Triples" else 4
    vals = np.array(text[m.end():].split(maxsplit=count * width)[: count * width], dtype=np.int64).reshape(count, width)
    if count != num_tstates:
        raise SenoneError(f"transition model lists {count} tuples but has {num_tstates} transition states")
    out = np.zeros((count + 1, 4), dtype=np.int64)
    out[1:, :3] = vals[:, :3]
    out[1:, 3] = vals[:, 2] if width == 3 else vals[:, 3]
    return out


# --------------------------------------------------------------------------------------------
# Cutting alignments into phones
# --------------------------------------------------------------------------------------------

def is_reordered(tables: TransitionTables, tids: np.ndarray, utt_start: np.ndarray | None = None) -> bool:
    """Kaldi's ``IsReordered``: at the first change of transition state next to a self-loop, is the
    self-loop the last frame of the old state's visit (reordered: forward transition first, then the
    self-loops) or the first frame of the new one? True when nothing decides it."""
    tids = np.asarray(tids)
    if len(tids) < 2:
        return True
    ts = tables.tstate[tids]
    sl = tables.self_loop[tids]
    change = ts[1:] != ts[:-1]
    if utt_start is not None:
        change &= ~utt_start[1:]
    decisive = np.flatnonzero(change & (sl[1:] | sl[:-1]))
    if decisive.size == 0:
        return True
    return bool(sl[decisive[0]])


def split_to_phones(tables: TransitionTables, tids: np.ndarray, utt_start: np.ndarray,
                    reordered: bool) -> tuple[np.ndarray, np.ndarray]:
    """Kaldi's ``SplitToPhones`` for a batch of concatenated alignments.

    ``utt_start`` marks each utterance's first frame. Returns (phone_start, ok): a bool array
    marking the first frame of every phone instance, and per frame whether its utterance ended
    on a phone boundary (a well-formed alignment; Kaldi skips the others).
    """
    tids = np.asarray(tids)
    n = len(tids)
    fin = tables.final[tids]
    if reordered:
        ts = tables.tstate[tids]
        sl = tables.self_loop[tids]
        # a frame continues its state's visit when it is a self-loop of the previous frame's state
        cont = np.zeros(n, dtype=bool)
        cont[1:] = sl[1:] & (ts[1:] == ts[:-1]) & ~utt_start[1:]
        head = np.where(~cont, np.arange(n), 0)
        np.maximum.accumulate(head, out=head)
        last_of_visit = np.ones(n, dtype=bool)
        last_of_visit[:-1] = ~cont[1:]
        phone_end = fin[head] & last_of_visit
    else:
        phone_end = fin.copy()
    phone_start = utt_start.copy()
    phone_start[1:] |= phone_end[:-1]
    # an utterance is well formed when its last frame ends a phone
    utt_id = np.cumsum(utt_start) - 1
    utt_last = np.ones(n, dtype=bool)
    utt_last[:-1] = utt_start[1:]
    bad_utts = np.unique(utt_id[utt_last & ~phone_end])
    ok = ~np.isin(utt_id, bad_utts)
    return phone_start, ok


def phone_windows(phones_of_instances: np.ndarray, utt_of_instances: np.ndarray, context_width: int,
                  central_position: int) -> np.ndarray:
    """(num_instances, N) phone windows: neighbours within the same utterance, 0 beyond its edges."""
    m = len(phones_of_instances)
    out = np.zeros((m, context_width), dtype=np.int64)
    for j in range(context_width):
        off = j - central_position
        if off == 0:
            out[:, j] = phones_of_instances
            continue
        src = np.arange(m) + off
        valid = (src >= 0) & (src < m)
        src_c = np.clip(src, 0, max(m - 1, 0))
        valid &= utt_of_instances[src_c] == utt_of_instances
        out[:, j] = np.where(valid, phones_of_instances[src_c], 0)
    return out


# --------------------------------------------------------------------------------------------
# The statistics
# --------------------------------------------------------------------------------------------

@dataclass
class TreeStats:
    """Single-Gaussian statistics per event (Kaldi's ``BuildTreeStatsType`` of ``GaussClusterable``).

    ``events`` is (E, N+1) int32: the phones at context positions 0..N-1 (-1 where the key is absent,
    i.e. around a context-independent central phone) and, last, the pdf-class. Rows are unique and
    sorted by event code.
    """

    context_width: int
    central_position: int
    events: np.ndarray
    count: np.ndarray
    sum: np.ndarray
    sumsq: np.ndarray
    var_floor: float = DEFAULT_VAR_FLOOR
    num_utts: int = 0
    num_skipped: int = 0

    @classmethod
    def empty(cls, dim: int, context_width: int = 3, central_position: int = 1,
              var_floor: float = DEFAULT_VAR_FLOOR) -> "TreeStats":
        return cls(context_width, central_position, np.zeros((0, context_width + 1), dtype=np.int32),
                   np.zeros(0), np.zeros((0, dim)), np.zeros((0, dim)), var_floor)

    @property
    def dim(self) -> int:
        return int(self.sum.shape[1])

    @property
    def num_events(self) -> int:
        return int(self.events.shape[0])

    @property
    def num_frames(self) -> float:
        return float(self.count.sum())

    def key_column(self, key: int) -> np.ndarray:
        """Values of event key ``key`` (-1 = pdf-class, 0..N-1 = context positions) per event."""
        return self.events[:, self.context_width if key == -1 else key]

    def phones(self) -> list[int]:
        """Central phones that have statistics."""
        return np.unique(self.key_column(self.central_position)).tolist()

    def add(self, other: "TreeStats") -> "TreeStats":
        """Sum another shard's statistics into these (Kaldi's ``sum-tree-stats``); returns self."""
        if other.num_events == 0:
            self.num_utts += other.num_utts
            self.num_skipped += other.num_skipped
            return self
        if (other.context_width, other.central_position) != (self.context_width, self.central_position):
            raise SenoneError(f"tree statistics with context {other.context_width}/{other.central_position} cannot be "
                              f"added to {self.context_width}/{self.central_position}; accumulate with the same N and P")
        if self.num_events and other.dim != self.dim:
            raise SenoneError(f"tree statistics of dimension {other.dim} cannot be added to dimension {self.dim}")
        if self.num_events == 0:
            self.sum = np.zeros((0, other.dim))
            self.sumsq = np.zeros((0, other.dim))
        events = np.concatenate([self.events, other.events])
        self.events, (self.count, self.sum, self.sumsq) = _reduce_by_event(
            events, [np.concatenate([self.count, other.count]), np.concatenate([self.sum, other.sum]),
                     np.concatenate([self.sumsq, other.sumsq])])
        self.num_utts += other.num_utts
        self.num_skipped += other.num_skipped
        return self

    def save(self, path: str | Path) -> None:
        """Write as ``.npz`` (atomically)."""
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, context_width=self.context_width, central_position=self.central_position,
                         events=self.events, count=self.count, sum=self.sum, sumsq=self.sumsq,
                         var_floor=self.var_floor, num_utts=self.num_utts, num_skipped=self.num_skipped)

    @classmethod
    def load(cls, path: str | Path) -> "TreeStats":
        path = require_file(path, "tree statistics (acc-tree-stats)")
        try:
            with np.load(path) as z:
                return cls(int(z["context_width"]), int(z["central_position"]), z["events"].astype(np.int32),
                           z["count"].astype(np.float64), z["sum"].astype(np.float64), z["sumsq"].astype(np.float64),
                           float(z["var_floor"]), int(z["num_utts"]), int(z["num_skipped"]))
        except (KeyError, ValueError, OSError) as exc:
            raise SenoneError(f"{path}: not a senone tree-statistics file ({exc}); re-run the tree statistics") from exc


def _event_codes(events: np.ndarray) -> np.ndarray:
    """One int64 per event row (mixed radix over the shifted columns), order-preserving."""
    ev = events.astype(np.int64) + 1  # -1 (absent key) -> 0
    radix = int(ev.max()) + 1 if ev.size else 1
    if radix ** ev.shape[1] >= 2 ** 62:
        raise SenoneError(f"phone ids up to {radix - 2} are too large to encode tree events; renumber the phones")
    code = np.zeros(ev.shape[0], dtype=np.int64)
    for j in range(ev.shape[1]):
        code = code * radix + ev[:, j]
    return code


def _reduce_by_event(events: np.ndarray, arrays: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
    """Sum rows of ``arrays`` that share an event; events come back unique, in code order."""
    codes = _event_codes(events)
    order = np.argsort(codes, kind="stable")
    sorted_codes = codes[order]
    starts = np.flatnonzero(np.r_[True, sorted_codes[1:] != sorted_codes[:-1]])
    out = [np.add.reduceat(a[order], starts, axis=0) if len(a) else a for a in arrays]
    return events[order[starts]].astype(np.int32), out


def accumulate_batch(tables: TransitionTables, alignments: Sequence[np.ndarray], feats: Sequence[np.ndarray], *,
                     context_width: int = 3, central_position: int = 1, ci_phones: Iterable[int] = (),
                     reordered: bool | None = None, var_floor: float = DEFAULT_VAR_FLOOR,
                     names: Sequence[str] | None = None) -> TreeStats:
    """Tree statistics of a batch of utterances (aligned transition-ids and their T × D features)."""
    dim = int(feats[0].shape[1]) if len(feats) else 0
    keep_a, keep_f = [], []
    skipped = 0
    for i, (ali, x) in enumerate(zip(alignments, feats)):
        if len(ali) != x.shape[0] or len(ali) == 0:
            skipped += 1
            log.warning("%s: %d alignment frames but %d feature frames; utterance skipped",
                        names[i] if names else f"utterance {i}", len(ali), x.shape[0])
            continue
        keep_a.append(np.asarray(ali, dtype=np.int64))
        keep_f.append(x)
    stats = TreeStats.empty(dim, context_width, central_position, var_floor)
    stats.num_skipped = skipped
    if not keep_a:
        return stats
    tids = np.concatenate(keep_a)
    if tids.min() < 1 or tids.max() > tables.num_transition_ids:
        raise SenoneError(f"alignment has transition-id {int(tids.max() if tids.max() > tables.num_transition_ids else tids.min())} "
                          f"outside 1..{tables.num_transition_ids}: alignments and model do not match")
    lengths = np.array([len(a) for a in keep_a])
    utt_start = np.zeros(len(tids), dtype=bool)
    utt_start[np.r_[0, np.cumsum(lengths)[:-1]]] = True
    if reordered is None:
        reordered = is_reordered(tables, tids, utt_start)
    phone_start, ok = split_to_phones(tables, tids, utt_start, reordered)
    bad = int(len(lengths) - np.unique((np.cumsum(utt_start) - 1)[ok]).size)
    if bad:
        log.warning("%d alignments do not end on a phone boundary (bad alignments); skipped as Kaldi does", bad)
    stats.num_skipped += bad

    inst = np.cumsum(phone_start) - 1                     # phone instance per frame
    first = np.flatnonzero(phone_start)
    inst_phone = tables.phone[tids[first]]
    inst_utt = (np.cumsum(utt_start) - 1)[first]
    windows = phone_windows(inst_phone, inst_utt, context_width, central_position)
    ci = np.asarray(sorted(set(ci_phones)), dtype=np.int64)
    if ci.size:
        is_ci = np.isin(inst_phone, ci)
        for j in range(context_width):
            if j != central_position:
                windows[is_ci, j] = -1
    events = np.empty((len(tids), context_width + 1), dtype=np.int32)
    events[:, :context_width] = windows[inst]
    events[:, context_width] = tables.pdf_class[tids]
    x = np.concatenate(keep_f).astype(np.float64)
    events, x = events[ok], x[ok]
    stats.events, (stats.count, stats.sum, stats.sumsq) = _reduce_by_event(
        events, [np.ones(len(events)), x, x * x])
    stats.num_utts = int(len(lengths)) - bad
    return stats


def _accumulate_shard(utts: list[str]) -> TreeStats:
    s = shared()
    return _accumulate_serial(s["tables"], s["alignments"], s["feats"], utts, **s["opts"])


def _accumulate_serial(tables: TransitionTables, alignments: Mapping[str, np.ndarray], feats, utts: list[str], *,
                       batch_frames: int, **opts) -> TreeStats:
    total: TreeStats | None = None
    buf_a: list[np.ndarray] = []
    buf_f: list[np.ndarray] = []
    names: list[str] = []
    buffered = 0

    def flush() -> None:
        nonlocal total, buffered
        if buf_a:
            part = accumulate_batch(tables, buf_a, buf_f, names=list(names), **opts)
            total = part if total is None else total.add(part)
        buf_a.clear()
        buf_f.clear()
        names.clear()
        buffered = 0

    for utt in utts:
        ali = alignments[utt]
        buf_a.append(ali)
        buf_f.append(np.asarray(feats[utt]))
        names.append(utt)
        buffered += len(ali)
        if buffered >= batch_frames:
            flush()
    flush()
    if total is None:
        total = TreeStats.empty(0, opts.get("context_width", 3), opts.get("central_position", 1),
                                opts.get("var_floor", DEFAULT_VAR_FLOOR))
    return total


def accumulate_tree_stats(trans_model: khg.TransitionModel, alignments: Mapping[str, np.ndarray], feats, *,
                          context_width: int = 3, central_position: int = 1, ci_phones: Iterable[int] = (),
                          var_floor: float = DEFAULT_VAR_FLOOR, reordered: bool | None = None,
                          batch_frames: int = 100_000, num_jobs: int = 1) -> TreeStats:
    """Kaldi's ``acc-tree-stats``: statistics per (context window, pdf-class) event over a corpus.

    ``alignments`` maps utterance ids to transition-id arrays of ``trans_model``; ``feats`` gives the
    matching T × D features (a dict, or anything with ``keys()`` and ``[utt]``). Utterances without
    features, with a frame-count mismatch or with a malformed alignment are skipped and counted
    (``num_skipped``, and a warning). ``ci_phones`` (Kaldi passes ``phones/context_indep``, i.e. the
    silence phones) get no context keys. ``reordered=None`` detects the self-loop order from the
    alignments. ``num_jobs > 1`` forks workers over shards of the utterances and sums their stats.
    """
    tables = TransitionTables.from_model(trans_model)
    feat_keys = set(feats.keys())
    utts = [u for u in alignments if u in feat_keys]
    missing = len(alignments) - len(utts)
    if missing:
        log.warning("%d aligned utterances have no features; skipped", missing)
    if not utts:
        raise SenoneError("no utterance has both an alignment and features: are the alignments from the same corpus?")
    if reordered is None:
        probe = [np.asarray(alignments[u]) for u in utts[:50]]
        cat = np.concatenate(probe)
        starts = np.zeros(len(cat), dtype=bool)
        starts[np.r_[0, np.cumsum([len(a) for a in probe])[:-1]]] = True
        reordered = is_reordered(tables, cat, starts)
    opts = dict(context_width=context_width, central_position=central_position, ci_phones=tuple(ci_phones),
                reordered=reordered, var_floor=var_floor)
    stats = sum_shards(_accumulate_shard, utts, num_jobs, tables=tables, alignments=alignments, feats=feats,
                       opts=dict(opts, batch_frames=batch_frames))
    stats.num_skipped += missing
    if stats.num_events == 0:
        raise SenoneError("tree statistics are empty: every utterance was skipped (see the warnings above)")
    log.info("tree statistics: %d events over %.0f frames of %d utterances (%d skipped)", stats.num_events,
             stats.num_frames, stats.num_utts, stats.num_skipped)
    return stats


# --------------------------------------------------------------------------------------------
# The Gaussian likelihood (Kaldi's GaussClusterable::Objf), vectorised over rows
# --------------------------------------------------------------------------------------------

_LOG_2PI = float(np.log(2.0 * np.pi))


def gauss_objf(count: np.ndarray, s1: np.ndarray, s2: np.ndarray, var_floor: float) -> np.ndarray:
    """Log-likelihood of each row's data under its own ML Gaussian (diagonal, variance floored).

    Kaldi's ``GaussClusterable::Objf``: count · (−½ Σ_d var_d/floored_d − ½ Σ_d log floored_d − ½ D log 2π);
    0 for rows without data.
    """
    count = np.asarray(count, dtype=np.float64)
    s1 = np.atleast_2d(s1)
    s2 = np.atleast_2d(s2)
    pos = count > 1e-10
    n = np.where(pos, count, 1.0)[:, None]
    mean = s1 / n
    var = s2 / n - mean * mean
    floored = np.maximum(var, var_floor)
    per_frame = -0.5 * (var / floored).sum(axis=1) - 0.5 * (np.log(floored).sum(axis=1) + _LOG_2PI * s1.shape[1])
    return np.where(pos, per_frame * count, 0.0)
