"""Pinyin syllable error rates: which CER errors are acoustic and which are homophone choices.

A character error can be an acoustic error (wrong initial/final/tone) or the LM picking the wrong
character among homophones (气/汽 are both ``qi4``). Scoring the pinyin of reference and hypothesis
separates them: the *tonal* syllable error rate counts what the acoustic model got wrong including
tones; the *toneless* rate (tone digit stripped) counts segmental errors only. CER minus tonal
syllable ER is then roughly the homophone share, tonal minus toneless the tone share.

Syllables are pypinyin ``TONE3`` strings (``qi4``), neutral tone written ``5`` (``de5``), ü as
``v`` (``lv4``). Text is converted phrase-aware: each run of CJK characters (between spaces or
Latin tokens) goes to pypinyin as one string, so its phrase dictionary resolves polyphones from
context (银行 ``yin2 hang2``, 行走 ``xing2 zou3``). Latin words and digit strings stay whole
tokens (they match only themselves); noise marks are removed as for CER.

pypinyin's reading of the *reference* can differ from what was spoken (sandhi, neutral tones,
rare polyphones). Where the spoken syllables are known — the synthetic corpus stores the syllables
the synthesiser actually said — pass them as ``ref_syllables`` and only the hypothesis is converted.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Mapping, Sequence

from pypinyin import Style, lazy_pinyin

from senone import SenoneError
from senone.score.error_rate import ScoreResult, ScoringMode, compute_error_rate
from senone.score.tokenize import Tokenizer, is_cjk

__all__ = [
    "TONAL_NAME",
    "TONELESS_NAME",
    "SyllableScores",
    "text_to_syllables",
    "normalize_syllable",
    "parse_syllables",
    "strip_tone",
    "syllable_error_rates",
]

TONAL_NAME = "SylER-tonal"
TONELESS_NAME = "SylER-toneless"

_CHAR_TOKENIZER = Tokenizer("char")
# A tonal pinyin syllable: lower-case letters (v for ü) and one tone digit 1-5.
_TONAL_RE = re.compile(r"([a-z_]+)([1-5])")  # pinyin (qi4) or lexicon phone keys (q_i4)


def _split_pieces(word: str, tokenizer: Tokenizer) -> list[tuple[bool, str]]:
    """Split a whitespace-free word into (is_cjk_run, text) pieces, noise marks removed."""
    pieces: list[tuple[bool, str]] = []
    for tok in tokenizer(word):
        cjk = len(tok) == 1 and is_cjk(tok)
        if cjk and pieces and pieces[-1][0]:
            pieces[-1] = (True, pieces[-1][1] + tok)
        else:
            pieces.append((cjk, tok))
    return pieces


def text_to_syllables(text: str, *, tone_sandhi: bool = False, tokenizer: Tokenizer | None = None) -> list[str]:
    """Convert a transcript (spaces between words optional) to TONE3 syllables, phrase-aware.

    ``tone_sandhi`` applies pypinyin's 一/不/third-tone sandhi rules (off by default: Kaldi-style
    lexicons and pypinyin's dictionary use citation tones). ``tokenizer`` must be a ``char``
    tokenizer; its noise-mark settings apply.
    """
    tokenizer = tokenizer or _CHAR_TOKENIZER
    syllables: list[str] = []
    for word in text.split():
        for cjk, piece in _split_pieces(word, tokenizer):
            if not cjk:
                syllables.append(piece)
                continue
            out = lazy_pinyin(
                piece,
                style=Style.TONE3,
                neutral_tone_with_five=True,
                tone_sandhi=tone_sandhi,
                # Kana/Hangul or ideographs unknown to pypinyin: one token per character.
                errors=lambda chars: list(chars),
            )
            syllables.extend(normalize_syllable(s) if _looks_pinyin(s) else s for s in out)
    return syllables


def _looks_pinyin(s: str) -> bool:
    return bool(s) and s.isascii() and s[-1].isdigit() and s[:-1].isalpha()


def normalize_syllable(syllable: str) -> str:
    """Lower-case, ``ü``/``u:`` → ``v``, and a missing tone digit → ``5`` (neutral).

    Makes supplied syllables (``lü4``, ``LU:4``, ``de``) comparable with pypinyin's ``TONE3``.
    """
    s = syllable.strip().lower().replace("u:", "v").replace("ü", "v")
    if s.isascii() and s.isalpha():
        s += "5"
    return s


def parse_syllables(syllables: str | Sequence[str], tokenizer: Tokenizer | None = None) -> list[str]:
    """Supplied syllables (a space-separated string or a list) → normalised tokens, marks removed."""
    tokenizer = tokenizer or _CHAR_TOKENIZER
    items = syllables.split() if isinstance(syllables, str) else list(syllables)
    return [normalize_syllable(s) for s in items if s.strip() and not tokenizer.is_mark(s.strip())]


def strip_tone(syllable: str) -> str:
    """``qi4`` → ``qi``; tokens that are not tonal syllables (``IPHONE``, ``123``) are unchanged."""
    m = _TONAL_RE.fullmatch(syllable)
    return m.group(1) if m else syllable


@dataclass
class SyllableScores:
    """Tonal and toneless syllable scores of one set, and where the reference syllables came from."""

    tonal: ScoreResult
    toneless: ScoreResult
    ref_source: str  # "supplied" or "pypinyin"
    hyp_source: str = "pypinyin"  # or "decoder path": the pronunciations the decoder chose

    def report_lines(self) -> list[str]:
        """``# ...`` source line, then the tonal and toneless ``%SylER-...`` lines."""
        src = (
            "supplied per utterance (what was spoken)"
            if self.ref_source == "supplied"
            else "pypinyin from the reference text"
        )
        if self.hyp_source == "decoder path":
            head = ("# syllables: lexicon phone keys (initial_final+tone); hypothesis from the decoder's best path, "
                    f"reference {src}")
        else:
            head = f"# syllables: pypinyin TONE3, neutral tone 5; reference syllables {src}"
        return [
            head,
            self.tonal.total.line(),
            self.toneless.total.line(),
        ]


def syllable_error_rates(
    refs: Mapping[str, str],
    hyps: Mapping[str, str],
    *,
    ref_syllables: Mapping[str, str | Sequence[str]] | None = None,
    hyp_syllables: Mapping[str, Sequence[str]] | None = None,
    mode: ScoringMode = "all",
    tone_sandhi: bool = False,
    tokenizer: Tokenizer | None = None,
    log_mismatches: bool = True,
) -> SyllableScores:
    """Tonal and toneless syllable error rates of character hypotheses against references.

    ``refs``/``hyps`` map utterance id → text. With ``ref_syllables`` (utterance id → syllables)
    the reference text is not converted; every scored reference utterance must have an entry.
    With ``hyp_syllables`` (utterance id → syllable tokens, e.g. the lexicon phone keys of the
    decoder's best path from ``senone.decode.phones``) both sides are taken as given tokens in the
    same unit — then ``ref_syllables`` is required — so that the pronunciation the decoder chose,
    not pypinyin's guess, is scored. ``mode`` and ``log_mismatches`` are as in ``compute_error_rate``.
    """
    if hyp_syllables is not None:
        if ref_syllables is None:
            raise SenoneError("hyp_syllables needs ref_syllables in the same unit; pass both")
        lacking = sorted(u for u in refs if u not in ref_syllables)
        if lacking:
            raise SenoneError(f"ref_syllables lacks {len(lacking)} of {len(refs)} utterances (first: {lacking[0]})")
        ref_keys = {u: list(ref_syllables[u]) for u in refs}
        hyp_keys = {u: list(v) for u, v in hyp_syllables.items()}
        return SyllableScores(
            tonal=compute_error_rate(ref_keys, hyp_keys, name=TONAL_NAME, mode=mode, log_mismatches=log_mismatches),
            toneless=compute_error_rate({u: [strip_tone(s) for s in v] for u, v in ref_keys.items()},
                                        {u: [strip_tone(s) for s in v] for u, v in hyp_keys.items()},
                                        name=TONELESS_NAME, mode=mode, log_mismatches=False),
            ref_source="supplied", hyp_source="decoder path")
    tokenizer = tokenizer or _CHAR_TOKENIZER
    if tokenizer.unit != "char":
        raise SenoneError("syllable error rates need a 'char' tokenizer (Mandarin text), not a 'word' one")
    if ref_syllables is not None:
        lacking = sorted(u for u in refs if u not in ref_syllables)
        if lacking:
            raise SenoneError(
                f"ref_syllables lacks {len(lacking)} of {len(refs)} utterances (first: {lacking[0]}); "
                "supply syllables for every reference or pass ref_syllables=None to convert the text"
            )
        ref_tonal = {u: parse_syllables(ref_syllables[u], tokenizer) for u in refs}
    else:
        ref_tonal = {u: text_to_syllables(t, tone_sandhi=tone_sandhi, tokenizer=tokenizer) for u, t in refs.items()}
    hyp_tonal = {u: text_to_syllables(t, tone_sandhi=tone_sandhi, tokenizer=tokenizer) for u, t in hyps.items()}

    tonal = compute_error_rate(ref_tonal, hyp_tonal, name=TONAL_NAME, mode=mode, log_mismatches=log_mismatches)
    toneless = compute_error_rate(
        {u: [strip_tone(s) for s in v] for u, v in ref_tonal.items()},
        {u: [strip_tone(s) for s in v] for u, v in hyp_tonal.items()},
        name=TONELESS_NAME,
        mode=mode,
        log_mismatches=False,
    )
    return SyllableScores(tonal=tonal, toneless=toneless, ref_source="pypinyin" if ref_syllables is None else "supplied")
