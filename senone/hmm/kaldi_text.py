"""Kaldi's text model format (``gmm-copy --binary=false``): writer and reader.

A text ``final.mdl`` is ``TransitionModel::Write`` followed by ``AmDiagGmm::Write`` with
``binary=false``. The rules that make the bytes Kaldi's (kaldi-asr/kaldi: base/io-funcs.cc,
matrix/kaldi-vector.cc, matrix/kaldi-matrix.cc, gmm/diag-gmm.cc, gmm/am-diag-gmm.cc,
hmm/transition-model.cc, util/kaldi-io.h):

- a token is written as ``token`` plus one space; an integer as its digits plus one space;
- a vector as `` [ `` then every element followed by a space, then ``]`` and a newline;
  a matrix as `` [`` then per row a newline, two spaces and the elements each followed by a
  space, then ``]`` and a newline (`` [ ]`` and a newline when empty);
- numbers are printed by ``operator<<`` on a stream that ``InitKaldiOutputStream`` sets to
  precision 7: ``%.7g`` of the float value.

kaldi-hmm-gmm's ``str(TransitionModel)`` is Kaldi's own ``TransitionModel::Write`` but on a
stream of default precision 6; :func:`transition_model_to_text` keeps its structure and prints
its numbers (transition probabilities of the topology, the log-probabilities) at precision 7 from
their exact float values, as ``gmm-copy`` would. kaldi-hmm-gmm has no AmDiagGmm writer at all.

``<GCONSTS>``: Kaldi's ``DiagGmm::Read`` ignores the stored constants and recomputes them
(``ComputeGconsts``, in float) from the parameters it has just read, i.e. from their 7-digit text,
which is not the exact float32 value (7 significant digits do not round-trip a float32). A file whose
constants came from the exact in-memory parameters therefore changes in their last digit when Kaldi
copies it. :func:`diag_gmm_text` writes the constants Kaldi's own ``ComputeGconsts`` (kaldi-hmm-gmm's
build of it) gives for the parameters as Kaldi reads them back, so ``gmm-copy --binary=false`` of the
file reproduces it byte for byte (it is a fixed point of Kaldi's reader and writer; in the rare case
where a float32's 7-digit text reads back as a float whose own 7-digit text differs, the parameter is
written as that fixed point, one unit in the 7th digit away). The in-memory model (``final.pkl``)
keeps the exact values; the two differ by less than float32 resolution in the printed parameters.

The reader parses what the writer (or Kaldi) wrote: :func:`read_model_text` returns the topology
(through kaldi-hmm-gmm's own ``HmmTopology.read``), the transition tuples and log-probabilities,
and an ``AmDiagGmm``. It follows ``DiagGmm::Read``: ``<GCONSTS>`` is optional and is recomputed.
Numbers are read as C's ``strtof`` reads them (correctly rounded to float32).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Iterator

import kaldi_hmm_gmm as khg
import numpy as np

from senone import SenoneError


def kaldi_number(x: float) -> str:
    """One float as Kaldi's text writers print it: ``%.7g`` of the (float32) value."""
    return f"{float(x):.7g}"


def _numbers(values: np.ndarray) -> str:
    return "".join(f"{v:.7g} " for v in np.asarray(values, dtype=np.float32).astype(np.float64).ravel().tolist())


def float32_of_text(texts: list[str]) -> np.ndarray:
    """Decimal strings as float32, correctly rounded (C's ``strtof``, which Kaldi's text reader uses).

    Why not ``np.float32(float(t))``: decimal → double → float rounds twice, and is off by one unit
    when the double lands exactly halfway between two floats although the decimal does not; those
    (rare) cases are settled exactly with :class:`decimal.Decimal`.
    """
    d = np.array([float(t) for t in texts], dtype=np.float64)
    f = d.astype(np.float32)
    back = f.astype(np.float64)
    finite = np.isfinite(d) & np.isfinite(back)
    towards = np.where(d > back, np.inf, -np.inf).astype(np.float32)
    other = np.nextafter(f, towards)
    with np.errstate(invalid="ignore"):
        tie = finite & (d != back) & (np.abs(d - back) == np.abs(other.astype(np.float64) - d))
    for i in np.flatnonzero(tie):
        exact, mid = Decimal(texts[i]), Decimal(float(d[i]))
        if exact != mid:  # the decimal lies strictly on one side of the midpoint the double landed on
            f[i] = max(f[i], other[i]) if exact > mid else min(f[i], other[i])
    return f


def kaldi_text_fixed_point(values: np.ndarray) -> np.ndarray:
    """The float32 values Kaldi holds after reading ``values``' text (``%.7g``) back, taken to the point
    where printing them again gives the same text (one round almost always; the loop is bounded)."""
    flat = np.asarray(values, dtype=np.float32).ravel()
    texts = [f"{v:.7g}" for v in flat.astype(np.float64).tolist()]
    for _ in range(4):
        parsed = float32_of_text(texts)
        again = [f"{v:.7g}" for v in parsed.astype(np.float64).tolist()]
        if again == texts:
            break
        texts = again
    return parsed.reshape(np.shape(values))


def vector_text(v: np.ndarray) -> str:
    """``Vector<float>::Write(os, false)``: `` [ 1 2.5 ]`` and a newline."""
    return " [ " + _numbers(v) + "]\n"


def matrix_text(m: np.ndarray) -> str:
    """``Matrix<float>::Write(os, false)``: `` [``, each row on its own line after two spaces, ``]``."""
    m = np.asarray(m)
    if m.ndim != 2:
        raise SenoneError(f"matrix_text: expected a 2-D matrix, got shape {m.shape}")
    if m.shape[1] == 0:
        return " [ ]\n"
    return " [" + "".join("\n  " + _numbers(row) for row in m) + "]\n"


def kaldi_read_back(gmm: khg.DiagGmm) -> khg.DiagGmm:
    """``gmm`` as Kaldi's ``DiagGmm::Read`` holds it after reading its text: the parameters at their
    7-digit text's float values, the constants recomputed from them by Kaldi's ``ComputeGconsts``."""
    weights, means_invvars, inv_vars = (kaldi_text_fixed_point(np.asarray(x))
                                        for x in (gmm.weights, gmm.means_invvars, gmm.inv_vars))
    back = khg.DiagGmm.__new__(khg.DiagGmm)
    back.__setstate__((weights, inv_vars, means_invvars))  # the parameters as they are, no division
    back.compute_gconsts()
    return back


def diag_gmm_text(gmm: khg.DiagGmm) -> str:
    """``DiagGmm::Write(os, false)`` of ``gmm`` as Kaldi reads it back (see the module docstring:
    ``gmm-copy --binary=false`` of the text reproduces it)."""
    gmm = kaldi_read_back(gmm)
    return ("<DiagGMM> \n"
            "<GCONSTS> " + vector_text(np.asarray(gmm.gconsts)) +
            "<WEIGHTS> " + vector_text(np.asarray(gmm.weights)) +
            "<MEANS_INVVARS> " + matrix_text(np.asarray(gmm.means_invvars)) +
            "<INV_VARS> " + matrix_text(np.asarray(gmm.inv_vars)) +
            "</DiagGMM> \n")


def am_diag_gmm_to_text(am: khg.AmDiagGmm) -> str:
    """``AmDiagGmm::Write(os, false)``: dimension, number of pdfs, then every pdf's DiagGmm."""
    return f"<DIMENSION> {am.dim} <NUMPDFS> {am.num_pdfs} " + "".join(
        diag_gmm_text(am.get_pdf(p)) for p in range(am.num_pdfs))


_TRANSITION = re.compile(r"<Transition> (\d+) (\S+) ")


def transition_model_to_text(tm: khg.TransitionModel) -> str:
    """``TransitionModel::Write(os, false)`` at Kaldi's output precision (see the module docstring)."""
    text = str(tm)
    head, sep, tail = text.partition("<LogProbs> \n")
    if not sep or not tail.startswith(" [") or "</LogProbs> \n" not in tail:
        raise SenoneError("kaldi-hmm-gmm's TransitionModel text has an unexpected layout (no <LogProbs> vector); "
                          "check the pinned kaldi-hmm-gmm version")
    rest = tail[tail.index("</LogProbs> \n"):]
    out: list[str] = []
    lines = head.split("\n")
    entry_phone = None
    i = 0
    while i < len(lines):
        line = lines[i]
        out.append(line)
        if line == "<ForPhones> ":
            phones = lines[i + 1].split()
            entry_phone = int(phones[0]) if phones else None
        elif line.startswith("<State> ") and "<Transition>" in line:
            if entry_phone is None:
                raise SenoneError("TransitionModel text: a <State> outside a topology entry")
            state = int(line.split()[1])
            probs = iter(prob for _dst, prob in tm.topo.topology_for_phone(entry_phone)[state].transitions)
            out[-1] = _TRANSITION.sub(lambda m: f"<Transition> {m.group(1)} {kaldi_number(next(probs))} ", line)
        i += 1
    return "\n".join(out) + sep + vector_text(np.asarray(tm.log_probs, dtype=np.float32)) + rest


def model_to_text(tm: khg.TransitionModel, am: khg.AmDiagGmm) -> str:
    """A whole text ``final.mdl``, as ``gmm-copy --binary=false`` writes it."""
    return transition_model_to_text(tm) + am_diag_gmm_to_text(am)


# --------------------------------------------------------------------------------------------
# Reader
# --------------------------------------------------------------------------------------------

@dataclass
class TextModel:
    """What a text ``final.mdl`` holds."""

    topology: khg.HmmTopology
    tuples: list[tuple[int, ...]]  # (phone, hmm-state, forward pdf[, self-loop pdf])
    log_probs: np.ndarray  # indexed by transition-id (0 unused)
    am: khg.AmDiagGmm


class _Tokens:
    def __init__(self, text: str, where: str):
        self.toks = text.split()
        self.pos = 0
        self.where = where

    def next(self) -> str:
        if self.pos >= len(self.toks):
            raise SenoneError(f"{self.where}: the model text ends early; the file is truncated")
        tok = self.toks[self.pos]
        self.pos += 1
        return tok

    def expect(self, token: str) -> None:
        tok = self.next()
        if tok != token:
            raise SenoneError(f"{self.where}: expected {token}, got {tok!r} (token {self.pos}); not a Kaldi text "
                              "model written by gmm-copy --binary=false")

    def integer(self) -> int:
        tok = self.next()
        try:
            return int(tok)
        except ValueError:
            raise SenoneError(f"{self.where}: expected an integer, got {tok!r} (token {self.pos})") from None

    def vector(self) -> np.ndarray:
        self.expect("[")
        vals: list[str] = []
        while (tok := self.next()) != "]":
            vals.append(tok)
        try:
            return float32_of_text(vals)
        except ValueError as exc:
            raise SenoneError(f"{self.where}: a vector holds a non-number ({exc}, token {self.pos})") from None

    def matrix(self, cols: int) -> np.ndarray:
        flat = self.vector()
        if cols == 0 or flat.size % cols:
            raise SenoneError(f"{self.where}: a matrix of {flat.size} numbers is not a multiple of {cols} columns")
        return flat.reshape(-1, cols)


def _diag_gmm(tok: _Tokens, dim: int) -> khg.DiagGmm:
    opening = tok.next()
    if opening not in ("<DiagGMM>", "<DiagGMMBegin>"):
        raise SenoneError(f"{tok.where}: expected <DiagGMM>, got {opening!r}")
    t = tok.next()
    if t == "<GCONSTS>":
        tok.vector()  # Kaldi recomputes them on reading
        t = tok.next()
    if t != "<WEIGHTS>":
        raise SenoneError(f"{tok.where}: expected <WEIGHTS> or <GCONSTS>, got {t!r}")
    weights = tok.vector()
    tok.expect("<MEANS_INVVARS>")
    means_invvars = tok.matrix(dim)
    tok.expect("<INV_VARS>")
    inv_vars = tok.matrix(dim)
    closing = tok.next()
    if closing not in ("</DiagGMM>", "<DiagGMMEnd>"):
        raise SenoneError(f"{tok.where}: expected </DiagGMM>, got {closing!r}")
    if not (len(weights) == len(means_invvars) == len(inv_vars)):
        raise SenoneError(f"{tok.where}: a DiagGMM with {len(weights)} weights, {len(means_invvars)} mean rows and "
                          f"{len(inv_vars)} variance rows")
    gmm = khg.DiagGmm.__new__(khg.DiagGmm)
    gmm.__setstate__((weights, inv_vars, means_invvars))  # the stored parameters as they are, no division
    gmm.compute_gconsts()
    return gmm


def _sections(text: str, where: str) -> Iterator[str]:
    for name in ("<Topology>", "</Topology>", "<LogProbs>", "</TransitionModel>"):
        if name not in text:
            raise SenoneError(f"{where}: no {name} in the model text; not a Kaldi text model (binary models start "
                              "with \\0B: convert with gmm-copy --binary=false)")
    start, end = text.index("<Topology>"), text.index("</Topology>") + len("</Topology>")
    yield text[start:end]
    yield text[end:text.index("</TransitionModel>")]
    yield text[text.index("</TransitionModel>") + len("</TransitionModel>"):]


def read_model_text(path: str | Path) -> TextModel:
    """Read a Kaldi text ``final.mdl`` (TransitionModel + AmDiagGmm) from a file."""
    path = Path(path)
    if not path.is_file():
        raise SenoneError(f"{path}: model file not found")
    with open(path, "rb") as f:
        if f.read(2) == b"\0B":
            raise SenoneError(f"{path}: a binary Kaldi model; convert it with gmm-copy --binary=false")
    return parse_model_text(path.read_text(encoding="utf-8"), str(path))


def parse_model_text(text: str, where: str = "model text") -> TextModel:
    """Parse the text of a Kaldi text ``final.mdl`` (TransitionModel + AmDiagGmm)."""
    if not text.startswith("<TransitionModel>"):
        raise SenoneError(f"{where}: does not start with <TransitionModel>; not a Kaldi text model")
    topo_text, trans_text, am_text = _sections(text, where)
    topo = khg.HmmTopology()
    try:
        topo.read(topo_text)
    except Exception as exc:  # Kaldi's reader raises with its own message
        raise SenoneError(f"{where}: Kaldi's HmmTopology reader rejected the topology ({exc})") from exc
    tok = _Tokens(trans_text, where)
    kind = tok.next()
    if kind not in ("<Triples>", "<Tuples>"):
        raise SenoneError(f"{where}: expected <Triples> or <Tuples> after the topology, got {kind!r}")
    width = 3 if kind == "<Triples>" else 4
    tuples = [tuple(tok.integer() for _ in range(width)) for _ in range(tok.integer())]
    tok.expect("</Triples>" if width == 3 else "</Tuples>")
    tok.expect("<LogProbs>")
    log_probs = tok.vector()
    tok.expect("</LogProbs>")
    tok = _Tokens(am_text, where)
    tok.expect("<DIMENSION>")
    dim = tok.integer()
    tok.expect("<NUMPDFS>")
    num_pdfs = tok.integer()
    if num_pdfs < 1:
        raise SenoneError(f"{where}: <NUMPDFS> {num_pdfs}; a model needs at least one pdf")
    gmms = [_diag_gmm(tok, dim) for _ in range(num_pdfs)]
    am = khg.AmDiagGmm()
    am.init(gmms[0], 1)
    for gmm in gmms[1:]:
        am.add_pdf(gmm)
    return TextModel(topology=topo, tuples=tuples, log_probs=log_probs, am=am)
