"""The lexicon transducer L (phones → words), which kaldifst lacks, built as Kaldi builds it.

Structure (Kaldi's ``utils/lang/make_lexicon_fst.py`` with silence): a start state, a loop state
where every word begins and ends, and a silence state. From the start state an epsilon arc goes to
the loop state (cost −log(1 − sil_prob)) and another to the silence state (cost −log sil_prob), so
an utterance may open with silence. Each pronunciation is a chain of phone arcs leaving the loop
state; the first arc outputs the word and carries −log(pronunciation probability), and the last phone
either returns to the loop state (no silence follows, −log(1 − sil_prob)) or goes to the silence
state (silence follows, −log sil_prob), from which the silence phone leads back to the loop state.
The loop state is the only final state. With ``sil_prob == 0`` there is no optional silence: one
state is start, loop and final.

For ``L_disambig`` three things are added, again as Kaldi does:

* ``#1..#N`` at the end of pronunciations that are a proper prefix of another pronunciation or
  shared by several words (``add_lex_disambig.pl``), so that L∘G can be determinised;
* one more symbol ``#(N+1)`` after the silence phone (Kaldi's ``--sil-disambig``), which keeps the
  order of silence and disambiguation symbols fixed and avoids a non-determinism of CLG;
* a ``#0:#0`` self-loop at every state that is final or emits a word (here: the loop state;
  Kaldi's ``fstaddselfloops``), which passes G's back-off symbol ``#0`` through L.

Both FSTs are arc-sorted on output labels (``fstarcsort --sort_type=olabel``), as composition with G
and Kaldi's training-graph compiler expect.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Mapping, Sequence

import kaldifst

from senone import SenoneError

Entry = tuple[str, float, tuple[str, ...]]
IntEntry = tuple[int, float, Sequence[int]]


def add_disambig_symbols(entries: Sequence[Entry], first: int = 1) -> tuple[list[Entry], int]:
    """Append ``#k`` to pronunciations that need disambiguation (Kaldi's ``add_lex_disambig.pl``).

    A pronunciation needs one if it is a proper prefix of another pronunciation or if several
    entries share it. Identical pronunciations get ``#first, #first+1, ...`` in entry order; a unique
    prefix gets ``#first``. Returns the new entries and the largest index used (``first - 1`` if none).
    """
    counts = Counter(phones for _, _, phones in entries)
    prefixes = {phones[:i] for phones in counts for i in range(1, len(phones))}
    last_used: dict[tuple[str, ...], int] = {}
    max_disambig = first - 1
    out: list[Entry] = []
    for word, prob, phones in entries:
        if phones in prefixes or counts[phones] > 1:
            k = last_used.get(phones, first - 1) + 1
            last_used[phones] = k
            max_disambig = max(max_disambig, k)
            out.append((word, prob, phones + (f"#{k}",)))
        else:
            out.append((word, prob, phones))
    return out, max_disambig


def _cost(prob: float) -> float:
    return -math.log(prob)


def make_lexicon_fst(
    entries: Sequence[IntEntry],
    *,
    sil_phone: int | None,
    sil_prob: float = 0.5,
    sil_disambig: int | None = None,
) -> kaldifst.StdVectorFst:
    """Build L from integer entries ``(word_id, prob, phone_ids)``; not arc-sorted yet.

    ``sil_phone`` is the optional-silence phone id (ignored, and may be None, when ``sil_prob`` is 0);
    ``sil_disambig`` is the phone id of the symbol placed after the optional silence (L_disambig only).
    """
    if not 0.0 <= sil_prob < 1.0:
        raise SenoneError(f"sil_prob={sil_prob}: must be in [0, 1); Kaldi's default is 0.5")
    fst = kaldifst.StdVectorFst()
    add = fst.add_arc
    Arc = kaldifst.StdArc

    if sil_prob == 0.0:
        loop = fst.add_state()
        fst.start = loop
        fst.set_final(loop, 0.0)
        for word, prob, phones in entries:
            if not phones:
                raise SenoneError(f"word id {word}: empty pronunciation")
            cur = loop
            for i, p in enumerate(phones):
                nxt = loop if i == len(phones) - 1 else fst.add_state()
                add(cur, Arc(p, word if i == 0 else 0, _cost(prob) if i == 0 else 0.0, nxt))
                cur = nxt
        return fst

    if sil_phone is None:
        raise SenoneError("make_lexicon_fst: sil_phone is required when sil_prob > 0")
    sil_cost, no_sil_cost = _cost(sil_prob), _cost(1.0 - sil_prob)
    start, loop, sil = fst.add_state(), fst.add_state(), fst.add_state()
    fst.start = start
    fst.set_final(loop, 0.0)
    add(start, Arc(0, 0, no_sil_cost, loop))
    add(start, Arc(0, 0, sil_cost, sil))
    if sil_disambig is None:
        add(sil, Arc(sil_phone, 0, 0.0, loop))
    else:
        mid = fst.add_state()
        add(sil, Arc(sil_phone, 0, 0.0, mid))
        add(mid, Arc(sil_disambig, 0, 0.0, loop))

    for word, prob, phones in entries:
        if not phones:
            raise SenoneError(f"word id {word}: empty pronunciation")
        pron_cost = _cost(prob)
        cur = loop
        for i, p in enumerate(phones[:-1]):
            nxt = fst.add_state()
            add(cur, Arc(p, word if i == 0 else 0, pron_cost if i == 0 else 0.0, nxt))
            cur = nxt
        last_is_first = len(phones) == 1
        olabel = word if last_is_first else 0
        extra = pron_cost if last_is_first else 0.0
        add(cur, Arc(phones[-1], olabel, no_sil_cost + extra, loop))
        add(cur, Arc(phones[-1], olabel, sil_cost + extra, sil))
    return fst


def add_self_loops(fst: kaldifst.StdVectorFst, ilabel: int, olabel: int) -> None:
    """Add an ``ilabel:olabel`` self-loop at every state that is final or has a non-epsilon output
    arc (Kaldi's ``fstaddselfloops``), in place."""
    zero = kaldifst.TropicalWeight.zero
    targets = []
    for s in range(fst.num_states):
        is_final = fst.final(s) != zero
        emits = any(arc.olabel != 0 for arc in kaldifst.ArcIterator(fst, s))
        if is_final or emits:
            targets.append(s)
    for s in targets:
        fst.add_arc(s, kaldifst.StdArc(ilabel, olabel, 0.0, s))


def _to_ints(entries: Sequence[Entry], phones: Mapping[str, int], words: Mapping[str, int]) -> list[IntEntry]:
    out = []
    for word, prob, pron in entries:
        if word not in words:
            raise SenoneError(f"lexicon word {word!r} missing from words.txt; rebuild the lang dir")
        try:
            out.append((words[word], prob, [phones[p] for p in pron]))
        except KeyError as e:
            raise SenoneError(f"lexicon word {word!r}: phone {e.args[0]!r} missing from phones.txt; rebuild the lang dir") from None
    return out


def lexicon_fst(entries: Sequence[Entry], phones: Mapping[str, int], words: Mapping[str, int], *,
                sil_phone: str, sil_prob: float = 0.5) -> kaldifst.StdVectorFst:
    """L.fst from string entries (no disambiguation symbols), arc-sorted on output labels."""
    fst = make_lexicon_fst(_to_ints(entries, phones, words), sil_phone=phones[sil_phone], sil_prob=sil_prob)
    kaldifst.arcsort(fst, sort_type="olabel")
    return fst


def lexicon_disambig_fst(disambig_entries: Sequence[Entry], phones: Mapping[str, int], words: Mapping[str, int], *,
                         sil_phone: str, sil_disambig: str, sil_prob: float = 0.5,
                         wdisambig: str = "#0") -> kaldifst.StdVectorFst:
    """L_disambig.fst from entries that already carry ``#k`` (see :func:`add_disambig_symbols`):
    silence followed by ``sil_disambig``, ``#0:#0`` self-loops, arc-sorted on output labels."""
    fst = make_lexicon_fst(_to_ints(disambig_entries, phones, words), sil_phone=phones[sil_phone],
                           sil_prob=sil_prob, sil_disambig=phones[sil_disambig] if sil_prob > 0 else None)
    add_self_loops(fst, phones[wdisambig], words[wdisambig])
    kaldifst.arcsort(fst, sort_type="olabel")
    return fst
