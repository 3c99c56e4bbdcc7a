"""Word times from a best path: its alignment cut into phones, the phones matched to the words through the lexicon.

senone's phones are word-position independent, so Kaldi's ``lattice-align-words`` (which reads word boundaries
off ``_B``/``_E`` phones) does not apply; this is ``lattice-align-words-lexicon`` for a single path: the
transition-id alignment is split into phone instances (Kaldi's ``SplitToPhones``,
:mod:`senone.hmm.tree_stats`), and the phone sequence is parsed as the lexicon FST produced it: optional silence
(the lexicon's ``optional_silence`` phone) between words, each word one of its pronunciations. A word's frames run
from its first phone's first frame to its last phone's last frame; the silence between words belongs to no word.

A path that ends inside a word (a partial decode: no final state reached) keeps the words it completed and gives
the unfinished last word the frames that remain. When the phones cannot be parsed at all (a lexicon that is not
the one the graph was built from) the words share the non-silence frames in proportion to their phone count, and
the utterance is flagged ``aligned=False``.

Mandarin with word units (jieba words): :func:`split_characters` gives every character of a CJK word the frames of
its syllable (an optional initial + a tonal final), so a character CTM exists whatever the LM's unit.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from senone import SenoneError

_TONAL_FINAL = re.compile(r"[a-z]+[1-5]")
_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002ffff]")


@dataclass
class WordSpan:
    """One word of a path: frames ``[start, end)``, the phone instances it was aligned to, its confidence."""

    word: str
    start: int
    end: int
    phones: tuple["PhoneSpan", ...] = ()
    confidence: float | None = None


@dataclass(frozen=True)
class PhoneSpan:
    """One phone instance of a path: phone id, frames ``[start, end)``."""

    phone: int
    start: int
    end: int


def phone_spans(tables, alignment: Sequence[int]) -> list[PhoneSpan]:
    """The phone instances of one alignment with their frames (Kaldi's ``ali-to-phones --write-lengths``)."""
    from senone.hmm.tree_stats import is_reordered, split_to_phones

    tids = np.asarray(alignment, dtype=np.int64)
    if tids.size == 0:
        return []
    if tids.min() < 1 or tids.max() > tables.num_transition_ids:
        raise SenoneError("alignment has transition-ids outside the transition model; decode with the matching model")
    utt_start = np.zeros(len(tids), dtype=bool)
    utt_start[0] = True
    reordered = is_reordered(tables, tids, utt_start)
    starts, _ok = split_to_phones(tables, tids, utt_start, reordered)
    first = np.flatnonzero(starts)
    ends = np.append(first[1:], len(tids))
    return [PhoneSpan(int(tables.phone[tids[s]]), int(s), int(e)) for s, e in zip(first, ends)]


class WordAligner:
    """Parses a path's phones into its words (see the module docstring)."""

    def __init__(self, lexicon: Mapping[str, Sequence[Sequence[int]]], silence_phones: Sequence[int],
                 optional_silence: int | None):
        self.prons = {w: [tuple(p) for p in ps] for w, ps in lexicon.items()}
        self.silence = set(silence_phones)
        self.optional_silence = optional_silence

    @classmethod
    def from_files(cls, lexicon_txt: Path, phones_txt: Path, silence: Sequence[str], optional_silence: str | None
                   ) -> "WordAligner":
        from senone.io import read_symbol_table

        phones = read_symbol_table(phones_txt)
        lex: dict[str, list[tuple[int, ...]]] = {}
        with open(lexicon_txt, encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                parts = line.split()
                if not parts:
                    continue
                try:
                    lex.setdefault(parts[0], []).append(tuple(phones[p] for p in parts[1:]))
                except KeyError as exc:
                    raise SenoneError(f"{lexicon_txt}:{lineno}: phone {exc.args[0]!r} is not in {phones_txt}; the "
                                      "lexicon and the graph come from different lang folders: export again") from None
        return cls(lex, [phones[p] for p in silence if p in phones],
                   phones.get(optional_silence) if optional_silence else None)

    def align(self, words: Sequence[str], spans: Sequence[PhoneSpan], num_frames: int) -> tuple[list[WordSpan], bool]:
        """``(word spans, aligned)`` of one path; ``aligned`` is False when the fallback split was used."""
        if not words:
            return [], True
        phones = [s.phone for s in spans]
        n, m = len(phones), len(words)
        # reach[i]: {words done: (previous i, previous words done, pronunciation or None for a silence)}
        reach: list[dict[int, tuple[int, int, tuple[int, ...] | None]]] = [dict() for _ in range(n + 1)]
        reach[0][0] = (-1, -1, None)
        for i in range(n):
            if not reach[i]:
                continue
            for j in list(reach[i]):
                if phones[i] == self.optional_silence and j not in reach[i + 1]:
                    reach[i + 1][j] = (i, j, None)
                if j < m:
                    for pron in self.prons.get(words[j], ()):
                        k = i + len(pron)
                        if k <= n and tuple(phones[i:k]) == pron and (j + 1) not in reach[k]:
                            reach[k][j + 1] = (i, j, pron)
        if m in reach[n]:
            return self._trace(reach, n, m, words, spans), True
        # a partial path: every word parsed and phones left with no word label yet (the graph had not emitted it)
        for i in range(n - 1, 0, -1):
            if m in reach[i]:
                return self._trace(reach, i, m, words, spans), True
        # ... or the last word unfinished: it gets the frames that remain after the others (leading silence skipped)
        for i in range(n - 1, -1, -1):
            if m - 1 in reach[i]:
                done = self._trace(reach, i, m - 1, words, spans)
                rest = list(spans[i:])
                while len(rest) > 1 and rest[0].phone == self.optional_silence:
                    rest = rest[1:]
                done.append(WordSpan(words[-1], rest[0].start, rest[-1].end, tuple(rest)))
                return done, True
        return self._proportional(words, spans, num_frames), False

    def _trace(self, reach, i: int, j: int, words, spans) -> list[WordSpan]:
        out: list[WordSpan] = []
        while i > 0:
            pi, pj, pron = reach[i][j]
            if pron is not None:
                out.append(WordSpan(words[pj], spans[pi].start, spans[i - 1].end, tuple(spans[pi:i])))
            i, j = pi, pj
        return out[::-1]

    def _proportional(self, words, spans, num_frames: int) -> list[WordSpan]:
        """Fallback: words share the speech (non-silence) frames in order, by their shortest pronunciation."""
        speech = [s for s in spans if s.phone not in self.silence] or list(spans)
        lo = speech[0].start if speech else 0
        hi = speech[-1].end if speech else num_frames
        weights = np.array([min((len(p) for p in self.prons.get(w, ())), default=1) for w in words], dtype=float)
        edges = lo + np.round(np.concatenate([[0], np.cumsum(weights)]) / weights.sum() * (hi - lo)).astype(int)
        return [WordSpan(w, int(edges[k]), int(max(edges[k + 1], edges[k] + 1)), ()) for k, w in enumerate(words)]


def split_characters(span: WordSpan, id2phone: Mapping[int, str]) -> list[WordSpan]:
    """A Mandarin word's characters, each with the frames of its syllable (an optional initial + a tonal final).

    When the word's phones (``span.phones``) do not give one syllable per character, its frames are shared evenly.
    """
    chars = list(span.word)
    if len(chars) <= 1 or not all(_CJK.fullmatch(c) for c in chars):
        return [span]
    bounds: list[tuple[int, int]] = []
    if span.phones:
        start = None
        for ps in span.phones:
            if start is None:
                start = ps.start
            if _TONAL_FINAL.fullmatch(id2phone.get(ps.phone, "")):
                bounds.append((start, ps.end))
                start = None
    if len(bounds) != len(chars):
        edges = np.linspace(span.start, span.end, len(chars) + 1).round().astype(int)
        bounds = [(int(edges[k]), int(max(edges[k + 1], edges[k] + 1))) for k in range(len(chars))]
    return [WordSpan(c, s, e, (), span.confidence) for c, (s, e) in zip(chars, bounds)]


def ctm_lines(utt: str, spans: Sequence[WordSpan], frame_shift: float, channel: str = "1") -> list[str]:
    """Kaldi CTM lines ``utt channel start duration word confidence`` (seconds from the utterance's start)."""
    out = []
    for s in spans:
        conf = "" if s.confidence is None else f" {s.confidence:.3f}"
        out.append(f"{utt} {channel} {s.start * frame_shift:.2f} {(s.end - s.start) * frame_shift:.2f} {s.word}{conf}")
    return out
