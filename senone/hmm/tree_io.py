"""Kaldi's phonetic decision tree (``ContextDependency``) as Python objects, and its file formats.

kaldi-hmm-gmm 1.1.4 can use a triphone tree but cannot build one: of Kaldi's event maps only
``ConstantEventMap`` is constructible from Python. What it does have is Kaldi's own binary reader
behind ``ContextDependency.__setstate__``. So senone keeps the tree here as plain Python objects —
the three EventMap kinds of Kaldi's ``tree/event-map.h`` — writes them in Kaldi's serialisation
(byte-identical to ``ContextDependency::Write``) and hands the bytes to that reader.

An *event* is a set of (key, value) pairs: keys ``0 .. N-1`` are the phones of the context window
(``P`` is the central one; phone 0 means "beyond the utterance edge") and key ``-1`` (Kaldi's
``kPdfClass``) is the pdf-class of the HMM state. The tree maps an event to a pdf-id (a *leaf*).

Kaldi's encoding, as ``WriteToken``/``WriteBasicType`` write it:

- binary: a token is its text followed by one space; an integer is one size byte (its byte width,
  negated for unsigned types) then little-endian bytes; an integer vector is the size byte of the
  element type, an int32 count, then the raw elements. A binary file starts with ``\\0B``.
- text: tokens and integers are each followed by one space; an integer vector is ``[ a b ]``
  and a newline; Table and Split maps end with a newline.

``ContextDependency N P ToPdf <EventMap> EndContextDependency``, with event maps
``CE answer`` | ``TE key size ( entry... )`` | ``SE key yes-set { yes no }`` | ``NULL``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Mapping, Sequence, Union

import kaldi_hmm_gmm as khg
import numpy as np

from senone import SenoneError
from senone.io import atomic_path

#: Kaldi's ``kPdfClass``: the event key of the HMM state's pdf-class.
PDF_CLASS_KEY = -1


# --------------------------------------------------------------------------------------------
# Event maps
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ConstantEventMap:
    """A leaf: every event maps to ``answer`` (a pdf-id)."""

    answer: int


@dataclass(frozen=True)
class TableEventMap:
    """Look the value of ``key`` up in ``table`` (``None`` entries: the event does not map)."""

    key: int
    table: tuple["EventMap | None", ...]


@dataclass(frozen=True)
class SplitEventMap:
    """A yes/no question: is the value of ``key`` in ``yes_set`` (sorted)?"""

    key: int
    yes_set: tuple[int, ...]
    yes: "EventMap"
    no: "EventMap"


EventMap = Union[ConstantEventMap, TableEventMap, SplitEventMap]


def map_event(emap: EventMap, event: Mapping[int, int]) -> int | None:
    """Kaldi's ``EventMap::Map``: the leaf for one event, or ``None`` when it does not map."""
    node: EventMap | None = emap
    while node is not None:
        if isinstance(node, ConstantEventMap):
            return node.answer
        value = event.get(node.key)
        if value is None:
            return None
        if isinstance(node, TableEventMap):
            node = node.table[value] if 0 <= value < len(node.table) else None
        else:
            node = node.yes if value in node.yes_set else node.no
    return None


def map_events(emap: EventMap, columns: Mapping[int, np.ndarray]) -> np.ndarray:
    """Vectorised ``Map`` over many events: ``columns[key]`` holds the value of ``key`` per event
    (negative = key absent). Returns the leaf per event, -1 where an event does not map."""
    n = len(next(iter(columns.values()))) if columns else 0
    out = np.full(n, -1, dtype=np.int64)
    cols = {k: np.asarray(v, dtype=np.int64) for k, v in columns.items()}
    stack: list[tuple[EventMap, np.ndarray]] = [(emap, np.arange(n))]
    while stack:
        node, idx = stack.pop()
        if idx.size == 0:
            continue
        if isinstance(node, ConstantEventMap):
            out[idx] = node.answer
            continue
        col = cols.get(node.key)
        if col is None:
            continue
        vals = col[idx]
        present = vals >= 0
        if isinstance(node, TableEventMap):
            ok = present & (vals < len(node.table))
            idx, vals = idx[ok], vals[ok]
            order = np.argsort(vals, kind="stable")
            idx, vals = idx[order], vals[order]
            uniq, starts = np.unique(vals, return_index=True)
            ends = np.append(starts[1:], len(vals))
            for v, s, e in zip(uniq.tolist(), starts.tolist(), ends.tolist()):
                child = node.table[v]
                if child is not None:
                    stack.append((child, idx[s:e]))
        else:
            yes = np.isin(vals, np.asarray(node.yes_set, dtype=np.int64)) & present
            stack.append((node.yes, idx[yes]))
            stack.append((node.no, idx[~yes & present]))
    return out


def multimap(emap: EventMap, event: Mapping[int, int]) -> set[int]:
    """Kaldi's ``EventMap::MultiMap``: every leaf an event *could* reach when the keys it lacks may
    take any value (used for ``GetPdfInfo``: the pdfs a phone's pdf-class can have in any context)."""
    out: set[int] = set()
    stack: list[EventMap] = [emap]
    while stack:
        node = stack.pop()
        if isinstance(node, ConstantEventMap):
            out.add(node.answer)
            continue
        value = event.get(node.key)
        if isinstance(node, TableEventMap):
            if value is None:
                stack.extend(c for c in node.table if c is not None)
            elif 0 <= value < len(node.table) and node.table[value] is not None:
                stack.append(node.table[value])
        elif value is None:
            stack.extend((node.yes, node.no))
        else:
            stack.append(node.yes if value in node.yes_set else node.no)
    return out


def leaves(emap: EventMap) -> list[int]:
    """All leaf answers in the map, sorted and unique."""
    return sorted(multimap(emap, {}))


def replace_leaves(emap: EventMap, mapping: Mapping[int, EventMap]) -> EventMap:
    """Kaldi's ``EventMap::Copy(new_leaves)``: leaves listed in ``mapping`` become the given maps."""
    if isinstance(emap, ConstantEventMap):
        return mapping.get(emap.answer, emap)
    if isinstance(emap, TableEventMap):
        return TableEventMap(emap.key, tuple(None if c is None else replace_leaves(c, mapping) for c in emap.table))
    return SplitEventMap(emap.key, emap.yes_set, replace_leaves(emap.yes, mapping), replace_leaves(emap.no, mapping))


def renumber_leaves(emap: EventMap) -> tuple[EventMap, dict[int, int]]:
    """Kaldi's ``RenumberEventMap``: leaves become 0..L-1 in the order of their old numbers."""
    old = leaves(emap)
    old2new = {o: n for n, o in enumerate(old)}
    return replace_leaves(emap, {o: ConstantEventMap(n) for o, n in old2new.items()}), old2new


# --------------------------------------------------------------------------------------------
# The tree
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ContextDependencyTree:
    """Kaldi's ``ContextDependency``: context width ``N``, central position ``P`` and the map to pdfs."""

    context_width: int
    central_position: int
    to_pdf: EventMap

    @property
    def num_pdfs(self) -> int:
        """``MaxResult() + 1``, as Kaldi counts pdfs."""
        return max(leaves(self.to_pdf)) + 1

    def compute(self, phone_window: Sequence[int], pdf_class: int) -> int | None:
        """``ContextDependency::Compute``: the pdf-id of ``pdf_class`` of the central phone in context."""
        if len(phone_window) != self.context_width:
            raise ValueError(f"phone window of {len(phone_window)} phones; the tree's context width is {self.context_width}")
        event = {i: int(p) for i, p in enumerate(phone_window)}
        event[PDF_CLASS_KEY] = int(pdf_class)
        return map_event(self.to_pdf, event)

    def compute_many(self, windows: np.ndarray, pdf_classes: np.ndarray) -> np.ndarray:
        """Vectorised ``compute``: ``windows`` is (E, N) phones, ``pdf_classes`` (E,); -1 where unmapped."""
        windows = np.asarray(windows)
        cols = {i: windows[:, i] for i in range(self.context_width)}
        cols[PDF_CLASS_KEY] = np.asarray(pdf_classes)
        return map_events(self.to_pdf, cols)

    def pdf_info(self, phones: Sequence[int], phone2num_pdf_classes: Sequence[int]) -> list[list[tuple[int, int]]]:
        """``ContextDependency::GetPdfInfo``: for each pdf-id, the (phone, pdf-class) pairs that can use it."""
        info: list[set[tuple[int, int]]] = [set() for _ in range(self.num_pdfs)]
        for phone in phones:
            for pdf_class in range(phone2num_pdf_classes[phone]):
                for pdf in multimap(self.to_pdf, {self.central_position: phone, PDF_CLASS_KEY: pdf_class}):
                    info[pdf].add((phone, pdf_class))
        return [sorted(s) for s in info]

    def to_bytes(self, binary: bool = True) -> bytes:
        """Kaldi's ``ContextDependency::Write`` output (without the ``\\0B`` binary-file header)."""
        w = _Writer(binary)
        w.token("ContextDependency")
        w.int32(self.context_width)
        w.int32(self.central_position)
        w.token("ToPdf")
        w.event_map(self.to_pdf)
        w.token("EndContextDependency")
        return w.getvalue()

    def to_kaldi(self) -> khg.ContextDependency:
        """A ``kaldi_hmm_gmm.ContextDependency`` read from our bytes by Kaldi's own binary reader."""
        data = self.to_bytes(binary=True)
        ctx = khg.ContextDependency.__new__(khg.ContextDependency)
        try:
            ctx.__setstate__((np.frombuffer(data, dtype=np.int8).tolist(),))
        except Exception as exc:  # Kaldi's reader raises RuntimeError with its own log text
            raise SenoneError(f"Kaldi rejected the decision tree ({exc}); this is a bug in senone.hmm.tree_io") from exc
        return ctx

    @classmethod
    def from_kaldi(cls, ctx_dep: khg.ContextDependency) -> "ContextDependencyTree":
        """The tree of a loaded ``kaldi_hmm_gmm.ContextDependency`` (through its serialisation)."""
        state = ctx_dep.__getstate__()
        return parse_tree(np.asarray(state[0], dtype=np.int8).tobytes(), binary=True, source="ContextDependency")

    def write(self, path: str | Path, binary: bool = True) -> None:
        """Write a Kaldi ``tree`` file (atomically); Kaldi's ``tree-info``/``draw-tree`` read it."""
        data = (b"\0B" + self.to_bytes(True)) if binary else self.to_bytes(False)
        with atomic_path(path) as tmp:
            Path(tmp).write_bytes(data)

    def to_text(self) -> str:
        """Kaldi's text form (what ``copy-tree --binary=false`` prints)."""
        return self.to_bytes(binary=False).decode("ascii")


def read_tree(path: str | Path) -> ContextDependencyTree:
    """Read a Kaldi ``tree`` file, binary (``\\0B`` header) or text."""
    path = Path(path)
    if not path.is_file():
        raise SenoneError(f"{path}: no such tree file; run the tree-building stage first")
    data = path.read_bytes()
    if data.startswith(b"\0B"):
        return parse_tree(data[2:], binary=True, source=str(path))
    return parse_tree(data, binary=False, source=str(path))


def load_kaldi_tree(path: str | Path) -> khg.ContextDependency:
    """A Kaldi ``tree`` file as a ``kaldi_hmm_gmm.ContextDependency`` (kaldi-hmm-gmm has no reader)."""
    return read_tree(path).to_kaldi()


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------

class _Writer:
    def __init__(self, binary: bool) -> None:
        self.binary = binary
        self.parts: list[bytes] = []

    def getvalue(self) -> bytes:
        return b"".join(self.parts)

    def token(self, tok: str) -> None:
        self.parts.append(tok.encode("ascii") + b" ")

    def int32(self, v: int) -> None:
        self.parts.append(b"\x04" + struct.pack("<i", v) if self.binary else f"{v} ".encode("ascii"))

    def uint32(self, v: int) -> None:
        self.parts.append(b"\xfc" + struct.pack("<I", v) if self.binary else f"{v} ".encode("ascii"))

    def int32_vector(self, values: Sequence[int]) -> None:
        if self.binary:
            self.parts.append(b"\x04" + struct.pack("<i", len(values)) + struct.pack(f"<{len(values)}i", *values))
        else:
            self.parts.append(("[ " + "".join(f"{v} " for v in values) + "]\n").encode("ascii"))

    def newline(self) -> None:
        if not self.binary:
            self.parts.append(b"\n")

    def event_map(self, emap: EventMap | None) -> None:
        # Iterative, so that very deep trees cannot exhaust Python's recursion limit.
        stack: list[EventMap | None | str] = [emap]
        while stack:
            item = stack.pop()
            if isinstance(item, str):  # a closing token
                self.token(item)
                self.newline()
            elif item is None:
                self.token("NULL")
            elif isinstance(item, ConstantEventMap):
                self.token("CE")
                self.int32(item.answer)
            elif isinstance(item, TableEventMap):
                self.token("TE")
                self.int32(item.key)
                self.uint32(len(item.table))
                self.token("(")
                stack.append(")")
                stack.extend(reversed(item.table))
            else:
                self.token("SE")
                self.int32(item.key)
                self.int32_vector(item.yes_set)
                self.token("{")
                stack.append("}")
                stack.extend((item.no, item.yes))


def event_map_bytes(emap: EventMap, binary: bool = True) -> bytes:
    """One event map in Kaldi's serialisation (``EventMap::Write``)."""
    w = _Writer(binary)
    w.event_map(emap)
    return w.getvalue()


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------

class _BinaryReader:
    def __init__(self, data: bytes, source: str) -> None:
        self.data, self.pos, self.source = data, 0, source

    def fail(self, what: str) -> SenoneError:
        return SenoneError(f"{self.source}: not a Kaldi ContextDependency ({what} at byte {self.pos}); "
                           "rewrite it with Kaldi's copy-tree or rebuild the tree")

    def token(self) -> str:
        end = self.data.find(b" ", self.pos)
        if end < 0:
            raise self.fail("unterminated token")
        tok = self.data[self.pos:end].decode("ascii", errors="replace")
        self.pos = end + 1
        return tok

    def peek(self) -> str:
        return chr(self.data[self.pos]) if self.pos < len(self.data) else ""

    def int(self) -> int:
        if self.pos >= len(self.data):
            raise self.fail("truncated integer")
        size = struct.unpack_from("b", self.data, self.pos)[0]
        fmt = {4: "<i", -4: "<I", 8: "<q", -8: "<Q", 2: "<h", -2: "<H", 1: "<b", -1: "<B"}.get(size)
        if fmt is None:
            raise self.fail(f"integer size byte {size}")
        (v,) = struct.unpack_from(fmt, self.data, self.pos + 1)
        self.pos += 1 + abs(size)
        return int(v)

    def int_vector(self) -> list[int]:
        size = struct.unpack_from("b", self.data, self.pos)[0]
        if size != 4:
            raise self.fail(f"integer-vector element size {size}")
        (n,) = struct.unpack_from("<i", self.data, self.pos + 1)
        vals = struct.unpack_from(f"<{n}i", self.data, self.pos + 5)
        self.pos += 5 + 4 * n
        return list(vals)


class _TextReader:
    def __init__(self, data: bytes, source: str) -> None:
        self.toks = data.decode("ascii", errors="replace").split()
        self.pos, self.source = 0, source

    def fail(self, what: str) -> SenoneError:
        return SenoneError(f"{self.source}: not a Kaldi ContextDependency ({what} at token {self.pos}); "
                           "rewrite it with Kaldi's copy-tree or rebuild the tree")

    def token(self) -> str:
        if self.pos >= len(self.toks):
            raise self.fail("unexpected end")
        tok = self.toks[self.pos]
        self.pos += 1
        return tok

    def peek(self) -> str:
        return self.toks[self.pos][0] if self.pos < len(self.toks) else ""

    def int(self) -> int:
        tok = self.token()
        try:
            return int(tok)
        except ValueError:
            raise self.fail(f"expected an integer, got {tok!r}") from None

    def int_vector(self) -> list[int]:
        if self.token() != "[":
            raise self.fail("expected '['")
        out = []
        while (tok := self.token()) != "]":
            out.append(int(tok))
        return out


def _expect(r: _BinaryReader | _TextReader, tok: str) -> None:
    got = r.token()
    if got != tok:
        raise r.fail(f"expected {tok!r}, got {got!r}")


def _read_event_map(r: _BinaryReader | _TextReader) -> EventMap | None:
    tok = r.token()
    if tok == "NULL":
        return None
    if tok == "CE":
        return ConstantEventMap(r.int())
    if tok == "TE":
        key, size = r.int(), r.int()
        _expect(r, "(")
        table = tuple(_read_event_map(r) for _ in range(size))
        _expect(r, ")")
        return TableEventMap(key, table)
    if tok == "SE":
        key = r.int()
        yes_set = tuple(r.int_vector())
        _expect(r, "{")
        yes, no = _read_event_map(r), _read_event_map(r)
        _expect(r, "}")
        if yes is None or no is None:
            raise r.fail("NULL branch in a SplitEventMap")
        return SplitEventMap(key, yes_set, yes, no)
    raise r.fail(f"unknown event-map token {tok!r}")


def parse_tree(data: bytes, binary: bool = True, source: str = "tree") -> ContextDependencyTree:
    """Parse Kaldi's ``ContextDependency`` serialisation (binary without the ``\\0B`` header, or text)."""
    r: _BinaryReader | _TextReader = _BinaryReader(data, source) if binary else _TextReader(data, source)
    try:
        _expect(r, "ContextDependency")
        n, p = r.int(), r.int()
        _expect(r, "ToPdf")
        to_pdf = _read_event_map(r)
        _expect(r, "EndContextDependency")
    except (struct.error, ValueError, IndexError) as exc:  # truncated or corrupt data
        raise r.fail(str(exc)) from exc
    if to_pdf is None:
        raise r.fail("empty ToPdf map")
    return ContextDependencyTree(n, p, to_pdf)


def iter_questions(emap: EventMap) -> Iterator[tuple[int, tuple[int, ...]]]:
    """The (key, yes-set) of every SplitEventMap, root first (for reports and tests)."""
    stack: list[EventMap | None] = [emap]
    while stack:
        node = stack.pop()
        if isinstance(node, SplitEventMap):
            yield node.key, node.yes_set
            stack.extend((node.no, node.yes))
        elif isinstance(node, TableEventMap):
            stack.extend(reversed(node.table))
