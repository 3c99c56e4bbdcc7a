"""What every recipe for a real corpus does between "files on disk" and "Lhotse manifests".

Real corpora are read in place (never copied): each audio file is probed once (header only, via
libsndfile), and whatever cannot be used is left out through a :class:`~senone.data.skips.SkipReport`
rather than stopping the run — a file that does not open, holds no samples, is in another sample
rate than the recipe's, has several channels; an utterance id listed twice; a segment that ends past
its audio. What cannot be skipped sensibly (the corpus folder is missing, no audio is found, a split
ends up empty) stops with one :class:`~senone.SenoneError` line naming the path and the fix.

:func:`write_splits` turns the kept :class:`Utterance` records into the three manifests per split
(``<out>/manifests/<corpus>_{recordings,supervisions,cuts}_<split>.jsonl.gz``, the names the
workflow expects) plus ``skipped.json`` beside them.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from senone import SenoneError
from senone.data import write_manifest
from senone.data.skips import SkipReport

log = logging.getLogger(__name__)

SPLITS = ("train", "dev", "test")

#: A segment may end this far past its audio and is cut at the end instead of skipped (Kaldi's
#: ``extract-segments --max-overshoot`` default): transcribers' time stamps are rounded.
MAX_OVERSHOOT_S = 0.5

#: Shortest usable utterance: one 25 ms analysis frame (the features stage cannot use less).
MIN_DURATION_S = 0.025


@dataclass(frozen=True)
class AudioInfo:
    """What the manifests need to know about one audio file (from its header)."""

    path: Path
    sampling_rate: int
    num_samples: int
    num_channels: int

    @property
    def duration(self) -> float:
        return self.num_samples / self.sampling_rate


@dataclass
class Utterance:
    """One supervised stretch of audio: a whole file (``start=0``, ``duration=None``) or a segment."""

    id: str
    speaker: str
    text: str
    audio: AudioInfo
    recording_id: str = ""
    start: float = 0.0
    duration: float | None = None
    custom: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.recording_id:
            self.recording_id = self.id


def probe_audio(path: str | os.PathLike, sampling_rate: int, report: SkipReport, item: str) -> AudioInfo | None:
    """The header of ``path``, or None with the reason recorded in ``report`` under ``item``.

    Reasons: ``missing_audio_file``, ``unreadable_audio`` (libsndfile cannot open it: corrupt,
    truncated header, or a format it does not know), ``empty_audio`` (no samples), ``sample_rate``
    (not the recipe's ``sampling_rate``: resample the corpus, or set the recipe's rate), and
    ``multichannel`` (make one file per channel, or a Kaldi data dir with one entry per channel).
    """
    import soundfile

    path = Path(path)
    if not path.is_file():
        report.add(item, "missing_audio_file", str(path))
        return None
    try:
        info = soundfile.info(str(path))
    except Exception as exc:  # libsndfile raises its own error type, RuntimeError and others
        report.add(item, "unreadable_audio", f"{path}: {str(exc).splitlines()[0][:150] if str(exc) else type(exc).__name__}")
        return None
    if info.frames <= 0:
        report.add(item, "empty_audio", f"{path}: no samples")
        return None
    if info.samplerate != sampling_rate:
        report.add(item, "sample_rate", f"{path}: {info.samplerate} Hz, the recipe expects {sampling_rate} Hz")
        return None
    if info.channels != 1:
        report.add(item, "multichannel", f"{path}: {info.channels} channels; give one file (or entry) per channel")
        return None
    if info.frames / info.samplerate < MIN_DURATION_S:
        report.add(item, "too_short", f"{path}: {info.frames} samples, shorter than one 25 ms frame")
        return None
    return AudioInfo(path=path.resolve(), sampling_rate=info.samplerate, num_samples=int(info.frames),
                     num_channels=info.channels)


def fit_segment(start: float, end: float, audio: AudioInfo, report: SkipReport, item: str) -> float | None:
    """The duration of segment ``[start, end)`` of ``audio``, cut at the audio's end if it overshoots
    by at most :data:`MAX_OVERSHOOT_S`; None (recorded as ``segment_past_audio_end``) beyond that."""
    if end > audio.duration:
        if end - audio.duration > MAX_OVERSHOOT_S or start >= audio.duration - MIN_DURATION_S:
            report.add(item, "segment_past_audio_end",
                       f"ends at {end:.2f} s, {audio.path.name} is {audio.duration:.2f} s long")
            return None
        end = audio.duration
    return end - start


def drop_duplicate_ids(items: Sequence, key, report: SkipReport, what: str) -> list:
    """``items`` without every item whose ``key(item)`` occurs more than once (recorded as
    ``duplicate_id``). All copies go: nothing says which of two different entries is right."""
    counts = Counter(key(x) for x in items)
    for k, n in sorted(counts.items()):
        if n > 1:
            report.add(k, "duplicate_id", f"{what} id listed {n} times; every copy left out")
    return [x for x in items if counts[key(x)] == 1]


def split_speakers(speakers: Sequence[str], *, dev: Sequence[str] | int, test: Sequence[str] | int,
                   train: Sequence[str] | None = None, seed: int = 0, corpus: str = "corpus") -> dict[str, list[str]]:
    """Speaker-disjoint train/dev/test speaker lists.

    ``dev``/``test``: speaker names, or a number of speakers drawn at random (seeded) from the
    speakers not named elsewhere. ``train``: names, or None for every remaining speaker. Unknown
    names, overlaps and empty splits are errors: a split that silently shrank would change what the
    test error rate means.
    """
    known = sorted(set(speakers))
    named = {s: list(v) for s, v in (("dev", dev), ("test", test), ("train", train)) if v is not None and not isinstance(v, int)}
    for split, names in named.items():
        unknown = [n for n in names if n not in known]
        if unknown:
            raise SenoneError(f"{corpus}: {split} speaker(s) {unknown} not found in the corpus (speakers: {', '.join(known)})")
    seen: dict[str, str] = {}
    for split, names in named.items():
        for n in names:
            if n in seen and seen[n] != split:
                raise SenoneError(f"{corpus}: speaker {n!r} is in both the {seen[n]} and the {split} split")
            seen[n] = split
    rest = [s for s in known if s not in seen]
    rng = np.random.default_rng(seed)
    order = [rest[i] for i in rng.permutation(len(rest))]
    out: dict[str, list[str]] = {}
    for split, spec in (("test", test), ("dev", dev)):
        if isinstance(spec, int):
            if spec < 1 or spec > len(order) - 1:
                raise SenoneError(f"{corpus}: cannot draw {spec} {split} speaker(s) from {len(order)} unassigned "
                                  f"speakers and keep one for training; name the speakers or lower the number")
            out[split], order = sorted(order[:spec]), order[spec:]
        else:
            out[split] = sorted(spec)
    out["train"] = sorted(train) if train is not None else sorted(order)
    for split in SPLITS:
        if not out[split]:
            raise SenoneError(f"{corpus}: the {split} split has no speaker; check the speaker lists in the recipe")
    return {s: out[s] for s in SPLITS}


def manifest_path(output_dir: str | os.PathLike, corpus: str, kind: str, split: str) -> Path:
    """``<out>/manifests/<corpus>_<kind>_<split>.jsonl.gz`` (kind: recordings, supervisions, cuts)."""
    return Path(output_dir) / "manifests" / f"{corpus}_{kind}_{split}.jsonl.gz"


def write_splits(output_dir: str | os.PathLike, corpus: str, splits: Mapping[str, Sequence[Utterance]],
                 report: SkipReport, *, language: str):
    """Write the Lhotse manifests of every split and ``skipped.json``; return ``{split: CutSet}``.

    Utterances are sorted by id (deterministic files). A recording shared by several utterances
    (segments of one file) appears once in its split's recordings. An empty split is an error
    naming the skip report, since the run cannot train or score without it.
    """
    from lhotse import AudioSource, CutSet, MonoCut, Recording, RecordingSet, SupervisionSegment, SupervisionSet

    out = Path(output_dir)
    report.summarise(log)
    report.write(out / "manifests" / "skipped.json")
    for split in SPLITS:
        if not splits.get(split):
            raise SenoneError(f"{corpus}: nothing left in the {split} split after skipping bad items "
                              f"(see {out / 'manifests' / 'skipped.json'}); fix the corpus or the split settings")
    cutsets = {}
    for split in SPLITS:
        recordings: dict[str, Recording] = {}
        supervisions, cuts = [], []
        for u in sorted(splits[split], key=lambda u: u.id):
            rec = recordings.get(u.recording_id)
            if rec is None:
                a = u.audio
                rec = Recording(id=u.recording_id, sources=[AudioSource(type="file", channels=[0], source=str(a.path))],
                                sampling_rate=a.sampling_rate, num_samples=a.num_samples, duration=a.duration)
                recordings[u.recording_id] = rec
            duration = u.duration if u.duration is not None else rec.duration - u.start
            sup = SupervisionSegment(id=u.id, recording_id=u.recording_id, start=u.start, duration=duration, channel=0,
                                     text=u.text, language=language, speaker=u.speaker, custom=u.custom or None)
            supervisions.append(sup)
            cuts.append(MonoCut(id=u.id, start=u.start, duration=duration, channel=0, recording=rec,
                                supervisions=[sup.with_offset(-u.start)]))
        write_manifest(RecordingSet.from_recordings(sorted(recordings.values(), key=lambda r: r.id)),
                       manifest_path(out, corpus, "recordings", split))
        write_manifest(SupervisionSet.from_segments(supervisions), manifest_path(out, corpus, "supervisions", split))
        cutsets[split] = CutSet.from_cuts(cuts)
        write_manifest(cutsets[split], manifest_path(out, corpus, "cuts", split))
        log.info("%s %s: %d utterances, %d speakers, %.1f min", corpus, split, len(cuts),
                 len({u.speaker for u in splits[split]}), sum(c.duration for c in cuts) / 60)
    return cutsets


def require_dir(path: str | os.PathLike | None, corpus: str, what: str = "corpus_dir") -> Path:
    """``path`` as an existing directory, or one error line saying how to pass it."""
    if not path:
        raise SenoneError(f"{corpus}: no {what} given; pass --config {what}=PATH (the folder of your copy)")
    p = Path(path).expanduser()
    if not p.is_dir():
        raise SenoneError(f"{corpus}: {what} {p} is not a directory (resolved: {p.resolve()}); "
                          f"pass --config {what}=PATH to your copy of the corpus")
    return p
