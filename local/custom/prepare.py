"""Bring your own corpus: a Kaldi data directory, or a folder of audio files with ``.txt`` transcripts.

Inputs (``corpus_dir``; ``format: auto`` tells them apart by ``wav.scp``):

* **Kaldi data directory**: ``wav.scp`` (``rec-id path``; the rest of the line is the path),
  ``text`` (``utt-id words...``), ``utt2spk``, optional ``segments`` (``utt-id rec-id start end``,
  seconds). Relative paths in ``wav.scp`` are taken from ``audio_root`` (default: the directory two
  levels above the data dir, which is where Kaldi's scripts run for ``data/train``). A piped command
  (``sox x.sph -t wav - |``) or an archive entry (``x.ark:123``) stops with an error: run it once
  into a file and list the file — senone reads audio files only. ``corpus_dir`` may instead hold
  ``train/``, ``dev/`` and ``test/`` data dirs: then that is the split.
* **Folder**: every audio file (``audio_extensions``) under ``corpus_dir`` with a same-named
  ``.txt`` beside it (``a/b/x.wav`` + ``a/b/x.txt``). The speaker is the first sub-folder
  (``corpus_dir/<speaker>/...``), or the named group ``speaker`` of ``speaker_pattern``, a regular
  expression searched in the file name (``^(?P<speaker>[a-z]+)_``). Utterance ids are the relative
  paths without suffix, ``/`` written as ``-``.

Text is normalised for ``language`` (``zh``: senone.data.text.normalize_zh — numerals, full-width
forms, punctuation; ``en``: senone.data.english.normalize_en — upper case, punctuation and
bracketed marks removed); the original goes to ``supervision.custom["raw_text"]``.

Split: ``split_file`` (lines ``utt-id train|dev|test``), or the train/dev/test data dirs, or by
speaker — ``dev_speakers``/``test_speakers`` are lists of names or numbers of speakers drawn with
``seed`` (default one each), training gets the rest.

Everything that cannot be used is skipped with a reason (senone.data.corpus and the readers below)
and listed in ``manifests/skipped.json``, also what names nothing usable: a ``.txt`` without an audio
file beside it (``no_audio_file``) and a split-file id that is no utterance of the corpus
(``split_file_unknown_id``); an id listed twice (``duplicate_id``) names the files or lines that
share it. ``manifests/custom_report.json`` says what was read and what normalisation removed. Text
files that are not UTF-8 are skipped per file (transcripts) or stop with one line naming the file
(the split file).
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence, TypeVar

from senone import SenoneError
from senone.data.corpus import (
    SPLITS,
    AudioInfo,
    Utterance,
    fit_segment,
    probe_audio,
    require_dir,
    split_speakers,
    write_splits,
)
from senone.data.english import normalize_en_report
from senone.data.skips import SkipReport
from senone.data.text import normalize_zh_report
from senone.io import read_utf8, write_json

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass
class _Report(SkipReport):
    """A :class:`SkipReport` that also remembers every item it skipped, so that a split-file id of a
    skipped utterance is not reported a second time as naming nothing."""

    items: set[str] = field(default_factory=set)

    def add(self, item: str, reason: str, detail: str = "") -> None:
        self.items.add(str(item))
        super().add(item, reason, detail)


def _drop_duplicates(items: Sequence[T], key: Callable[[T], str], where: Callable[[T], str], report: SkipReport,
                     what: str) -> list[T]:
    """``items`` without every item whose id occurs more than once (``duplicate_id``), the skip naming where
    each copy comes from (files, or lines of one file): the user must see which two entries collide."""
    by_id: dict[str, list[T]] = {}
    for x in items:
        by_id.setdefault(key(x), []).append(x)
    for k, copies in sorted(by_id.items()):
        if len(copies) > 1:
            report.add(k, "duplicate_id", f"{what} id listed {len(copies)} times: "
                       f"{', '.join(where(c) for c in copies)}; every copy left out (rename or remove one)")
    return [x for x in items if len(by_id[key(x)]) == 1]

CORPUS = "custom"
LANGUAGE_NAMES = {"zh": "Chinese", "en": "English"}
_ARCHIVE_ENTRY = re.compile(r"\.ark:\d+$")


@dataclass
class _Raw:
    """An utterance before its text is normalised and its split is known."""

    id: str
    speaker: str
    text: str
    audio: AudioInfo
    recording_id: str = ""
    start: float = 0.0
    duration: float | None = None
    split: str | None = None


# --------------------------------------------------------------------------------------------
# Kaldi data directories
# --------------------------------------------------------------------------------------------

def read_table(path: Path, report: SkipReport, what: str) -> tuple[dict[str, tuple[str, int]], set[str]]:
    """A Kaldi table file (``key rest-of-line``) as ``{key: (rest, line number)}`` plus the keys left out.

    Blank lines are ignored. Left out (and recorded): a line that is not UTF-8 (``undecodable_line``)
    and every line of a key listed twice (``duplicate_id``). The rest may be empty (``text`` lines of
    silent utterances); callers decide what that means. The keys left out are returned so that later
    checks do not report the same utterance again under a second reason.
    """
    entries, bad = [], set()
    for lineno, raw in enumerate(path.read_bytes().splitlines(), 1):
        try:
            line = raw.decode("utf-8").strip()
        except UnicodeDecodeError:
            key = raw.split(maxsplit=1)[0].decode("utf-8", "replace") if raw.split() else f"{path.name}:{lineno}"
            report.add(key, "undecodable_line", f"{path}: line {lineno} is not UTF-8")
            bad.add(key)
            continue
        if line:
            parts = line.split(maxsplit=1)
            entries.append((parts[0], parts[1] if len(parts) > 1 else "", lineno))
    kept = _drop_duplicates(entries, lambda e: e[0], lambda e: f"{path}:{e[2]}", report, what)
    bad |= {k for k, _, _ in entries} - {k for k, _, _ in kept}
    return {k: (rest, lineno) for k, rest, lineno in kept}, bad


def read_wav_scp(path: Path, audio_root: Path, report: SkipReport) -> tuple[dict[str, Path], set[str]]:
    """``wav.scp`` as recording id → audio path (errors for pipes and archive entries, see module doc)."""
    table, bad = read_table(path, report, "recording")
    out = {}
    for rec, (rest, lineno) in table.items():
        if not rest:
            report.add(rec, "bad_wav_scp_line", f"{path}:{lineno}: no audio path")
            bad.add(rec)
            continue
        if rest.endswith("|"):
            raise SenoneError(f"{path}:{lineno}: {rec} is a piped command ({rest[:60]}); senone reads audio files "
                              "only: run the command once into a .wav/.flac file and list that file")
        if _ARCHIVE_ENTRY.search(rest):
            raise SenoneError(f"{path}:{lineno}: {rec} is an archive entry ({rest}); write each recording to its "
                              "own audio file and list the files")
        p = Path(rest)
        out[rec] = p if p.is_absolute() else audio_root / p
    return out, bad


def read_segments(path: Path, report: SkipReport) -> tuple[dict[str, tuple[str, float, float]], set[str]]:
    """``segments`` as utt → (recording, start, end); unreadable time stamps are skipped (``bad_segment_line``)."""
    table, bad = read_table(path, report, "segment")
    out = {}
    for utt, (rest, lineno) in table.items():
        parts = rest.split()
        try:
            if len(parts) != 3:
                raise ValueError(f"expected 'utt-id rec-id start end', got {len(parts) + 1} fields")
            start, end = float(parts[1]), float(parts[2])
            if not 0.0 <= start < end < float("inf"):
                raise ValueError(f"start {parts[1]} / end {parts[2]} do not make a segment")
        except ValueError as exc:
            report.add(utt, "bad_segment_line", f"{path}:{lineno}: {exc}")
            bad.add(utt)
            continue
        out[utt] = (parts[0], start, end)
    return out, bad


def read_kaldi_dir(data_dir: Path, audio_root: Path, sampling_rate: int, report: SkipReport) -> list[_Raw]:
    """The usable utterances of one Kaldi data dir (text not yet normalised)."""
    for name in ("wav.scp", "text", "utt2spk"):
        if not (data_dir / name).is_file():
            raise SenoneError(f"{data_dir}: no {name}; a Kaldi data dir needs wav.scp, text and utt2spk")
    wavs, bad_recs = read_wav_scp(data_dir / "wav.scp", audio_root, report)
    texts, bad = read_table(data_dir / "text", report, "utterance (text)")
    spk, bad_spk = read_table(data_dir / "utt2spk", report, "utterance (utt2spk)")
    segments = None
    if (data_dir / "segments").is_file():
        segments, bad_seg = read_segments(data_dir / "segments", report)
        bad |= bad_seg
    bad |= bad_spk
    audio: dict[str, AudioInfo | None] = {}
    out = []
    for utt, (text, _) in sorted(texts.items()):
        if utt in bad:
            continue  # already recorded under the reason its line was left out for
        speaker = spk.get(utt, ("", 0))[0].split()
        if len(speaker) != 1:
            report.add(utt, "no_speaker", f"{data_dir / 'utt2spk'}: no single speaker for {utt}")
            continue
        if segments is not None:
            if utt not in segments:
                report.add(utt, "no_segment", f"{data_dir / 'segments'} has no line for {utt}")
                continue
            rec, start, end = segments[utt]
        else:
            rec, start, end = utt, 0.0, None
        if rec in bad_recs:
            continue
        if rec not in wavs:
            report.add(utt, "no_audio_entry", f"{data_dir / 'wav.scp'} has no (valid) line for recording {rec}")
            continue
        if rec not in audio:
            audio[rec] = probe_audio(wavs[rec], sampling_rate, report, rec)
        info = audio[rec]
        if info is None:
            continue  # the recording's reason is recorded once, under its id
        duration = None
        if end is not None:
            duration = fit_segment(start, end, info, report, utt)
            if duration is None:
                continue
        out.append(_Raw(id=utt, speaker=speaker[0], text=text, audio=info, recording_id=rec, start=start,
                        duration=duration))
    for utt in sorted(set(spk) - set(texts) - bad):
        report.add(utt, "no_transcript", f"in utt2spk but not in {data_dir / 'text'}")
    return out


# --------------------------------------------------------------------------------------------
# Folders of audio + .txt
# --------------------------------------------------------------------------------------------

def read_folder(root: Path, extensions: Sequence[str], speaker_pattern: str | None, sampling_rate: int,
                report: SkipReport) -> list[_Raw]:
    """The usable utterances of a folder of audio files with same-named ``.txt`` transcripts."""
    exts = {e.lower() if e.startswith(".") else f".{e.lower()}" for e in extensions}
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in exts)
    if not files:
        raise SenoneError(f"custom: no audio files ({', '.join(sorted(exts))}) under {root}; "
                          "set corpus.audio_extensions or point corpus_dir at the corpus")
    pattern = re.compile(speaker_pattern) if speaker_pattern else None
    if pattern is not None and "speaker" not in pattern.groupindex:
        raise SenoneError(f"corpus.speaker_pattern {speaker_pattern!r} has no (?P<speaker>...) group")
    out = []
    paired = set()
    for path in files:
        rel = path.relative_to(root)
        utt = "-".join(rel.with_suffix("").parts)
        txt = path.with_suffix(".txt")
        paired.add(txt)
        if not txt.is_file():
            report.add(utt, "no_transcript", f"{txt} not found")
            continue
        if pattern is not None:
            m = pattern.search(path.name)
            if m is None or not m.group("speaker"):
                report.add(utt, "no_speaker", f"{path.name} does not match speaker_pattern {speaker_pattern!r}")
                continue
            speaker = m.group("speaker")
        elif len(rel.parts) > 1:
            speaker = rel.parts[0]
        else:
            report.add(utt, "no_speaker", f"{path} is not in a speaker folder; move it into "
                       "corpus_dir/<speaker>/ or set corpus.speaker_pattern")
            continue
        try:
            text = " ".join(txt.read_text(encoding="utf-8").split())
        except UnicodeDecodeError:
            report.add(utt, "undecodable_line", f"{txt} is not UTF-8")
            continue
        info = probe_audio(path, sampling_rate, report, utt)
        if info is not None:
            out.append(_Raw(id=utt, speaker=speaker, text=text, audio=info))
    # transcripts without audio (a recording removed, or an extension not in audio_extensions) are counted too;
    # .txt files directly in corpus_dir (a README, a split list) are not transcripts
    for txt in sorted(p for p in root.rglob("*.txt") if p not in paired and p.parent != root):
        report.add("-".join(txt.relative_to(root).with_suffix("").parts), "no_audio_file",
                   f"{txt} has no audio file ({', '.join(sorted(exts))}) of the same name beside it")
    return out


# --------------------------------------------------------------------------------------------
# Text, split, manifests
# --------------------------------------------------------------------------------------------

def normalise(raws: list[_Raw], language: str, report: SkipReport) -> tuple[list[Utterance], dict]:
    """Normalised utterances (an empty result is skipped: ``empty_transcript``) and what was removed."""
    dropped: Counter = Counter()
    marks: Counter = Counter()
    out = []
    for r in raws:
        if language == "zh":
            norm = normalize_zh_report(r.text)
            dropped.update(norm.dropped)
        else:
            norm = normalize_en_report(r.text)
            dropped.update(norm.dropped)
            marks.update(norm.marks)
        if not norm.text:
            report.add(r.id, "empty_transcript", f"transcript {r.text!r} is empty after normalisation")
            continue
        out.append(Utterance(id=r.id, speaker=r.speaker, text=norm.text, audio=r.audio, recording_id=r.recording_id,
                             start=r.start, duration=r.duration, custom={"raw_text": r.text}))
    summary = {"characters_removed": dict(dropped.most_common()), "marks_removed": dict(marks.most_common())}
    if dropped or marks:
        log.info("custom: normalisation removed %d character(s) (%s) and %d bracketed mark(s)",
                 sum(dropped.values()), " ".join(c for c, _ in dropped.most_common(10)), sum(marks.values()))
    return out, summary


def read_split_file(path: Path) -> dict[str, str]:
    """``utt-id split`` lines; an unknown split name or a repeated id is an error naming the line."""
    if not path.is_file():
        raise SenoneError(f"custom: split_file {path} not found")
    out: dict[str, str] = {}
    for lineno, line in enumerate(read_utf8(path, "the split file").splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 2 or parts[1] not in SPLITS:
            raise SenoneError(f"{path}:{lineno}: expected 'utt-id train|dev|test', got {line.strip()!r}")
        if parts[0] in out:
            raise SenoneError(f"{path}:{lineno}: utterance {parts[0]} is listed twice; give each one split")
        out[parts[0]] = parts[1]
    return out


def assign_splits(utts: list[Utterance], *, given: dict[str, str], split_file: str | None, dev_speakers,
                  test_speakers, train_speakers, seed: int, report: SkipReport) -> dict[str, list[Utterance]]:
    """Utterances per split: from the split file, the data dirs (``given``: utt → split), or by speaker."""
    by_split: dict[str, list[Utterance]] = {s: [] for s in SPLITS}
    if split_file:
        wanted = read_split_file(Path(split_file))
        for u in utts:
            if u.id in wanted:
                by_split[wanted[u.id]].append(u)
            else:
                report.add(u.id, "not_in_split_file", f"{split_file} gives no split for it")
        # ids naming no utterance at all (skipped ones are counted under their own reason already)
        skipped_items = getattr(report, "items", set())
        for uid in sorted(set(wanted) - {u.id for u in utts} - skipped_items):
            report.add(uid, "split_file_unknown_id", f"{split_file} lists it, but the corpus has no such utterance")
    elif given:
        for u in utts:
            by_split[given[u.id]].append(u)
    else:
        speakers = split_speakers([u.speaker for u in utts], dev=dev_speakers, test=test_speakers,
                                  train=train_speakers, seed=seed, corpus=CORPUS)
        of = {s: split for split, names in speakers.items() for s in names}
        for u in utts:
            if u.speaker in of:
                by_split[of[u.speaker]].append(u)
        log.info("custom: speakers per split: %s", "; ".join(f"{s}: {' '.join(v)}" for s, v in speakers.items()))
    train_spk = {u.speaker for u in by_split["train"]}
    shared = sorted({u.speaker for s in ("dev", "test") for u in by_split[s]} & train_spk)
    if shared:
        log.warning("custom: speaker(s) %s are in training and in dev/test: the error rate is not speaker-independent",
                    ", ".join(shared[:5]))
    return by_split


def prepare_custom(
    output_dir: str | Path,
    *,
    corpus_dir: str | Path | None = None,
    format: str = "auto",
    language: str = "zh",
    sampling_rate: int = 16000,
    audio_extensions: Sequence[str] = (".wav", ".flac", ".mp3"),
    speaker_pattern: str | None = None,
    audio_root: str | Path | None = None,
    split_file: str | None = None,
    dev_speakers: Sequence[str] | int = 1,
    test_speakers: Sequence[str] | int = 1,
    train_speakers: Sequence[str] | None = None,
    seed: int = 0,
):
    """Read a user corpus (see the module docstring) into manifests under ``output_dir``; ``{split: CutSet}``."""
    if language not in LANGUAGE_NAMES:
        raise SenoneError(f"custom: language must be one of {sorted(LANGUAGE_NAMES)}, got {language!r}")
    root = require_dir(corpus_dir, CORPUS)
    report = _Report(CORPUS)
    split_dirs = [root / s for s in SPLITS]
    if format == "auto":
        format = "kaldi" if (root / "wav.scp").is_file() or all((d / "wav.scp").is_file() for d in split_dirs) else "folder"
    if format == "kaldi":
        if (root / "wav.scp").is_file():
            base = Path(audio_root) if audio_root else root.resolve().parent.parent
            raws = read_kaldi_dir(root, base, sampling_rate, report)
        else:
            raws = []
            for split, d in zip(SPLITS, split_dirs):
                base = Path(audio_root) if audio_root else d.resolve().parent.parent
                for r in read_kaldi_dir(d, base, sampling_rate, report):
                    r.split = split
                    raws.append(r)
    elif format == "folder":
        raws = read_folder(root, audio_extensions, speaker_pattern, sampling_rate, report)
    else:
        raise SenoneError(f"custom: format must be auto, kaldi or folder, got {format!r}")
    raws = _drop_duplicates(raws, lambda r: r.id, lambda r: f"{r.audio.path}" + (f" ({r.split}/)" if r.split else ""),
                            report, "utterance")
    utts, text_summary = normalise(raws, language, report)
    if not utts:
        report.summarise(log)
        raise SenoneError(f"custom: no usable utterance in {root} ({report.total} skipped, reasons above)")
    given = {r.id: r.split for r in raws if r.split}
    by_split = assign_splits(utts, given=given, split_file=split_file, dev_speakers=dev_speakers, test_speakers=test_speakers,
                             train_speakers=train_speakers, seed=seed, report=report)
    cutsets = write_splits(output_dir, CORPUS, by_split, report, language=LANGUAGE_NAMES[language],
                           sampling_rate=sampling_rate)
    write_json(Path(output_dir) / "manifests" / "custom_report.json", {
        "corpus_dir": str(root.resolve()), "format": format, "language": language, "sampling_rate": sampling_rate,
        "utterances": {s: len(v) for s, v in by_split.items()},
        "speakers": {s: sorted({u.speaker for u in v}) for s, v in by_split.items()},
        "skipped": report.total, "text_normalisation": text_summary})
    return cutsets
