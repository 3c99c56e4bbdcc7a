"""FST helpers that kaldifst 1.7.17 lacks: array views of whole FSTs, ``fstrmsymbols``, stochasticity.

kaldifst exposes OpenFst's algorithms but only a per-arc Python iterator and no mutable arc
iterator, so rewriting the labels of a multi-million-arc HCLG arc by arc from Python would take
minutes. Instead we move whole FSTs between OpenFst and numpy through OpenFst's own binary formats:

* FST -> arrays: kaldifst converts to a ``ConstFst`` in C++ and writes it; a ConstFst file is a
  header, a fixed-stride state table and one contiguous arc table, which numpy reads without a loop.
* arrays -> FST: we lay out the ``VectorFst`` binary format (per state: final weight, arc count,
  arcs) with vectorised index arithmetic and let kaldifst read it back.

Both formats are OpenFst's stable on-disk formats (version 2 for ``vector`` and ``const``), so the
result is exactly what OpenFst's own tools would produce. A round trip of a 5M-arc graph takes a
few seconds, dominated by disk I/O of the temporary files.
"""

from __future__ import annotations

import logging
import os
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Literal

import kaldifst
import numpy as np

from senone import SenoneError
from senone.io import atomic_path

log = logging.getLogger(__name__)

_FST_MAGIC = 2125659606
_HAS_ISYMBOLS = 0x1
_HAS_OSYMBOLS = 0x2
_IS_ALIGNED = 0x4
_FILE_ALIGN = 16  # OpenFst's MappedFile::kArchAlignment for aligned ConstFst files

# OpenFst property bits that depend on labels (acceptor, determinism, epsilons, sortedness). Any
# relabelling must clear them so OpenFst recomputes them instead of trusting stale values.
_LABEL_DEPENDENT_PROPS = (
    0x30000  # kAcceptor | kNotAcceptor
    | 0xC0000  # kIDeterministic | kNonIDeterministic
    | 0x300000  # kODeterministic | kNonODeterministic
    | 0xC00000  # kEpsilons | kNoEpsilons
    | 0x3000000  # kIEpsilons | kNoIEpsilons
    | 0xC000000  # kOEpsilons | kNoOEpsilons
    | 0x30000000  # kILabelSorted | kNotILabelSorted
    | 0xC0000000  # kOLabelSorted | kNotOLabelSorted
)
_KEEP_BINARY_PROPS = 0x3  # kExpanded | kMutable


@dataclass
class FstArrays:
    """A tropical-weight FST as flat numpy arrays (CSR layout: arcs of state s are
    ``arc_start[s]:arc_start[s+1]``). Weights are costs (negated log-probabilities); ``inf`` = zero."""

    start: int
    final: np.ndarray  # float32[num_states]
    arc_start: np.ndarray  # int64[num_states + 1]
    ilabel: np.ndarray  # int32[num_arcs]
    olabel: np.ndarray  # int32[num_arcs]
    weight: np.ndarray  # float32[num_arcs]
    nextstate: np.ndarray  # int32[num_arcs]

    @property
    def num_states(self) -> int:
        return int(self.final.shape[0])

    @property
    def num_arcs(self) -> int:
        return int(self.ilabel.shape[0])

    def arc_state(self) -> np.ndarray:
        """Source state of every arc (int64[num_arcs])."""
        return np.repeat(np.arange(self.num_states, dtype=np.int64), np.diff(self.arc_start))


# ----------------------------------------------------------------------------------------------
# Reading and writing
# ----------------------------------------------------------------------------------------------


def read_fst(path: str | os.PathLike) -> kaldifst.StdVectorFst:
    """Read a binary OpenFst ``vector`` FST (tropical weights), with a one-line error if it fails."""
    path = Path(path)
    if not path.is_file():
        raise SenoneError(f"{path}: FST not found; run the stage that builds it first")
    fst = kaldifst.StdVectorFst.read(str(path))
    if fst is None:
        raise SenoneError(
            f"{path}: not a readable OpenFst vector FST with standard (tropical) arcs; "
            "rebuild it (kaldifst can read 'vector' FSTs only, not 'const')"
        )
    return fst


def write_fst(fst: kaldifst.StdFst, path: str | os.PathLike) -> Path:
    """Write ``fst`` in OpenFst binary form atomically (temp file, then rename)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        if not fst.write(str(tmp)):
            raise SenoneError(f"{path}: OpenFst failed to write the FST (disk full or read-only?)")
    return path


def _strip_symbol_tables(fst: kaldifst.StdFst) -> kaldifst.StdFst:
    if fst.input_symbols is None and fst.output_symbols is None:
        return fst
    fst = kaldifst.StdVectorFst(fst)
    fst.input_symbols = None
    fst.output_symbols = None
    return fst


def _read_header(buf: bytes | memoryview) -> tuple[dict, int]:
    """Parse an OpenFst FstHeader; return its fields and the offset just after it."""
    pos = 0

    def take(fmt: str):
        nonlocal pos
        vals = struct.unpack_from(fmt, buf, pos)
        pos += struct.calcsize(fmt)
        return vals[0] if len(vals) == 1 else vals

    def take_str() -> str:
        nonlocal pos
        n = take("<i")
        s = bytes(buf[pos : pos + n]).decode("ascii")
        pos += n
        return s

    magic = take("<i")
    if magic != _FST_MAGIC:
        raise SenoneError("FST binary has a bad magic number (not an OpenFst file)")
    hdr = {"fst_type": take_str(), "arc_type": take_str()}
    hdr["version"], hdr["flags"] = take("<ii")
    hdr["properties"], hdr["start"], hdr["num_states"], hdr["num_arcs"] = take("<Qqqq")
    return hdr, pos


def _header_bytes(fst_type: str, arc_type: str, version: int, flags: int, props: int, start: int,
                  num_states: int, num_arcs: int) -> bytes:
    out = [struct.pack("<i", _FST_MAGIC)]
    for s in (fst_type, arc_type):
        b = s.encode("ascii")
        out += [struct.pack("<i", len(b)), b]
    out.append(struct.pack("<iiQqqq", version, flags, props, start, num_states, num_arcs))
    return b"".join(out)


def fst_to_arrays(fst: kaldifst.StdFst) -> FstArrays:
    """Copy a whole FST into numpy arrays (one C++ conversion + one temporary file, no Python loop)."""
    fst = _strip_symbol_tables(fst)
    const = kaldifst.StdConstFst(fst)
    with tempfile.TemporaryDirectory(prefix="senone-fst-") as tmpdir:
        tmp = os.path.join(tmpdir, "c.fst")
        if not const.write(tmp):
            raise SenoneError(f"{tmpdir}: could not write a temporary FST (disk full?)")
        with open(tmp, "rb") as f:
            buf = f.read()
    hdr, pos = _read_header(buf)
    if hdr["fst_type"] != "const" or hdr["arc_type"] != "standard" or hdr["version"] != 2:
        raise SenoneError(f"unexpected ConstFst layout {hdr['fst_type']}/{hdr['arc_type']} v{hdr['version']}")
    aligned = bool(hdr["flags"] & _IS_ALIGNED)
    num_states, num_arcs = hdr["num_states"], hdr["num_arcs"]

    def align(p: int) -> int:
        return -(-p // _FILE_ALIGN) * _FILE_ALIGN if aligned else p

    pos = align(pos)
    # ConstState: final weight (float32), pos, narcs, niepsilons, noepsilons (uint32 each).
    states = np.frombuffer(buf, dtype=np.uint32, count=5 * num_states, offset=pos).reshape(num_states, 5)
    pos = align(pos + 20 * num_states)
    # StdArc: ilabel, olabel (int32), weight (float32), nextstate (int32).
    arcs = np.frombuffer(buf, dtype=np.int32, count=4 * num_arcs, offset=pos).reshape(num_arcs, 4)
    arc_start = np.empty(num_states + 1, dtype=np.int64)
    arc_start[:-1] = states[:, 1]
    arc_start[-1] = num_arcs
    if num_states and not np.array_equal(np.diff(arc_start), states[:, 2].astype(np.int64)):
        raise SenoneError("ConstFst state table is not contiguous; unexpected OpenFst layout")
    return FstArrays(
        start=int(hdr["start"]),
        final=states[:, 0].view(np.float32).copy(),
        arc_start=arc_start,
        ilabel=arcs[:, 0].copy(),
        olabel=arcs[:, 1].copy(),
        weight=arcs[:, 2].view(np.float32).copy(),
        nextstate=arcs[:, 3].copy(),
    )


def arrays_to_fst(arrays: FstArrays, properties: int = 0) -> kaldifst.StdVectorFst:
    """Build a ``StdVectorFst`` from arrays by writing OpenFst's vector binary format.

    ``properties``: OpenFst property bits known to hold (0 = all unknown; OpenFst recomputes
    what an algorithm needs). Only pass bits you are sure of.
    """
    n_s, n_a = arrays.num_states, arrays.num_arcs
    narcs = np.diff(arrays.arc_start)
    # Body as int32 words: per state [final, narcs_lo, narcs_hi, 4 words per arc...].
    body = np.zeros(3 * n_s + 4 * n_a, dtype=np.int32)
    state_word = 3 * np.arange(n_s, dtype=np.int64) + 4 * arrays.arc_start[:-1]
    body[state_word] = arrays.final.astype(np.float32).view(np.int32)
    body[state_word + 1] = (narcs & 0xFFFFFFFF).astype(np.uint32).view(np.int32)
    body[state_word + 2] = (narcs >> 32).astype(np.int32)
    arc_word = np.repeat(state_word + 3 - 4 * arrays.arc_start[:-1], narcs) + 4 * np.arange(n_a, dtype=np.int64)
    body[arc_word] = arrays.ilabel
    body[arc_word + 1] = arrays.olabel
    body[arc_word + 2] = arrays.weight.astype(np.float32).view(np.int32)
    body[arc_word + 3] = arrays.nextstate
    header = _header_bytes("vector", "standard", 2, 0, properties | _KEEP_BINARY_PROPS, arrays.start, n_s, n_a)
    with tempfile.TemporaryDirectory(prefix="senone-fst-") as tmpdir:
        tmp = os.path.join(tmpdir, "v.fst")
        with open(tmp, "wb") as f:
            f.write(header)
            f.write(body.astype("<i4", copy=False).tobytes())
        fst = kaldifst.StdVectorFst.read(tmp)
    if fst is None:
        raise SenoneError("OpenFst rejected an FST built from arrays (bug in arrays_to_fst)")
    return fst


# ----------------------------------------------------------------------------------------------
# Algorithms kaldifst lacks
# ----------------------------------------------------------------------------------------------


def remove_symbols(
    fst: kaldifst.StdFst,
    labels: Iterable[int],
    on: Literal["input", "output"] = "input",
) -> kaldifst.StdVectorFst:
    """Replace the given labels by epsilon (0) on one side of ``fst`` — Kaldi's ``fstrmsymbols``.

    mkgraph uses it to delete the disambiguation transition-ids from HCLG after determinization:
    they were only there to make determinization possible, and the decoder must not see them.
    Returns a new FST; state numbering and arc order are unchanged.
    """
    arrays = fst_to_arrays(fst)
    zero_labels(arrays, labels, on)
    return arrays_to_fst(arrays, properties=relabelled_properties(fst))


def zero_labels(arrays: FstArrays, labels: Iterable[int], on: Literal["input", "output"] = "input") -> int:
    """In-place core of :func:`remove_symbols` on arrays; returns how many arcs were relabelled."""
    if on not in ("input", "output"):
        raise ValueError(f"on must be 'input' or 'output', got {on!r}")
    labels = np.asarray(sorted({int(x) for x in labels}), dtype=np.int32)
    if not labels.size:
        return 0
    side = arrays.ilabel if on == "input" else arrays.olabel
    hit = np.isin(side, labels)
    side[hit] = 0
    return int(hit.sum())


def relabelled_properties(fst: kaldifst.StdFst) -> int:
    """``fst``'s known OpenFst properties minus those a relabelling can invalidate."""
    return fst.properties(0xFFFFFFFFFFFF0000, False) & ~_LABEL_DEPENDENT_PROPS


def count_labels(fst: kaldifst.StdFst, labels: Iterable[int], on: Literal["input", "output"] = "input") -> int:
    """Number of arcs whose ``on``-side label is in ``labels`` (e.g. disambiguation ids left in HCLG)."""
    arrays = fst_to_arrays(fst)
    side = arrays.ilabel if on == "input" else arrays.olabel
    return int(np.isin(side, np.asarray(list(labels), dtype=np.int32)).sum())


def stochasticity(fst: kaldifst.StdFst | FstArrays) -> tuple[float, float]:
    """Min and max over states of ``log(sum of arc probs + final prob)`` — what ``fstisstochastic``
    prints. Both near 0 means the FST is stochastic in the log semiring; LG and HCLG built with
    mkgraph's recipe are usually close (Kaldi reports but does not fail on deviations).
    States with neither arcs nor a final weight are skipped."""
    arrays = fst if isinstance(fst, FstArrays) else fst_to_arrays(fst)
    n_s = arrays.num_states
    if n_s == 0:
        return 0.0, 0.0
    neg = -np.concatenate([arrays.weight, arrays.final]).astype(np.float64)
    owner = np.concatenate([arrays.arc_state(), np.arange(n_s, dtype=np.int64)])
    finite = np.isfinite(neg)
    neg, owner = neg[finite], owner[finite]
    mx = np.full(n_s, -np.inf)
    np.maximum.at(mx, owner, neg)
    tot = np.zeros(n_s)
    np.add.at(tot, owner, np.exp(neg - mx[owner]))
    has = np.isfinite(mx)
    if not has.any():
        return 0.0, 0.0
    lse = mx[has] + np.log(tot[has])
    return float(lse.min()), float(lse.max())


def is_stochastic(fst: kaldifst.StdFst | FstArrays, delta: float = 0.01) -> bool:
    """True if every state's outgoing probability mass sums to 1 within ``delta`` (in log space)."""
    lo, hi = stochasticity(fst)
    return lo >= -delta and hi <= delta


def fst_summary(fst: kaldifst.StdFst) -> dict[str, int]:
    """State and arc counts (plus input-epsilon arcs) for logs and ``graph.json``."""
    arrays = fst_to_arrays(fst)
    return {
        "num_states": arrays.num_states,
        "num_arcs": arrays.num_arcs,
        "num_input_epsilon_arcs": int((arrays.ilabel == 0).sum()),
        "num_final_states": int(np.isfinite(arrays.final).sum()),
    }
