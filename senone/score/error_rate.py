"""Error rates over token sequences, counted as Kaldi's ``compute-wer`` counts them.

The edit distance and alignment come from ``kaldialign`` (a port of Kaldi's own Levenshtein code,
unit costs), so the numbers match ``compute-wer`` and ``align-text`` on the same tokens. This module
works on already tokenised sequences; ``senone.score.tokenize`` and ``senone.score.syllables`` make
them, so the same counting serves characters, words and pinyin syllables.

Edge cases, following ``compute-wer``:

* a reference with no tokens still has its insertions counted (against 0 reference tokens);
* the rate of a set with no reference tokens at all is ``nan`` when it has no errors either
  (0 / 0) and ``inf`` when it has insertions, as Kaldi's float division prints them; JSON output
  stores both as ``null`` with a note (see ``ErrorStats.to_dict``);
* a sentence error is an utterance whose token sequences differ.
"""

from __future__ import annotations

import logging
import math
import unicodedata
from dataclasses import dataclass, field
from typing import Literal, Mapping, Sequence

import kaldialign

from senone import SenoneError

__all__ = [
    "EPS",
    "ErrorStats",
    "UttAlignment",
    "ScoreResult",
    "align_tokens",
    "score_utterance",
    "compute_error_rate",
    "format_rate",
    "format_per_utt",
]

log = logging.getLogger(__name__)

#: Gap symbol in alignments, as Kaldi's ``align-text`` prints it.
EPS = "***"

ScoringMode = Literal["all", "present", "strict"]


def format_rate(rate: float) -> str:
    """Format a percentage as ``compute-wer`` does (fixed, two decimals; ``nan``/``inf`` spelled out)."""
    if math.isnan(rate):
        return "nan"
    if math.isinf(rate):
        return "inf"
    return f"{rate:.2f}"


def _percent(num: int, den: int) -> float:
    if den > 0:
        return 100.0 * num / den
    return math.nan if num == 0 else math.inf


def _json_rate(rate: float) -> float | None:
    return None if (math.isnan(rate) or math.isinf(rate)) else round(rate, 4)


@dataclass
class ErrorStats:
    """Counts for one utterance or a whole set; ``name`` labels the printed line (CER, WER...).

    ``num_absent`` counts references that had no hypothesis (see ``compute_error_rate``'s mode);
    Kaldi marks such a result ``[PARTIAL]``.
    """

    name: str = "CER"
    ref_count: int = 0
    hyp_count: int = 0
    ins: int = 0
    dels: int = 0
    subs: int = 0
    num_sent: int = 0
    sent_errs: int = 0
    num_absent: int = 0

    @property
    def errors(self) -> int:
        """Insertions + deletions + substitutions."""
        return self.ins + self.dels + self.subs

    @property
    def correct(self) -> int:
        """Reference tokens matched exactly."""
        return self.ref_count - self.dels - self.subs

    @property
    def rate(self) -> float:
        """Error rate in percent (``nan`` for 0/0, ``inf`` for errors over 0 reference tokens)."""
        return _percent(self.errors, self.ref_count)

    @property
    def ser(self) -> float:
        """Sentence error rate in percent (``nan`` when no sentence was scored)."""
        return _percent(self.sent_errs, self.num_sent) if self.num_sent else math.nan

    def line(self) -> str:
        """``%CER 33.33 [ 2 / 6, 1 ins, 0 del, 1 sub ]`` (plus `` [PARTIAL]`` as Kaldi adds it)."""
        partial = " [PARTIAL]" if self.num_absent else ""
        return (
            f"%{self.name} {format_rate(self.rate)} [ {self.errors} / {self.ref_count}, "
            f"{self.ins} ins, {self.dels} del, {self.subs} sub ]{partial}"
        )

    def ser_line(self) -> str:
        """``%SER 100.00 [ 1 / 1 ]``."""
        return f"%SER {format_rate(self.ser)} [ {self.sent_errs} / {self.num_sent} ]"

    def scored_line(self) -> str:
        """``Scored N sentences, M not present in hyp.`` as ``compute-wer`` ends its report."""
        return f"Scored {self.num_sent} sentences, {self.num_absent} not present in hyp."

    def __add__(self, other: "ErrorStats") -> "ErrorStats":
        if not isinstance(other, ErrorStats):
            return NotImplemented
        return ErrorStats(
            name=self.name,
            ref_count=self.ref_count + other.ref_count,
            hyp_count=self.hyp_count + other.hyp_count,
            ins=self.ins + other.ins,
            dels=self.dels + other.dels,
            subs=self.subs + other.subs,
            num_sent=self.num_sent + other.num_sent,
            sent_errs=self.sent_errs + other.sent_errs,
            num_absent=self.num_absent + other.num_absent,
        )

    def to_dict(self) -> dict:
        """JSON-safe numbers; an undefined rate becomes ``None`` with a ``note`` saying why."""
        d = {
            "name": self.name,
            "rate": _json_rate(self.rate),
            "errors": self.errors,
            "ref_count": self.ref_count,
            "hyp_count": self.hyp_count,
            "ins": self.ins,
            "del": self.dels,
            "sub": self.subs,
            "correct": self.correct,
            "num_sent": self.num_sent,
            "sent_errs": self.sent_errs,
            "ser": _json_rate(self.ser),
            "num_absent": self.num_absent,
            "line": self.line(),
            "ser_line": self.ser_line(),
        }
        if self.ref_count == 0:
            d["note"] = (
                "no reference tokens: rate undefined (Kaldi prints nan for 0/0 and inf for insertions over 0)"
            )
        return d


@dataclass
class UttAlignment:
    """One utterance scored: tokens, the aligned pairs with ``EPS`` for gaps, C/S/I/D ops, counts."""

    utt: str
    ref: list[str]
    hyp: list[str]
    pairs: list[tuple[str, str]]
    ops: list[str]
    stats: ErrorStats
    absent: bool = False  # True if the hypothesis was missing and scored as empty

    @property
    def csid(self) -> tuple[int, int, int, int]:
        """(correct, substitutions, insertions, deletions), the order of Kaldi's ``#csid`` line."""
        s = self.stats
        return s.correct, s.subs, s.ins, s.dels


@dataclass
class ScoreResult:
    """A scored set: the total, every utterance (sorted by id) and the id mismatches."""

    total: ErrorStats
    per_utt: dict[str, UttAlignment]
    missing_hyp: list[str] = field(default_factory=list)
    extra_hyp: list[str] = field(default_factory=list)
    mode: str = "all"

    def report_lines(self) -> list[str]:
        """The three lines ``compute-wer`` prints."""
        return [self.total.line(), self.total.ser_line(), self.total.scored_line()]

    def bootstrap_ci(self, replications: int = 10000, seed: int = 0) -> dict | None:
        """95% bootstrap confidence interval of the rate in percent (Bisani & Ney, as Kaldi's
        ``compute-wer-bootci``), via ``kaldialign.bootstrap_wer_ci``. Deterministic for a fixed
        ``seed``.

        ``None`` when the set has no utterances or any utterance has an empty reference: a
        replication drawing only such utterances has no reference tokens, and kaldialign's mean
        then becomes ``inf``; leaving those utterances out instead would give an interval around a
        different rate than the one reported.
        """
        utts = list(self.per_utt.values())
        if not utts or any(len(u.ref) == 0 for u in utts):
            return None
        res = kaldialign.bootstrap_wer_ci(
            [u.ref for u in utts], [u.hyp for u in utts], replications=replications, seed=seed
        )
        return {
            "mean": round(100.0 * res["wer"], 4),
            "ci95": round(100.0 * res["ci95"], 4),
            "low": round(100.0 * res["ci95min"], 4),
            "high": round(100.0 * res["ci95max"], 4),
            "replications": replications,
            "seed": seed,
        }


def _pick_eps(ref: Sequence[str], hyp: Sequence[str]) -> str:
    eps = EPS
    while eps in ref or eps in hyp:
        eps = f"<{eps}>"
    return eps


def align_tokens(ref: Sequence[str], hyp: Sequence[str]) -> tuple[list[tuple[str, str]], list[str]]:
    """Minimum-edit alignment (unit costs, Kaldi's tie-breaking) of two token sequences.

    Returns the pairs, with ``EPS`` (``***``) on the side of a gap, and one op per pair:
    ``C`` correct, ``S`` substitution, ``I`` insertion (gap in ref), ``D`` deletion (gap in hyp).
    """
    ref = list(ref)
    hyp = list(hyp)
    eps = _pick_eps(ref, hyp)
    raw = kaldialign.align(ref, hyp, eps) if (ref or hyp) else []
    pairs: list[tuple[str, str]] = []
    ops: list[str] = []
    for r, h in raw:
        if r == eps:
            ops.append("I")
            r = EPS
        elif h == eps:
            ops.append("D")
            h = EPS
        else:
            ops.append("C" if r == h else "S")
        pairs.append((r, h))
    return pairs, ops


def score_utterance(utt: str, ref: Sequence[str], hyp: Sequence[str], name: str = "CER") -> UttAlignment:
    """Align and count one utterance. The counts equal ``kaldialign.edit_distance``'s."""
    pairs, ops = align_tokens(ref, hyp)
    stats = ErrorStats(
        name=name,
        ref_count=len(ref),
        hyp_count=len(hyp),
        ins=ops.count("I"),
        dels=ops.count("D"),
        subs=ops.count("S"),
        num_sent=1,
        sent_errs=int(list(ref) != list(hyp)),
    )
    return UttAlignment(utt=utt, ref=list(ref), hyp=list(hyp), pairs=pairs, ops=ops, stats=stats)


def compute_error_rate(
    refs: Mapping[str, Sequence[str]],
    hyps: Mapping[str, Sequence[str]],
    *,
    name: str = "CER",
    mode: ScoringMode = "all",
    log_mismatches: bool = True,
) -> ScoreResult:
    """Score tokenised hypotheses against tokenised references, per utterance and in total.

    ``mode`` says what happens to a reference with no hypothesis, as ``compute-wer --mode``:
    ``"all"`` (default here) scores it as an empty hypothesis, i.e. all deletions — a decode that
    failed must cost errors, not quietly shrink the test set; ``"present"`` leaves it out;
    ``"strict"`` (Kaldi's default) raises. In the first two cases the total is marked
    ``[PARTIAL]`` and the ids are in ``ScoreResult.missing_hyp``. Hypotheses without a reference
    are not scored; they are logged with a count and listed in ``ScoreResult.extra_hyp``.
    ``log_mismatches=False`` silences those warnings (for a second scoring of the same sets).
    """
    if mode not in ("all", "present", "strict"):
        raise SenoneError(f"scoring mode {mode!r} is unknown; use 'all', 'present' or 'strict'")
    missing = sorted(u for u in refs if u not in hyps)
    extra = sorted(u for u in hyps if u not in refs)
    if missing and mode == "strict":
        raise SenoneError(
            f"{len(missing)} reference utterance(s) have no hypothesis (first: {missing[0]}); "
            "re-run decoding, or score with mode='all' (count them as deletions) or 'present'"
        )
    if missing and log_mismatches:
        log.warning(
            "%d of %d utterances have no hypothesis (first: %s); %s",
            len(missing),
            len(refs),
            missing[0],
            "scored as empty" if mode == "all" else "left out (mode 'present')",
        )
    if extra and log_mismatches:
        log.warning("%d hypotheses have no reference and are not scored (first: %s)", len(extra), extra[0])

    total = ErrorStats(name=name)
    per_utt: dict[str, UttAlignment] = {}
    for utt in sorted(refs):
        absent = utt not in hyps
        if absent and mode == "present":
            total.num_absent += 1
            continue
        ua = score_utterance(utt, refs[utt], [] if absent else hyps[utt], name=name)
        if absent:
            ua.absent = True
            ua.stats.num_absent = 1
        per_utt[utt] = ua
        total = total + ua.stats
    return ScoreResult(total=total, per_utt=per_utt, missing_hyp=missing, extra_hyp=extra, mode=mode)


def _display_width(token: str) -> int:
    # Wide (CJK) characters take two terminal columns; count them so that columns line up.
    return sum(2 if unicodedata.east_asian_width(c) in ("W", "F") else 1 for c in token)


def _center(token: str, width: int) -> str:
    pad = width - _display_width(token)
    left = pad // 2
    return " " * left + token + " " * (pad - left)


def format_per_utt(alignments: Mapping[str, UttAlignment] | Sequence[UttAlignment]) -> str:
    """Kaldi's ``wer_details/per_utt`` layout: four lines per utterance,

    ``utt ref  ...``, ``utt hyp  ...``, ``utt op   ...`` (tokens centred in shared columns, ``***``
    for gaps, two spaces between columns) and ``utt #csid C S I D``. Column widths count CJK
    characters as two terminal cells so the columns line up on screen; split on whitespace to parse.
    """
    items = alignments.values() if isinstance(alignments, Mapping) else alignments
    out: list[str] = []
    for ua in items:
        widths = [max(_display_width(r), _display_width(h), 1) for r, h in ua.pairs]
        ref_row = "  ".join(_center(r, w) for (r, _), w in zip(ua.pairs, widths))
        hyp_row = "  ".join(_center(h, w) for (_, h), w in zip(ua.pairs, widths))
        op_row = "  ".join(_center(o, w) for o, w in zip(ua.ops, widths))
        c, s, i, d = ua.csid
        out.append(f"{ua.utt} ref  {ref_row}".rstrip())
        out.append(f"{ua.utt} hyp  {hyp_row}".rstrip())
        out.append(f"{ua.utt} op   {op_row}".rstrip())
        out.append(f"{ua.utt} #csid {c} {s} {i} {d}")
    return "\n".join(out) + ("\n" if out else "")
