"""What every recipe for a real corpus does between "files on disk" and "Lhotse manifests".

Real corpora are read in place (never copied): each audio file is probed once (its header via
libsndfile, or its whole signal for compressed formats whose header length is an estimate), and
whatever cannot be used is left out through a :class:`~senone.data.skips.SkipReport` rather than
stopping the run — a file that does not open, holds no samples, is cut short, is at a lower sample
rate than the recipe's; an utterance id listed twice; a segment that ends past its audio. Audio at a
higher rate than the recipe's is resampled on the fly by Lhotse (the recording gets a ``Resample``
transform; no converted copy is written), and of a file with several channels the first is used;
both are counted in the log and in ``audio.json``. What cannot be skipped sensibly (the corpus folder
is missing, no audio is found, a split ends up empty) stops with one :class:`~senone.SenoneError`
line naming the path and the fix.

:func:`write_splits` turns the kept :class:`Utterance` records into the three manifests per split
(``<out>/manifests/<corpus>_{recordings,supervisions,cuts}_<split>.jsonl.gz``, the names the
workflow expects) plus ``skipped.json`` and ``audio.json`` beside them.
"""

from __future__ import annotations

import logging
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from senone import SenoneError
from senone.data import write_manifest
from senone.data.skips import SkipReport
from senone.io import write_json

log = logging.getLogger(__name__)

SPLITS = ("train", "dev", "test")

#: A segment may end this far past its audio and is cut at the end instead of skipped (Kaldi's
#: ``extract-segments --max-overshoot`` default): transcribers' time stamps are rounded.
MAX_OVERSHOOT_S = 0.5

#: Shortest usable utterance: one 25 ms analysis frame (the features stage cannot use less).
MIN_DURATION_S = 0.025


@dataclass(frozen=True)
class AudioInfo:
    """What the manifests need to know about one audio file: its own rate, length and channels (from its
    header, or from decoding it when the header's length is an estimate)."""

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


#: Sub-formats whose frame count in the header is an estimate (MP3's comes from the file size and
#: bit rate): such files are decoded once when probed, to get the true length and to find a file cut
#: short (:func:`probe_audio`).
ESTIMATED_LENGTH_SUBTYPES = ("MPEG_LAYER_I", "MPEG_LAYER_II", "MPEG_LAYER_III", "VORBIS", "OPUS")

#: Samples an MP3 decodes to fewer than its header's estimate when the file is whole: the encoder's
#: delay and padding. On all 4255 clips of the Common Voice zh-CN copy the shortfall is 270 or 852
#: samples at 48 kHz; a file cut inside an MPEG frame loses that frame (1152 samples) on top.
MAX_LENGTH_SHORTFALL = 1152


def probe_audio(path: str | os.PathLike, sampling_rate: int, report: SkipReport, item: str) -> AudioInfo | None:
    """The header of ``path`` (its decoded length for compressed formats), or None with the reason
    recorded in ``report`` under ``item``.

    Reasons: ``missing_audio_file``, ``unreadable_audio`` (libsndfile cannot open or decode it:
    corrupt, truncated header, or a format it does not know), ``empty_audio`` (no samples),
    ``truncated_audio`` (a compressed file that decodes to more than one frame less than its
    header says, or a RIFF/WAVE file whose data chunk declares more bytes than the file holds: cut
    short on disk; libsndfile itself reads such a WAV without a word, as far as it goes),
    ``sample_rate_too_low`` (below the recipe's ``sampling_rate``:
    upsampling adds no information and leaves the upper bands empty; set the recipe's rate, e.g.
    ``sampling_rate=8000``) and ``too_short`` (under one 25 ms frame). A higher rate is kept (the
    manifests resample it on the fly) and so are several channels (the first is used).
    """
    import soundfile

    path = Path(path)
    if not path.is_file():
        report.add(item, "missing_audio_file", str(path))
        return None
    try:
        info = soundfile.info(str(path))
        frames = int(info.frames)
        short = wav_data_shortfall(path) if info.format in ("WAV", "WAVEX") else None
        if short:
            report.add(item, "truncated_audio", f"{path}: {short}; the file was cut short (copy it again)")
            return None
        if info.subtype in ESTIMATED_LENGTH_SUBTYPES:
            decoded = len(soundfile.read(str(path), dtype="float32", always_2d=True)[0])
            if 0 < decoded < frames - MAX_LENGTH_SHORTFALL:
                report.add(item, "truncated_audio", f"{path}: decodes to {decoded} samples, its header promises "
                           f"{frames}; the file was cut short (copy it again)")
                return None
            frames = decoded
    except Exception as exc:  # libsndfile raises its own error type, RuntimeError and others
        report.add(item, "unreadable_audio", f"{path}: {_unreadable_reason(exc)}")
        return None
    if frames <= 0:
        report.add(item, "empty_audio", f"{path}: no samples")
        return None
    if info.samplerate < sampling_rate:
        report.add(item, "sample_rate_too_low", f"{path}: {info.samplerate} Hz, below the recipe's {sampling_rate} Hz "
                   "(upsampling adds nothing); set the recipe's sampling_rate to the corpus's")
        return None
    if frames / info.samplerate < MIN_DURATION_S:
        report.add(item, "too_short", f"{path}: {frames} samples, shorter than one 25 ms frame")
        return None
    return AudioInfo(path=path.resolve(), sampling_rate=info.samplerate, num_samples=frames,
                     num_channels=info.channels)


def wav_data_shortfall(path: str | os.PathLike) -> str | None:
    """For a RIFF/WAVE file, why it is cut short (its ``data`` chunk declares more bytes than the file
    holds after the chunk's header), or None (whole, another container, or a streamed WAV whose writer
    left the size 0 or 0xFFFFFFFF). Only chunk headers are read, never the samples."""
    import struct

    with open(path, "rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] not in (b"RIFF", b"RIFX") or head[8:12] != b"WAVE":
            return None
        order = "<" if head[:4] == b"RIFF" else ">"
        size = os.fstat(f.fileno()).st_size
        pos = 12
        while pos + 8 <= size:
            f.seek(pos)
            chunk = f.read(8)
            name, declared = chunk[:4], struct.unpack(order + "I", chunk[4:])[0]
            if name == b"data":
                held = size - pos - 8
                if declared in (0, 0xFFFFFFFF) or held >= declared:
                    return None
                return f"its data chunk declares {declared} bytes of samples, the file holds {held}"
            pos += 8 + declared + (declared & 1)  # chunks are padded to an even size
    return None


def _unreadable_reason(exc: Exception) -> str:
    """libsndfile's complaint without its ``Error opening '<path>':`` prefix; never "does not exist" for a
    file that exists (libsndfile says so, or "System error", for some files it cannot parse)."""
    text = str(exc).splitlines()[0].strip() if str(exc) else type(exc).__name__
    text = re.sub(r"^Error opening .*?: ", "", text)[:150]
    if re.search(r"does not exist|System error|No such file", text, re.IGNORECASE):
        return "libsndfile cannot open it although the file is there: corrupt, not audio, or not readable"
    return f"not readable as audio (libsndfile: {text})"


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
                 report: SkipReport, *, language: str, sampling_rate: int):
    """Write the Lhotse manifests of every split, ``skipped.json`` and ``audio.json``; return ``{split: CutSet}``.

    Utterances are sorted by id (deterministic files). A recording shared by several utterances
    (segments of one file) appears once in its split's recordings. A recording at a higher rate than
    ``sampling_rate`` gets Lhotse's ``Resample`` transform (decoded and resampled whenever it is
    loaded; features then see the recipe's rate); a cut of a recording with several channels takes
    channel 0. Both are counted per source rate / channel count in the log and in ``audio.json``.
    An empty split is an error naming the skip report, since the run cannot train or score without it.
    """
    from lhotse import CutSet, MonoCut, Recording, RecordingSet, SupervisionSegment, SupervisionSet

    out = Path(output_dir)
    report.summarise(log)
    report.write(out / "manifests" / "skipped.json")
    for split in SPLITS:
        if not splits.get(split):
            raise SenoneError(f"{corpus}: nothing left in the {split} split after skipping bad items "
                              f"(see {out / 'manifests' / 'skipped.json'}); fix the corpus or the split settings")
    cutsets = {}
    conversions: Counter = Counter()
    for split in SPLITS:
        recordings: dict[str, Recording] = {}
        supervisions, cuts = [], []
        for u in sorted(splits[split], key=lambda u: u.id):
            rec = recordings.get(u.recording_id)
            if rec is None:
                rec = _recording(u.recording_id, u.audio, sampling_rate, conversions)
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
    write_audio_report(out / "manifests" / "audio.json", conversions, sampling_rate, log)
    return cutsets


def _recording(rec_id: str, a: AudioInfo, sampling_rate: int, conversions: Counter):
    """The Lhotse recording of one probed file: its own rate and channels, resampled to the recipe's on load."""
    from lhotse import AudioSource, Recording

    rec = Recording(id=rec_id, sources=[AudioSource(type="file", channels=list(range(a.num_channels)),
                                                    source=str(a.path))],
                    sampling_rate=a.sampling_rate, num_samples=a.num_samples, duration=a.duration)
    if a.num_channels > 1:
        conversions[f"first channel of {a.num_channels}"] += 1
    if a.sampling_rate != sampling_rate:
        conversions[f"resampled {a.sampling_rate} -> {sampling_rate} Hz"] += 1
        rec = rec.resample(sampling_rate)
    return rec


def write_audio_report(path: str | os.PathLike, conversions: Counter, sampling_rate: int, logger: logging.Logger) -> None:
    """``audio.json``: how many recordings are resampled on load (per source rate) or used by their first channel."""
    for what, n in sorted(conversions.items()):
        logger.info("%d recording(s): %s", n, what)
    write_json(path, {"sampling_rate": sampling_rate, "recordings": dict(sorted(conversions.items()))})


def require_dir(path: str | os.PathLike | None, corpus: str, what: str = "corpus_dir") -> Path:
    """``path`` as an existing directory, or one error line saying how to pass it."""
    if not path:
        raise SenoneError(f"{corpus}: no {what} given; pass --config {what}=PATH (the folder of your copy)")
    p = Path(path).expanduser()
    if not p.is_dir():
        raise SenoneError(f"{corpus}: {what} {p} is not a directory (resolved: {p.resolve()}); "
                          f"pass --config {what}=PATH to your copy of the corpus")
    return p
