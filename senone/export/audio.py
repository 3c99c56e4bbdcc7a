"""Audio to transcribe: audio files, a folder of them, a Kaldi ``wav.scp`` (data directory) or a Lhotse manifest.

Every input becomes a list of :class:`Utterance` (an id, a speaker when the input names one, and a Lhotse cut of
its audio). Speakers come from a manifest's supervisions, from ``utt2spk`` (given, or beside a ``wav.scp``), or
not at all (then every utterance is its own speaker: per-utterance CMVN and fMLLR, as Kaldi with ``utt2spk``
mapping each utterance to itself).

:func:`load_samples` reads one utterance as the model hears it: the first channel, resampled to the model's rate
(Lhotse's resampling: ``scipy.signal.resample_poly`` here, torchaudio is not installed), float32 in [-1, 1]. A rate
below the model's is refused (upsampling cannot restore the missing band, and the model never heard such audio),
and so are files that do not open, are empty or are shorter than one frame: each a one-line :class:`SenoneError`
naming the file.
"""

from __future__ import annotations

import logging
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from senone import SenoneError

log = logging.getLogger(__name__)

#: What a folder is searched for (soundfile/libsndfile reads all of them; mp3 needs libsndfile >= 1.1).
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".opus", ".mp3", ".sph", ".aiff", ".aif", ".au")
MANIFEST_SUFFIXES = (".jsonl", ".jsonl.gz", ".json", ".json.gz")


@dataclass
class Utterance:
    """One utterance to transcribe: ``cut`` is a Lhotse cut of its audio (a whole file or a segment)."""

    id: str
    speaker: str | None
    cut: object
    source: str  # the file (or command) it comes from, for messages

    @property
    def duration(self) -> float:
        return float(self.cut.duration)

    @property
    def sampling_rate(self) -> int:
        return int(self.cut.sampling_rate)


def _is_manifest(path: Path) -> bool:
    name = path.name.lower()
    return path.is_file() and name.endswith(MANIFEST_SUFFIXES)


def _recording(path: Path, recording_id: str):
    from lhotse import Recording

    if not path.is_file():
        raise SenoneError(f"{path}: audio file not found")
    if path.stat().st_size == 0:
        raise SenoneError(f"{path}: empty file (0 bytes); give a recording with audio in it")
    try:
        rec = Recording.from_file(path, recording_id=recording_id)
    except Exception as exc:  # soundfile, audioread and Lhotse raise many types for a file they cannot read
        raise SenoneError(f"{path}: the audio will not open ({_first_line(exc)}); give a WAV/FLAC/OGG/MP3 file") from None
    if rec.num_samples == 0:
        raise SenoneError(f"{path}: empty audio (0 samples); give a recording with audio in it")
    return rec


def _command_recording(command: str, recording_id: str):
    """A ``wav.scp`` pipe (``sox x.sph -t wav - |``): run it once, keep the audio it writes in memory."""
    from lhotse import Recording

    try:
        data = subprocess.run(command, shell=True, check=True, capture_output=True).stdout
    except subprocess.CalledProcessError as exc:
        err = exc.stderr.decode(errors="replace").strip().splitlines()
        raise SenoneError(f"wav.scp command for {recording_id} failed ({err[-1] if err else f'exit {exc.returncode}'}): "
                          f"{command}") from None
    if not data:
        raise SenoneError(f"wav.scp command for {recording_id} wrote no audio: {command}")
    try:
        return Recording.from_bytes(data, recording_id=recording_id)
    except Exception as exc:
        raise SenoneError(f"wav.scp command for {recording_id}: its output will not open as audio "
                          f"({_first_line(exc)}): {command}") from None


def _first_line(exc: BaseException) -> str:
    """The reason in an audio error: libsndfile's own words where Lhotse lists what each backend said."""
    text = str(exc).strip()
    lines = [line for line in text.splitlines() if line.strip()]
    for line in lines:
        if "LibsndfileError" in line or "Error opening" in line:
            reason = line.split(">: ")[-1]
            return reason.split("': ")[-1][:160] if "': " in reason else reason[:160]
    return (lines[0] if lines else type(exc).__name__)[:160]


def _mono_cut(rec, utt_id: str, start: float = 0.0, duration: float | None = None):
    """A one-channel cut of ``rec`` (its first channel)."""
    from lhotse import MonoCut

    duration = rec.duration - start if duration is None else duration
    return MonoCut(id=utt_id, start=start, duration=duration, channel=rec.channel_ids[0], recording=rec)


def read_kaldi_table(path: Path) -> dict[str, str]:
    """``key value...`` lines (``utt2spk``, ``wav.scp``): key → the rest of the line."""
    out: dict[str, str] = {}
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            parts = line.split(maxsplit=1)
            if len(parts) != 2:
                raise SenoneError(f"{path}:{lineno}: expected 'id value', got {line!r}")
            if parts[0] in out:
                raise SenoneError(f"{path}:{lineno}: id {parts[0]!r} occurs twice")
            out[parts[0]] = parts[1].strip()
    return out


def from_wav_scp(wav_scp: Path, utt2spk: dict[str, str] | None = None) -> list[Utterance]:
    """A Kaldi ``wav.scp`` (``id path`` or ``id command |``), with ``segments`` and ``utt2spk`` beside it if there."""
    folder = wav_scp.parent
    table = read_kaldi_table(wav_scp)
    if not table:
        raise SenoneError(f"{wav_scp}: no entries")
    if utt2spk is None and (folder / "utt2spk").is_file():
        utt2spk = read_kaldi_table(folder / "utt2spk")
    recs = {}
    for rid, value in table.items():
        if value.endswith("|"):
            recs[rid] = (_command_recording(value[:-1].strip(), rid), value)
        else:
            p = Path(value)
            if not p.is_absolute() and not p.exists():
                p = folder / p
            recs[rid] = (_recording(p, rid), str(p))
    utts = []
    if (folder / "segments").is_file() and wav_scp.name == "wav.scp":
        with open(folder / "segments", encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                parts = line.split()
                if not parts:
                    continue
                if len(parts) != 4:
                    raise SenoneError(f"{folder / 'segments'}:{lineno}: expected 'utt recording start end'")
                uid, rid, start, end = parts[0], parts[1], float(parts[2]), float(parts[3])
                if rid not in recs:
                    raise SenoneError(f"{folder / 'segments'}:{lineno}: recording {rid!r} is not in {wav_scp}")
                rec, src = recs[rid]
                end = rec.duration if end < 0 else min(end, rec.duration)
                if end <= start:
                    raise SenoneError(f"{folder / 'segments'}:{lineno}: segment {uid} is empty ({start} to {end} s)")
                utts.append(Utterance(uid, None, _mono_cut(rec, uid, start, end - start), src))
    else:
        utts = [Utterance(rid, None, _mono_cut(rec, rid), src) for rid, (rec, src) in recs.items()]
    return with_speakers(utts, utt2spk, source=str(folder / "utt2spk"))


def with_speakers(utts: list[Utterance], utt2spk: dict[str, str] | None, source: str = "utt2spk") -> list[Utterance]:
    """Give every utterance its speaker from ``utt2spk`` (all of them must be there)."""
    if not utt2spk:
        return utts
    missing = [u.id for u in utts if u.id not in utt2spk]
    if missing:
        raise SenoneError(f"{source}: no speaker for {len(missing)} of {len(utts)} utterances (e.g. {missing[0]}); "
                          "list every utterance id, or give no utt2spk (per-utterance normalisation)")
    for u in utts:
        u.speaker = utt2spk[u.id]
    return utts


def from_manifest(path: Path) -> list[Utterance]:
    """A Lhotse cuts or recordings manifest (speakers from the cuts' supervisions)."""
    from lhotse import CutSet, RecordingSet, load_manifest

    try:
        manifest = load_manifest(path)
    except Exception as exc:
        raise SenoneError(f"{path}: not a Lhotse cuts or recordings manifest ({_first_line(exc)})") from None
    utts = []
    if isinstance(manifest, RecordingSet):
        for rec in manifest:
            utts.append(Utterance(rec.id, None, _mono_cut(rec, rec.id), _source_of(rec)))
    elif isinstance(manifest, CutSet):
        for cut in manifest:
            if not cut.has_recording:
                raise SenoneError(f"{path}: cut {cut.id} has no recording; give a manifest of cuts with audio")
            if getattr(cut, "num_channels", 1) != 1:
                cut = _first_channel(cut)
            speaker = None
            for sup in getattr(cut, "supervisions", None) or []:
                speaker = sup.speaker or None
                break
            utts.append(Utterance(cut.id, speaker, cut, _source_of(cut.recording)))
    else:
        raise SenoneError(f"{path}: a {type(manifest).__name__} manifest; give cuts or recordings (with audio)")
    if not utts:
        raise SenoneError(f"{path}: the manifest is empty")
    return utts


def _first_channel(cut):
    from lhotse import MonoCut

    return MonoCut(id=cut.id, start=cut.start, duration=cut.duration, channel=cut.recording.channel_ids[0],
                   recording=cut.recording, supervisions=list(cut.supervisions))


def _source_of(rec) -> str:
    srcs = getattr(rec, "sources", None) or []
    return str(srcs[0].source) if srcs and srcs[0].type == "file" else rec.id


def from_files(paths: Sequence[Path], skipped: list | None = None) -> list[Utterance]:
    """Audio files; each is one utterance named by its file name without the suffix. With ``skipped`` (a list), a
    file that does not open is appended to it as ``(id, reason)`` instead of raising."""
    utts = []
    seen: dict[str, Path] = {}
    for p in paths:
        uid = p.stem if p.suffix else p.name
        if uid in seen:
            uid = str(p.with_suffix("")).replace(os.sep, "_")
            if uid in seen:
                raise SenoneError(f"{p}: two inputs have the utterance id {uid!r}; rename one")
        seen[uid] = p
        try:
            rec = _recording(p, uid)
        except SenoneError as exc:
            if skipped is None:
                raise
            log.warning("skipped: %s", exc)
            skipped.append((uid, str(exc)))
            continue
        utts.append(Utterance(uid, None, _mono_cut(rec, uid), str(p)))
    return utts


def find_audio(folder: Path) -> list[Path]:
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES)
    if not files:
        raise SenoneError(f"{folder}: no audio files in it ({', '.join(AUDIO_SUFFIXES)})")
    return files


def collect_inputs(inputs: Iterable[str | os.PathLike], utt2spk: str | os.PathLike | None = None, *,
                   skipped: list | None = None) -> list[Utterance]:
    """Every utterance the command line names: audio files, folders (searched recursively), ``wav.scp`` files or
    Kaldi data directories (with ``wav.scp``), Lhotse manifests. ``utt2spk`` names the speakers (it overrides a
    manifest's). ``skipped``: a list that collects audio files that do not open (instead of an error)."""
    spk = read_kaldi_table(Path(utt2spk)) if utt2spk else None
    utts: list[Utterance] = []
    files: list[Path] = []
    for item in inputs:
        p = Path(item)
        if not p.exists():
            raise SenoneError(f"{p}: no such file or folder")
        if p.is_dir() and (p / "wav.scp").is_file():
            utts += from_wav_scp(p / "wav.scp", spk)
        elif p.is_dir():
            files += find_audio(p)
        elif p.name == "wav.scp" or p.suffix == ".scp":
            utts += from_wav_scp(p, spk)
        elif _is_manifest(p):
            utts += from_manifest(p)
        else:
            files.append(p)
    utts += from_files(files, skipped)
    if not utts:
        raise SenoneError("no audio to transcribe")
    ids = set()
    for u in utts:
        if u.id in ids:
            raise SenoneError(f"utterance id {u.id!r} occurs twice in the inputs; ids must be unique")
        ids.add(u.id)
    if spk:
        with_speakers(utts, spk, source=str(utt2spk))
    return utts


def check_rate(utt: Utterance, model_rate: int) -> None:
    if utt.sampling_rate < model_rate:
        raise SenoneError(f"{utt.source}: sampled at {utt.sampling_rate} Hz, below the model's {model_rate} Hz; "
                          f"the model needs audio recorded at {model_rate} Hz or more (upsampling cannot restore "
                          "the missing frequencies)")


def load_samples(utt: Utterance, model_rate: int, min_samples: int) -> np.ndarray:
    """The utterance's first channel at the model's rate (float32); one-line errors for unusable audio."""
    check_rate(utt, model_rate)
    cut = utt.cut if utt.sampling_rate == model_rate else utt.cut.resample(model_rate)
    try:
        samples = cut.load_audio()
    except Exception as exc:
        raise SenoneError(f"{utt.source}: the audio will not open ({_first_line(exc)})") from None
    samples = np.asarray(samples, dtype=np.float32)
    if samples.ndim == 2:
        samples = samples[0]
    if samples.size == 0:
        raise SenoneError(f"{utt.source}: empty audio (0 samples)")
    if samples.size < min_samples:
        raise SenoneError(f"{utt.source}: {samples.size / model_rate * 1000:.1f} ms of audio, shorter than one "
                          f"{min_samples / model_rate * 1000:.0f} ms frame")
    if not np.all(np.isfinite(samples)):
        raise SenoneError(f"{utt.source}: the audio contains NaN or infinite samples")
    return samples
