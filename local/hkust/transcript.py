"""HKUST transcripts (LDC2005T32): reading the files and cleaning their mark-up.

A transcript is GBK text, one file per call, named like its audio (``<call>.txt``)::

    # 20040503_222707_A000687_B000688
    4.1250 6.6250 A: 喂，你好。
    6.7500 8.0625 B: <noise>喂</noise>你好((是))
    ...

``#`` lines carry the call id (the file name is used instead: it is what matches the audio);
segment lines are ``start end side: text`` with times in seconds and side ``A`` or ``B``.

Mark-up, as the LDC transcription guidelines write it, and what :func:`clean_markup` does with it
(the same decisions as Kaldi's ``egs/hkust/s5`` data preparation, except noise marks; see below):

* ``<foreign language="English">OK</foreign>``: the tags go, the words stay (Latin words are kept
  upper-cased by the normaliser, as Kaldi does).
* ``<noise>喂</noise>``: speech over noise; the tags go, the words stay. A lone ``<noise>`` tag
  (and any other ``<...>`` tag) goes.
* ``((是))``: an uncertain transcription; the parentheses go, the words stay. ``(( ))`` (speech
  nobody could make out) goes.
* ``{breath}``, ``{cough}``, ``{laugh}``, ``{lipsmack}``, ``{sneeze}`` and any other ``{...}``
  mark, ``[LAUGHTER]``, ``[NOISE]`` and any other ``[...]`` mark: removed. Kaldi maps them to
  the noise words ``[VOCALIZED-NOISE]``, ``[LAUGHTER]``, ``[NOISE]`` with their own phones; this
  project's lang stage has only ``SIL`` and ``SPN``, and mapping them to ``<UNK>`` would put noise
  tokens into the LM and into the references the CER is computed on. Removed, the noise is
  absorbed by the optional silence between words. Every removed mark is counted.
* ``%`` fillers: a filler written in characters keeps them (``%呃`` → ``呃``, as Kaldi, since the
  syllable was spoken and the lexicon can say it); a placeholder in Latin letters
  (``%HESITATION``, ``%UM``) is removed.
* ``~`` before spelled letters goes (``~A`` → ``A``), as in Kaldi.

Then :func:`senone.data.text.normalize_zh_report` does the rest (full-width forms, punctuation,
numerals, Latin upper case).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from senone.data.skips import SkipReport

_SEGMENT = re.compile(r"^(\S+)\s+(\S+)\s+([A-Za-z]\w*)\s*:\s*(.*)$")
_FOREIGN = re.compile(r"<foreign[^>]*>(.*?)</foreign\s*>", re.IGNORECASE | re.DOTALL)
_NOISE_SPAN = re.compile(r"<noise\s*>(.*?)</noise\s*>", re.IGNORECASE | re.DOTALL)
_TAG = re.compile(r"</?[A-Za-z][^>]*>")
_EMPTY_UNCERTAIN = re.compile(r"\(\(\s*\)\)")
_UNCERTAIN = re.compile(r"\(\((.*?)\)\)", re.DOTALL)
_CURLY = re.compile(r"\{[^{}]*\}")
_SQUARE = re.compile(r"\[[^\[\]]*\]")
_PLACEHOLDER = re.compile(r"%[A-Za-z][A-Za-z_'-]*")
_FILLER_MARK = re.compile(r"%(?=\S)")
_SPELLED = re.compile(r"~(?=[A-Za-z])")
# A speaker label left inside the text: Kaldi drops these lines (two turns merged into one line).
_LABEL_IN_TEXT = re.compile(r"(?<![A-Za-z])[AB]\s*:")


@dataclass(frozen=True)
class Segment:
    """One time-stamped segment of a call side, with its text as transcribed (mark-up included)."""

    call: str
    side: str  # "A" (channel 1 of the SPHERE file) or "B" (channel 2)
    start: float
    end: float
    text: str
    source: str  # "<file>:<line>" for messages

    @property
    def id(self) -> str:
        """Kaldi's HKUST utterance id: ``<call>-<side>-<start cs>-<end cs>`` (times in centiseconds)."""
        return f"{self.call}-{self.side}-{int(100 * self.start + 0.5):06d}-{int(100 * self.end + 0.5):06d}"


def _remove(pattern: re.Pattern, text: str, marks: Counter, name: str | None = None, keep: bool = False) -> str:
    """Replace every match by a space (or by its group 1 if ``keep``), counting it as ``name`` (default: itself)."""
    def sub(m: re.Match) -> str:
        inner = m.group(1) if keep else ""
        marks[name or m.group(0)] += 1
        return f" {inner} "
    return pattern.sub(sub, text)


def clean_markup(text: str) -> tuple[str, Counter]:
    """Remove HKUST transcription mark-up as described in the module docstring.

    Returns the text with only words left (and punctuation, which the normaliser drops), and the
    removed marks with their counts (``{"{laugh}": 1, "<noise>…</noise>": 2, ...}``).
    """
    marks: Counter = Counter()
    text = _remove(_FOREIGN, text, marks, "<foreign>…</foreign>", keep=True)
    text = _remove(_NOISE_SPAN, text, marks, "<noise>…</noise>", keep=True)
    text = _remove(_TAG, text, marks)  # lone <noise>, unmatched tags
    text = _remove(_EMPTY_UNCERTAIN, text, marks, "(( ))")
    text = _remove(_UNCERTAIN, text, marks, "((…))", keep=True)
    text = _remove(_CURLY, text, marks)
    text = _remove(_SQUARE, text, marks)
    text = _remove(_PLACEHOLDER, text, marks)
    n = len(_FILLER_MARK.findall(text))
    if n:
        marks["%filler"] += n
        text = _FILLER_MARK.sub("", text)
    text = _SPELLED.sub("", text)
    return " ".join(text.split()), marks


def decode_transcript(data: bytes) -> list[str | None]:
    """The lines of a transcript file: UTF-8 if the whole file is valid UTF-8, else GBK (as GB18030,
    its superset). A line that is not valid GB18030 either is ``None`` (the caller skips it).

    Splitting the bytes at ``\\n`` first is safe for GBK: its second bytes are never 0x0A.
    """
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        return data.decode("utf-8").splitlines()
    except UnicodeDecodeError:
        pass
    out: list[str | None] = []
    for raw in data.split(b"\n"):
        try:
            out.append(raw.decode("gb18030").rstrip("\r"))
        except UnicodeDecodeError:
            out.append(None)
    return out


def _time(value: str) -> float | None:
    try:
        t = float(value)
    except ValueError:
        return None
    return t if math.isfinite(t) and t >= 0 else None


def read_transcript(path: str | Path, skips: SkipReport) -> list[Segment]:
    """The segments of one call's transcript; bad lines are recorded in ``skips`` with their reason.

    Reasons: ``undecodable_line`` (neither UTF-8 nor GBK), ``bad_transcript_line`` (no
    ``start end side:`` shape), ``bad_timestamp`` (a time that is not a non-negative number),
    ``end_not_after_start``, ``bad_channel_label`` (a side other than A/B),
    ``speaker_label_in_text`` (an ``A:``/``B:`` inside the text, as Kaldi drops).
    """
    path = Path(path)
    call = path.stem
    segments: list[Segment] = []
    for n, line in enumerate(decode_transcript(path.read_bytes()), start=1):
        where = f"{path.name}:{n}"
        if line is None:
            skips.add(where, "undecodable_line", "neither UTF-8 nor GBK")
            continue
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = _SEGMENT.match(line)
        if not m:
            skips.add(where, "bad_transcript_line", line[:60])
            continue
        start, end = _time(m.group(1)), _time(m.group(2))
        if start is None or end is None:
            skips.add(where, "bad_timestamp", f"{m.group(1)} {m.group(2)}")
            continue
        if end <= start:
            skips.add(where, "end_not_after_start", f"{m.group(1)} {m.group(2)}")
            continue
        side = m.group(3).upper()
        if side not in ("A", "B"):
            skips.add(where, "bad_channel_label", m.group(3))
            continue
        text = m.group(4)
        if _LABEL_IN_TEXT.search(text):
            skips.add(where, "speaker_label_in_text", text[:60])
            continue
        segments.append(Segment(call=call, side=side, start=start, end=end, text=text, source=where))
    return segments
