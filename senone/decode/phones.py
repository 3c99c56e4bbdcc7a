"""The pronunciation a decoder chose: phones of a best-path alignment, grouped into syllables.

Why this exists
---------------
Syllable error rates compare what was *said* with what the decoder *heard*. The reference side is
known exactly on the synthetic corpus (the syllables the synthesiser spoke); converting the
hypothesis characters back to pinyin with pypinyin instead would put pypinyin's citation readings
(一 yi1, 不 bu4, 长/行 heteronyms) on the hypothesis side, so that even a perfect hypothesis scores
4–5 % tonal syllable error. The decoder's best path carries its own answer: every frame has a
transition-id, and the transition-ids name the phones of the pronunciation the decoder picked.

Steps
-----
1. :func:`alignment_to_phones` — Kaldi's ``ali-to-phones``: the transition-id alignment is cut into
   phone instances with Kaldi's ``SplitToPhones`` logic (reused from
   :mod:`senone.hmm.tree_stats`), so two consecutive instances of the same phone (啊啊 ``a1 a1``)
   stay two. The self-loop order (``reorder``) is detected from the alignment as Kaldi does.
2. :func:`phones_to_syllables` — senone's Mandarin phones (:mod:`senone.lang.lexicon`: an optional
   initial followed by a tonal final; zero-initial syllables are a final alone) are grouped into
   syllable *keys*, the phones joined with ``_``: 你 ``n_i3``, 是 ``sh_ix4``, 我 ``uo3``. Silence
   phones (SIL, SPN) are dropped.
3. References given as pinyin map to the same keys with :func:`syllable_key_from_pinyin`
   (``shi4`` → ``sh_ix4``), i.e. through the lexicon's own syllable → phones mapping, so both
   sides are expressed in the unit the acoustic model actually distinguishes.

Keys are canonical: the apical vowel after z/c/s/zh/ch/sh/r is always written ``ix`` (a lexicon
built with ``apical_i=False`` writes it ``i``; the sound is the same), so keys from either kind of
lexicon and from pinyin agree. :func:`strip_tone` drops the tone digit of a key for toneless rates.

Phones that are neither an initial, a Mandarin final nor silence (a user lexicon's English phones)
become tokens of their own (``<AH0>``) rather than vanishing, so a hypothesis that chose them still
pays for it; an initial with no final after it (possible only at the end of a partial decode) is
dropped. Both are counted in :class:`SyllableCounts`.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import kaldi_hmm_gmm as khg
import numpy as np

from senone import SenoneError
from senone.hmm.tree_stats import TransitionTables, is_reordered, split_to_phones
from senone.lang.lexicon import INITIALS, SILENCE_PHONES, syllable_to_phones, valid_syllables
from senone.lang.lexicon import spell_latin as spell_latin_word
from senone.lang.segment import is_latin_word

__all__ = [
    "KEY_SEPARATOR",
    "SyllableCounts",
    "alignment_to_phones",
    "alignments_to_phones",
    "hyp_syllables",
    "hyp_syllables_batch",
    "phones_to_syllables",
    "ref_syllable_keys",
    "strip_tone",
    "syllable_key",
    "syllable_key_from_pinyin",
    "transition_tables",
]

log = logging.getLogger(__name__)

#: Joins the phones of one syllable in its key (``n_i3``). No senone Mandarin phone contains it.
KEY_SEPARATOR = "_"

_INITIALS = frozenset(INITIALS)
_APICAL_INITIALS = frozenset({"z", "c", "s", "zh", "ch", "sh", "r"})
# A final with its tone: lower-case letters (v for ü, ix for the apical vowel) and a digit 1-5.
_TONAL_FINAL = re.compile(r"([a-z]+)([1-5])")


@functools.lru_cache(maxsize=1)
def _finals() -> frozenset[str]:
    """Every toneless final senone's Mandarin lexicon can produce (either ``apical_i`` setting)."""
    out: set[str] = set()
    for base in valid_syllables() | {"n", "ng", "m", "hm", "hng", "r", "ê"}:
        for apical in (True, False):
            try:
                phones = syllable_to_phones(base + "1", apical_i=apical)
            except SenoneError:
                continue
            out.add(phones[-1][:-1])
    return frozenset(out)


def _is_final(phone: str) -> bool:
    m = _TONAL_FINAL.fullmatch(phone)
    return m is not None and m.group(1) in _finals()


# --------------------------------------------------------------------------------------------
# Alignment → phones
# --------------------------------------------------------------------------------------------

# TransitionTables.from_model walks every transition-id through pybind11 (milliseconds to tens of
# milliseconds for a triphone model), so the tables of the few models in use are kept. The model
# object is held with its tables: its id() cannot be reused while the entry lives.
_TABLES_CACHE: dict[int, tuple[khg.TransitionModel, TransitionTables]] = {}
_TABLES_CACHE_SIZE = 4


def transition_tables(trans_model: khg.TransitionModel | TransitionTables) -> TransitionTables:
    """The per-transition-id tables of a transition model (built once per model object)."""
    if isinstance(trans_model, TransitionTables):
        return trans_model
    hit = _TABLES_CACHE.get(id(trans_model))
    if hit is not None and hit[0] is trans_model:
        return hit[1]
    tables = TransitionTables.from_model(trans_model)
    if len(_TABLES_CACHE) >= _TABLES_CACHE_SIZE:
        _TABLES_CACHE.pop(next(iter(_TABLES_CACHE)))
    _TABLES_CACHE[id(trans_model)] = (trans_model, tables)
    return tables


def alignments_to_phones(
    trans_model: khg.TransitionModel | TransitionTables,
    alignments: Mapping[str, Sequence[int] | np.ndarray],
    *,
    reordered: bool | None = None,
) -> dict[str, list[int]]:
    """Kaldi's ``ali-to-phones`` for many utterances in one vectorised pass: utterance → phone ids.

    One entry per phone *instance*, in order. ``reordered`` is the self-loop order of the graph
    that produced the alignments (senone's HCLG and training graphs use Kaldi's default, reordered);
    ``None`` detects it from the alignments as Kaldi's ``IsReordered`` does. An alignment that stops
    inside a phone (a partial decode) keeps that last phone: it is what the decoder chose so far.
    Empty alignments give empty phone lists. Raises SenoneError for transition-ids the model lacks.
    """
    tables = transition_tables(trans_model)
    utts = list(alignments)
    arrays = [np.asarray(alignments[u], dtype=np.int64).ravel() for u in utts]
    lengths = np.array([len(a) for a in arrays], dtype=np.int64)
    out: dict[str, list[int]] = {u: [] for u in utts}
    if lengths.sum() == 0:
        return out
    tids = np.concatenate(arrays)
    lo, hi = int(tids.min()), int(tids.max())
    if lo < 1 or hi > tables.num_transition_ids:
        bad = lo if lo < 1 else hi
        first = next(u for u, a in zip(utts, arrays) if len(a) and (a.min() == bad or a.max() == bad))
        raise SenoneError(f"alignment of {first} has transition-id {bad} outside 1..{tables.num_transition_ids}: "
                          "the alignment was not made with this transition model; decode with the matching final.mdl")
    ends = np.cumsum(lengths)
    starts = ends - lengths
    utt_start = np.zeros(len(tids), dtype=bool)
    utt_start[starts[lengths > 0]] = True
    if reordered is None:
        reordered = is_reordered(tables, tids, utt_start)
    phone_start, _ok = split_to_phones(tables, tids, utt_start, reordered)
    first_frames = np.flatnonzero(phone_start)
    phones = tables.phone[tids[first_frames]]
    # phone instances of utterance i: those whose first frame lies in [starts[i], ends[i])
    bounds = np.searchsorted(first_frames, np.stack([starts, ends]))
    for i, u in enumerate(utts):
        out[u] = phones[bounds[0, i]:bounds[1, i]].tolist()
    return out


def alignment_to_phones(trans_model: khg.TransitionModel | TransitionTables, alignment: Sequence[int] | np.ndarray,
                        *, reordered: bool | None = None) -> list[int]:
    """Kaldi's ``ali-to-phones`` for one utterance: the phone id of every phone instance, in order.

    See :func:`alignments_to_phones`; for many utterances call that (one pass, one detection of the
    self-loop order for all of them).
    """
    return alignments_to_phones(trans_model, {"_": alignment}, reordered=reordered)["_"]


# --------------------------------------------------------------------------------------------
# Phones → syllable keys
# --------------------------------------------------------------------------------------------

def syllable_key(phones: Sequence[str]) -> str:
    """Canonical key of one syllable's phones: ``('n', 'i3')`` → ``n_i3``, ``('uo3',)`` → ``uo3``.

    The apical vowel after z/c/s/zh/ch/sh/r is written ``ix`` whatever the lexicon wrote
    (``('sh', 'i4')`` → ``sh_ix4``), so keys do not depend on the lexicon's ``apical_i`` setting.
    """
    phones = tuple(phones)
    if not phones:
        raise SenoneError("syllable_key: a syllable needs at least one phone")
    if len(phones) == 2 and phones[0] in _APICAL_INITIALS:
        m = _TONAL_FINAL.fullmatch(phones[1])
        if m is not None and m.group(1) == "i":
            phones = (phones[0], "ix" + m.group(2))
    return KEY_SEPARATOR.join(phones)


def syllable_key_from_pinyin(syllable: str) -> str:
    """Key of a tonal pinyin syllable through the lexicon's own mapping: ``shi4`` → ``sh_ix4``,
    ``ni3`` → ``n_i3``, ``wo3`` → ``uo3``, ``yu2`` → ``v2``, ``de`` → ``d_e5`` (no digit = neutral).
    Raises SenoneError for a token that is not a Mandarin syllable."""
    return syllable_key(syllable_to_phones(syllable))


def strip_tone(key: str) -> str:
    """Drop the tone of a syllable key (``n_i3`` → ``n_i``, ``uo3`` → ``uo``); other tokens
    (``<AH0>``, a Latin word) are returned unchanged."""
    head, sep, last = key.rpartition(KEY_SEPARATOR)
    m = _TONAL_FINAL.fullmatch(last)
    if m is None or m.group(1) not in _finals() or (sep and head not in _INITIALS):
        return key
    return head + sep + m.group(1)


@dataclass
class SyllableCounts:
    """What :func:`phones_to_syllables` met besides well-formed syllables (summed over calls)."""

    syllables: int = 0
    silence: int = 0             # silence/noise phones dropped
    orphan_initials: int = 0     # initials with no final after them, dropped
    foreign_phones: int = 0      # phones outside the Mandarin set, kept as <phone> tokens

    def __iadd__(self, other: "SyllableCounts") -> "SyllableCounts":
        self.syllables += other.syllables
        self.silence += other.silence
        self.orphan_initials += other.orphan_initials
        self.foreign_phones += other.foreign_phones
        return self


def phones_to_syllables(phone_names: Sequence[str], silence: Iterable[str] = SILENCE_PHONES, *,
                        counts: SyllableCounts | None = None) -> list[str]:
    """Group a phone sequence of senone's Mandarin lexicon into syllable keys.

    A syllable is an optional initial followed by one final (the final carries the tone):
    ``n i3 SIL sh ix4 uo3`` → ``['n_i3', 'sh_ix4', 'uo3']``. Phones in ``silence`` are dropped.
    An initial not followed by a final (never on a lexicon path; possible where a partial decode
    stops, or next to silence) is dropped and counted; a phone outside the Mandarin set becomes
    the token ``<phone>``. Latin words spelt by the lexicon come out as their letters' syllables.
    ``counts``, when given, is incremented.
    """
    silence = set(silence)
    c = counts if counts is not None else SyllableCounts()
    out: list[str] = []
    pending: str | None = None
    for p in phone_names:
        if p in _INITIALS:
            if pending is not None:
                c.orphan_initials += 1
            pending = p
            continue
        if _is_final(p):
            out.append(syllable_key((pending, p) if pending is not None else (p,)))
            c.syllables += 1
            pending = None
            continue
        if pending is not None:
            c.orphan_initials += 1
            pending = None
        if p in silence:
            c.silence += 1
        else:
            out.append(f"<{p}>")
            c.foreign_phones += 1
    if pending is not None:
        c.orphan_initials += 1
    return out


# --------------------------------------------------------------------------------------------
# Both sides of the scoring
# --------------------------------------------------------------------------------------------

def _silence_names(silence_phones: Iterable[str | int], id2phone: Mapping[int, str]) -> set[str]:
    return {id2phone[s] if isinstance(s, (int, np.integer)) else s for s in silence_phones}


def hyp_syllables(trans_model: khg.TransitionModel | TransitionTables, alignment: Sequence[int] | np.ndarray,
                  id2phone: Mapping[int, str], silence_phones: Iterable[str | int] = SILENCE_PHONES, *,
                  reordered: bool | None = None, counts: SyllableCounts | None = None) -> list[str]:
    """Syllable keys of the pronunciation on a decoder's best path (one utterance).

    ``id2phone`` is the lang's phone table (``Lang.id2phone``); ``silence_phones`` names or ids.
    """
    phones = alignment_to_phones(trans_model, alignment, reordered=reordered)
    return phones_to_syllables([id2phone[p] for p in phones], _silence_names(silence_phones, id2phone),
                               counts=counts)


def hyp_syllables_batch(trans_model: khg.TransitionModel | TransitionTables,
                        alignments: Mapping[str, Sequence[int] | np.ndarray], id2phone: Mapping[int, str],
                        silence_phones: Iterable[str | int] = SILENCE_PHONES, *,
                        reordered: bool | None = None) -> tuple[dict[str, list[str]], SyllableCounts]:
    """Syllable keys of many best paths (utterance → keys) and what was dropped or kept aside.

    Logs a warning when initials had to be dropped or non-Mandarin phones were met.
    """
    silence = _silence_names(silence_phones, id2phone)
    counts = SyllableCounts()
    phones = alignments_to_phones(trans_model, alignments, reordered=reordered)
    out = {u: phones_to_syllables([id2phone[p] for p in ph], silence, counts=counts) for u, ph in phones.items()}
    if counts.orphan_initials or counts.foreign_phones:
        log.warning("hypothesis syllables: %d initials without a final dropped, %d non-Mandarin phones kept as "
                    "<phone> tokens (of %d syllables)", counts.orphan_initials, counts.foreign_phones,
                    counts.syllables)
    return out, counts


def ref_syllable_keys(ref_syllables: Mapping[str, str | Sequence[str]], *,
                      spell_latin: bool = True) -> tuple[dict[str, list[str]], int]:
    """Reference syllables (utterance → ``"ni3 hao3"`` or a list of tokens) → syllable keys.

    Pinyin syllables go through the lexicon's mapping (:func:`syllable_key_from_pinyin`). With
    ``spell_latin`` a Latin word token (letters with at least one capital: ``IPHONE``, as the text
    normalisation writes them and ``senone.score.text_to_syllables`` keeps them) becomes the keys of
    its Mandarin letter-name spelling, which is what a lexicon built with ``spell_latin_words``
    puts on the decoder's path. Any other token (digits, an unknown word) is kept as itself, so it
    still counts. Returns the keys and the number of tokens that were neither pinyin nor spelt.
    """
    out: dict[str, list[str]] = {}
    bad = 0
    for utt, syls in ref_syllables.items():
        keys: list[str] = []
        for s in (syls.split() if isinstance(syls, str) else syls):
            if spell_latin and is_latin_word(s) and not s.islower():
                keys.extend(phones_to_syllables(spell_latin_word(s), ()))
                continue
            try:
                keys.append(syllable_key_from_pinyin(s))
            except SenoneError:
                keys.append(s)
                bad += 1
        out[utt] = keys
    if bad:
        log.warning("%d reference tokens are not Mandarin pinyin syllables; scored as themselves", bad)
    return out, bad
