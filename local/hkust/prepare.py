"""HKUST/MTS (LDC2005S15 audio + LDC2005T32 transcripts): Lhotse manifests from a local LDC copy.

The corpus is licensed from the LDC and never downloaded: point the recipe at your copy, either
the two releases separately (``audio_dir``: LDC2005S15, ``trans_dir``: LDC2005T32, Kaldi's two
arguments) or one folder that holds both (``corpus_dir``). Files are found wherever they sit
below those folders, as Kaldi's ``hkust_data_prep.sh`` finds them: ``*.sph`` under ``audio/train``
and ``audio/dev``, ``*.txt`` under ``trans/train`` and ``trans/dev`` (case-insensitive).

Audio. 897 calls, each a two-channel 8 kHz a-law NIST SPHERE file (side A on channel 1, B on
channel 2; one speaker per side). libsndfile reads these files as they are, so nothing is
converted or copied, and no ``sph2pipe`` is needed: every header is checked first (sample rate,
channels, coding, length). A ``shorten``-compressed file, which libsndfile cannot read, stops
preparation with an error that names ``sph2pipe`` and how to decompress the copy once. Lhotse
hands every ``.sph`` path to ``sph2pipe``, so the recordings point at links
``<out>/audio/<call>.sphere`` to the SPHERE files, which Lhotse reads through libsndfile.

Segments. Every transcript segment becomes a supervision on its side's channel (A → channel 0,
B → 1 in Lhotse's 0-based numbering) with the call side as speaker (``<call>-A``), as Kaldi's
recipe does (speakers are not linked across calls); the cut id is Kaldi's utterance id
``<call>-<side>-<start cs>-<end cs>``. Text is cleaned of mark-up (``local/hkust/transcript.py``)
and normalised (``senone.data.text``); the raw line is kept as ``supervision.custom["raw_text"]``.

Splits. The paper (and Kaldi) train on the official train set (873 calls) and report the
official dev set (24 calls). The paper's GMM system was trained on the whole training set; about
3 hours of training speech were held out of *network* training only, as the networks' validation
set; the dev set stayed out of every training and tuning decision. So here, with the training
calls put in one seeded random order (``seed``):

* ``test``: the official dev set (24 calls), decoded once; ``decode`` reports it as "test".
* ``dev``: the first training calls of that order, whole calls, until ``dev_hours`` of speech:
  where the LM weight is tuned. Out of the GMM, LM and network training, so the LM weight is
  tuned on speech and text no model has seen; kept small because every LM weight costs a decode.
* ``train``: every other official training call (GMM, LM and network training).
* the networks' validation set: the next calls of the order, whole calls, until
  ``nn_valid_hours`` of speech. They stay in ``train`` (the GMM trains on them and aligns them, so
  they have senone targets, as in the paper) and are listed in ``manifests/nn_valid_utts.txt``,
  which the recipe names as ``nn.valid_from``: the network stage holds exactly these out.

Calls never straddle splits, so neither do speakers, and no validation speaker is in the
networks' training data.

Bad input is skipped with a reason (``skipped.json`` next to the manifests, counts in the log):
unreadable, empty or truncated-header audio, another sample rate or channel count, a call with no
transcript or no audio, unreadable transcript lines or time stamps, segments past the end of the
audio (more than ``max_overshoot`` seconds; less is clipped, as Kaldi's ``extract-segments``
does), segments shorter than ``min_duration``, segments with no words left after cleaning, and a
repeated utterance id (the first is kept). A call found twice (two copies, or in train and dev)
stops preparation: going on would leak speech between splits.

Output (``<out>`` = ``output_dir``)::

    <out>/audio/<call>.sphere                       links to the LDC SPHERE files
    <out>/manifests/hkust_{recordings,supervisions,cuts}_{train,dev,test}.jsonl.gz
    <out>/manifests/nn_valid_utts.txt               the networks' validation utterances (ids in train)
    <out>/manifests/skipped.json                    what was left out, per reason
    <out>/manifests/normalization.json              what text normalisation removed and converted
    <out>/manifests/hkust_report.json               calls, speakers, utterances and hours per split (and nn_valid)
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np

from local.hkust.transcript import Segment, clean_markup, read_transcript
from senone import SenoneError
from senone.data import write_manifest
from senone.data.skips import SkipReport
from senone.data.sphere import SphereError, SphereHeader, read_sphere_header
from senone.data.text import NormalizationSummary, is_cjk_char, normalize_zh_report
from senone.io import atomic_path, write_json, write_text

log = logging.getLogger(__name__)

CORPUS = "hkust"
OFFICIAL_SPLITS = ("train", "dev")
SPLITS = ("train", "dev", "test")
EXPECTED_CALLS = {"train": 873, "dev": 24}
SIDES = {"A": 0, "B": 1}  # transcript side → Lhotse channel (SPHERE channel 1 and 2)
REPORT_NAME = f"{CORPUS}_report.json"
NN_VALID_NAME = "nn_valid_utts.txt"  # nn.valid_from of recipes/hkust.yaml


def manifest_path(output_dir: str | Path, kind: str, split: str) -> Path:
    """``<out>/manifests/hkust_<kind>_<split>.jsonl.gz`` (kind: recordings, supervisions, cuts)."""
    return Path(output_dir) / "manifests" / f"{CORPUS}_{kind}_{split}.jsonl.gz"


def _walk(root: Path, suffix: str) -> Iterable[Path]:
    """Every file below ``root`` (symlinked folders followed, as LDC copies often are) with ``suffix``."""
    for folder, _, files in os.walk(root, followlinks=True):
        for name in files:
            if name.lower().endswith(suffix):
                yield Path(folder) / name


def find_files(root: Path, kind: str, suffix: str) -> dict[str, dict[str, Path]]:
    """``{official split: {call: path}}`` for files under ``.../<kind>/<split>/`` below ``root``.

    A call found twice (in one split or in both) is an error naming both files.
    """
    found: dict[str, dict[str, Path]] = {s: {} for s in OFFICIAL_SPLITS}
    where: dict[str, Path] = {}
    for path in sorted(_walk(root, suffix)):
        rel = "/" + path.relative_to(root).as_posix().lower()
        split = next((s for s in OFFICIAL_SPLITS if f"/{kind}/{s}/" in rel), None)
        if split is None:
            continue
        call = path.stem
        if call in where:
            raise SenoneError(f"hkust: call {call} found twice ({where[call]} and {path}); remove one copy "
                              "(a call in both train and dev would leak test speech into training)")
        where[call] = path
        found[split][call] = path
    return found


@dataclass
class Call:
    """One call: its audio header, split and the kept, normalised segments."""

    id: str
    split: str
    audio: Path
    header: SphereHeader
    segments: list[tuple[Segment, str, float]] = field(default_factory=list)  # (segment, text, end)

    @property
    def duration(self) -> float:
        return self.header.num_samples / self.header.sample_rate

    @property
    def speech_seconds(self) -> float:
        return sum(end - seg.start for seg, _, end in self.segments)


def _check_audio(call: str, path: Path, sampling_rate: int, skips: SkipReport, notes: Counter) -> SphereHeader | None:
    """The call's SPHERE header if its audio is usable, else None (recorded in ``skips``)."""
    import soundfile as sf

    try:
        header = read_sphere_header(path)
    except SphereError as exc:
        reason = "empty_audio" if "empty file" in str(exc) else "unreadable_audio"
        skips.add(call, reason, str(exc))
        return None
    if header.compressed:
        raise SenoneError(
            f"{path}: SPHERE audio compressed with {header.sample_coding!r}, which libsndfile cannot read; "
            "decompress the corpus once with sph2pipe (`lhotse install-sph2pipe`, then `sph2pipe -f sph IN OUT` "
            "for every file) and point corpus.audio_dir at the decompressed copy")
    notes[f"sample_coding:{header.sample_coding}"] += 1
    if header.sample_rate != sampling_rate:
        skips.add(call, "sample_rate", f"{header.sample_rate} Hz, the recipe expects {sampling_rate} Hz")
        return None
    if header.channel_count != 2:
        skips.add(call, "channel_count", f"{header.channel_count} channel(s), HKUST calls have 2 (one per side)")
        return None
    if header.num_samples == 0:
        skips.add(call, "empty_audio", f"{path}: no samples")
        return None
    try:
        sf.info(str(path))
    except Exception as exc:  # libsndfile's errors are RuntimeError/LibsndfileError with its own text
        skips.add(call, "unreadable_audio", f"{path}: {str(exc).splitlines()[0][:120]}")
        return None
    if header.truncated:
        notes["audio_truncated"] += 1
        log.warning("%s: header announces %d samples, the file holds %d; using what is there", path,
                    header.header_samples, header.num_samples)
    return header


def _keep_segments(call: Call, segments: list[Segment], seen: set[str], skips: SkipReport, notes: Counter,
                   summary: NormalizationSummary, max_overshoot: float, min_duration: float) -> None:
    """Check, clean and normalise a call's segments into ``call.segments``."""
    duration = call.duration
    for seg in segments:
        if seg.start >= duration or seg.end > duration + max_overshoot:
            skips.add(seg.id, "segment_past_audio_end", f"{seg.source}: ends at {seg.end:.2f} s, audio is {duration:.2f} s")
            continue
        end = min(seg.end, duration)
        if end < seg.end:
            notes["segments_clipped_to_audio_end"] += 1
        if end - seg.start < min_duration:
            skips.add(seg.id, "segment_too_short", f"{seg.source}: {end - seg.start:.3f} s < {min_duration} s")
            continue
        if seg.id in seen:
            skips.add(seg.id, "duplicate_utterance_id", f"{seg.source}: the same side and times as an earlier line")
            continue
        cleaned, marks = clean_markup(seg.text)
        report = normalize_zh_report(cleaned)
        summary.add_markup(marks)
        summary.add(report, seg.id, original=seg.text)
        if not report.text:
            skips.add(seg.id, "no_words", f"{seg.source}: {seg.text[:60]!r}")
            continue
        if not (report.latin_words or any(is_cjk_char(c) for c in report.text)):
            skips.add(seg.id, "no_chinese_or_latin_words", f"{seg.source}: {report.text[:60]!r}")
            continue
        seen.add(seg.id)
        call.segments.append((seg, report.text, end))


def load_calls(audio_dir: Path, trans_dir: Path, sampling_rate: int, skips: SkipReport, notes: Counter,
               summary: NormalizationSummary, max_overshoot: float, min_duration: float) -> list[Call]:
    """Every usable call of both official splits with its kept segments, in call-id order."""
    audio = find_files(audio_dir, "audio", ".sph")
    trans = find_files(trans_dir, "trans", ".txt")
    if not any(audio.values()):
        raise SenoneError(f"hkust: no *.sph files under {audio_dir}/.../audio/{{train,dev}}/; set corpus.audio_dir "
                          "to your copy of LDC2005S15 (or corpus.corpus_dir to a folder holding both releases)")
    if not any(trans.values()):
        raise SenoneError(f"hkust: no *.txt files under {trans_dir}/.../trans/{{train,dev}}/; set corpus.trans_dir "
                          "to your copy of LDC2005T32 (or corpus.corpus_dir to a folder holding both releases)")
    for split in OFFICIAL_SPLITS:
        if len(audio[split]) != EXPECTED_CALLS[split]:
            log.warning("hkust: %d %s calls found, the release has %d", len(audio[split]), split, EXPECTED_CALLS[split])
        for call in sorted(set(trans[split]) - set(audio[split])):
            other = next((s for s in OFFICIAL_SPLITS if call in audio[s]), None)
            if other:
                raise SenoneError(f"hkust: call {call} has audio in {other} ({audio[other][call]}) but its transcript "
                                  f"in {split} ({trans[split][call]}); the two releases disagree, fix the copy")
            skips.add(call, "no_audio", f"transcript {trans[split][call]} has no .sph in audio/{split}")
    calls: list[Call] = []
    seen: set[str] = set()
    for split in OFFICIAL_SPLITS:
        for call_id, path in sorted(audio[split].items()):
            if call_id not in trans[split]:
                skips.add(call_id, "no_transcript", f"{path} has no .txt in trans/{split}")
                continue
            header = _check_audio(call_id, path, sampling_rate, skips, notes)
            if header is None:
                continue
            call = Call(call_id, split, path, header)
            _keep_segments(call, read_transcript(trans[split][call_id], skips), seen, skips, notes, summary,
                           max_overshoot, min_duration)
            if not call.segments:
                skips.add(call_id, "no_segments", "no usable segment left in its transcript")
                continue
            calls.append(call)
    return calls


def split_calls(calls: list[Call], seed: int, nn_valid_hours: float,
                dev_hours: float) -> tuple[dict[str, list[Call]], list[Call]]:
    """Official dev → test; official train → dev (held out) + train, and the networks' validation calls in train.

    Training calls are put in a random order (``seed``); ``dev`` takes calls from the front until it
    holds ``dev_hours`` of speech, the validation calls are the next ones until ``nn_valid_hours``,
    and ``train`` keeps every call but the dev calls. Returns ``({split: calls}, validation calls)``.
    """
    official_train = sorted((c for c in calls if c.split == "train"), key=lambda c: c.id)
    order = [official_train[i] for i in np.random.default_rng(seed).permutation(len(official_train))]

    def take(calls_left: list[Call], hours: float) -> list[Call]:
        out, total = [], 0.0
        for c in calls_left:
            if total >= hours * 3600:
                break
            out.append(c)
            total += c.speech_seconds
        return out

    dev = take(order, dev_hours)
    nn_valid = take(order[len(dev):], nn_valid_hours)
    dev_ids = {c.id for c in dev}
    splits = {
        "train": [c for c in official_train if c.id not in dev_ids],
        "dev": sorted(dev, key=lambda c: c.id),
        "test": sorted((c for c in calls if c.split == "dev"), key=lambda c: c.id),
    }
    for name in SPLITS:
        if not splits[name]:
            raise SenoneError(f"hkust: split {name} is empty ({len(official_train)} usable training calls, "
                              f"dev_hours={dev_hours}); check the corpus paths and the skipped.json report, or "
                              "lower dev_hours")
    if nn_valid and len(nn_valid) == len(splits["train"]):
        raise SenoneError(f"hkust: nn_valid_hours={nn_valid_hours} takes every one of the {len(nn_valid)} training "
                          "calls left after dev for the networks' validation; lower nn_valid_hours")
    return splits, sorted(nn_valid, key=lambda c: c.id)


def _link(call: Call, audio_dir: Path) -> Path:
    """``<out>/audio/<call>.sphere`` → the LDC file (see module docstring), made atomically."""
    link = audio_dir / f"{call.id}.sphere"
    target = call.audio.resolve()
    if link.is_symlink() and Path(os.readlink(link)) == target:
        return link
    with atomic_path(link) as tmp:
        tmp.unlink()
        tmp.symlink_to(target)
    return link


def _write_split(output_dir: Path, split: str, calls: list[Call]):
    from lhotse import AudioSource, CutSet, MonoCut, Recording, RecordingSet, SupervisionSegment, SupervisionSet
    from lhotse.utils import fastcopy

    recordings, supervisions, cuts = [], [], []
    for call in calls:
        link = _link(call, output_dir / "audio")
        n = call.header.num_samples
        sr = call.header.sample_rate
        rec = Recording(id=call.id, sources=[AudioSource(type="file", channels=[0, 1], source=str(link))],
                        sampling_rate=sr, num_samples=n, duration=n / sr)
        recordings.append(rec)
        for seg, text, end in sorted(call.segments, key=lambda s: s[0].id):
            start, duration = round(seg.start, 4), round(end - seg.start, 4)
            sup = SupervisionSegment(id=seg.id, recording_id=call.id, start=start, duration=duration,
                                     channel=SIDES[seg.side], text=text, language="Chinese",
                                     speaker=f"{call.id}-{seg.side}", custom={"raw_text": seg.text})
            supervisions.append(sup)
            cuts.append(MonoCut(id=seg.id, start=start, duration=duration, channel=SIDES[seg.side], recording=rec,
                                supervisions=[fastcopy(sup, start=0.0)]))
    cutset = CutSet.from_cuts(cuts)
    write_manifest(RecordingSet.from_recordings(recordings), manifest_path(output_dir, "recordings", split))
    write_manifest(SupervisionSet.from_segments(supervisions), manifest_path(output_dir, "supervisions", split))
    write_manifest(cutset, manifest_path(output_dir, "cuts", split))
    return cutset


def _remove_stale_valid_split(output_dir: Path) -> None:
    """Remove the ``valid`` split manifests an earlier layout wrote (its calls were out of train; now they are
    in it and listed in ``nn_valid_utts.txt``), so no stage reads the old split by mistake."""
    for kind in ("recordings", "supervisions", "cuts"):
        stale = manifest_path(output_dir, kind, "valid")
        if stale.is_file():
            stale.unlink()
            log.info("hkust: removed %s (the validation calls are now in train, listed in %s)", stale, NN_VALID_NAME)


def _split_stats(calls: list[Call]) -> dict:
    speech = sum(c.speech_seconds for c in calls)
    speakers = {(c.id, seg.side) for c in calls for seg, _, _ in c.segments}
    return {"calls": len(calls), "speakers": len(speakers), "utterances": sum(len(c.segments) for c in calls),
            "speech_hours": round(speech / 3600, 4), "audio_hours": round(sum(2 * c.duration for c in calls) / 3600, 4)}


def prepare_hkust(
    output_dir: str | Path,
    *,
    corpus_dir: str | Path | None = None,
    audio_dir: str | Path | None = None,
    trans_dir: str | Path | None = None,
    seed: int = 0,
    nn_valid_hours: float = 3.0,
    dev_hours: float = 1.0,
    sampling_rate: int = 8000,
    max_overshoot: float = 0.5,
    min_duration: float = 0.1,
):
    """Write HKUST manifests and the networks' validation list under ``output_dir``; return ``{split: CutSet}``
    (train, dev, test).

    Args:
        output_dir: recipe data folder (``audio/`` links and ``manifests/`` are made inside).
        corpus_dir: a folder holding both LDC releases (used for whichever of the next two is unset).
        audio_dir: the LDC2005S15 copy (``.../audio/{train,dev}/*.sph`` below it).
        trans_dir: the LDC2005T32 copy (``.../trans/{train,dev}/*.txt`` below it).
        seed: orders the training calls that dev and the networks' validation set are drawn from.
        nn_valid_hours: training speech, whole calls, listed as the networks' validation set (the paper:
            about 3 h); these calls stay in ``train`` for the GMM and LM. 0: an empty list.
        dev_hours: training speech, whole calls, held out of all training for tuning the LM weight.
        sampling_rate: the recipe's rate; calls at another rate are skipped.
        max_overshoot: a segment may end this many seconds past its audio (clipped); more is skipped.
        min_duration: shorter segments are skipped (Kaldi's ``extract-segments`` default, 0.1 s).
    """
    output_dir = Path(output_dir)
    audio_root = audio_dir or corpus_dir
    trans_root = trans_dir or corpus_dir
    if audio_root is None or trans_root is None:
        raise SenoneError("hkust: say where your LDC copy is: corpus.audio_dir (LDC2005S15) and corpus.trans_dir "
                          "(LDC2005T32), or corpus.corpus_dir for a folder holding both; see README.md")
    for name, root in (("audio_dir", audio_root), ("trans_dir", trans_root)):
        if not Path(root).is_dir():
            raise SenoneError(f"hkust: corpus.{name} {root} is not a folder; point it at your LDC copy")
    if nn_valid_hours < 0 or dev_hours <= 0:
        raise SenoneError(f"hkust: dev_hours must be > 0 and nn_valid_hours >= 0 (got {dev_hours}, {nn_valid_hours})")

    skips = SkipReport(CORPUS)
    summary = NormalizationSummary(CORPUS)
    notes: Counter = Counter()
    calls = load_calls(Path(audio_root), Path(trans_root), sampling_rate, skips, notes, summary,
                       max_overshoot, min_duration)
    splits, nn_valid = split_calls(calls, seed, nn_valid_hours, dev_hours)
    cutsets = {split: _write_split(output_dir, split, splits[split]) for split in SPLITS}

    manifests = output_dir / "manifests"
    nn_valid_utts = sorted(seg.id for c in nn_valid for seg, _, _ in c.segments)
    write_text(manifests / NN_VALID_NAME, "".join(f"{u}\n" for u in nn_valid_utts))
    _remove_stale_valid_split(output_dir)
    skips.summarise(log)
    skips.write(manifests / "skipped.json")
    summary.summarise(log)
    summary.write(manifests / "normalization.json")
    stats = {split: _split_stats(splits[split]) for split in SPLITS}
    stats["nn_valid"] = _split_stats(nn_valid)
    write_json(manifests / REPORT_NAME, {
        "corpus": CORPUS,
        "config": {"audio_dir": str(Path(audio_root).resolve()), "trans_dir": str(Path(trans_root).resolve()),
                   "seed": seed, "nn_valid_hours": nn_valid_hours, "dev_hours": dev_hours,
                   "sampling_rate": sampling_rate, "max_overshoot": max_overshoot, "min_duration": min_duration},
        "splits": stats,
        "split_calls": {"nn_valid": [c.id for c in nn_valid], "dev": [c.id for c in splits["dev"]],
                        "test": [c.id for c in splits["test"]]},
        "notes": dict(sorted(notes.items())),
        "skipped": skips.total,
    })
    log.info("hkust: %s (nn_valid: calls in train listed in %s)", ", ".join(
        f"{s} {v['calls']} calls {v['utterances']} utts {v['speech_hours']:.2f} h" for s, v in stats.items()),
        manifests / NN_VALID_NAME)
    return cutsets
