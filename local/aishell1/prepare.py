"""AISHELL-1 (OpenSLR 33): Lhotse's ``prepare_aishell`` on a local copy, or on one it downloads.

AISHELL-1 is open (Apache 2.0): 178 h of 16 kHz read Mandarin, 400 speakers, with the official
train (340 speakers), dev (40) and test (20) split that Kaldi's ``egs/aishell/s5`` reports. Give
``corpus_dir``, the folder that holds ``data_aishell/`` (``wav/{train,dev,test}/<speaker>/*.wav``,
``transcript/aishell_transcript_v0.8.txt``), or set ``download: true`` to fetch and unpack it
(about 15 GB, Lhotse's ``download_aishell``) into ``download_dir`` on a machine that is online.

Lhotse's recipe reads the transcript, upper-cases Latin letters and removes the word spaces; here
:func:`senone.data.text.normalize_zh_report` then applies the project's Mandarin normal form to
every transcript (numerals, full-width forms, punctuation) and ``normalization.json`` records
what it changed.

Pronunciations: Lhotse's recipe does not use the corpus's ``resource_aishell/lexicon.txt``, and
neither does this one. That lexicon spells syllables in its own phone set (zero initials written
``aa``/``ii``/``uu``/``vv``), which cannot be mixed with this project's pypinyin initials and tonal
finals; the lang stage's Mandarin lexicon builder reads every character of the transcripts.

Lhotse's recipe stops at the first unreadable file and keeps the last of two transcript lines
with one id. To skip bad input with a reason instead (``skipped.json``): transcript lines with a
repeated id keep the first (``duplicate_utterance_id``); if Lhotse fails on the audio, every wav
header is checked (``unreadable_audio``, ``empty_audio``) and Lhotse runs again on a view of the
corpus whose transcript leaves those utterances out (Lhotse then passes over their wavs). Its
manifests are checked for the recipe's sample rate and one channel, and for transcripts with no
words left. A wav without a transcript line is counted (``no_transcript``; the release has a
few hundred). An utterance id in two splits stops preparation (speech would leak into test).

Output (``<out>`` = ``output_dir``)::

    <out>/manifests/aishell1_{recordings,supervisions,cuts}_{train,dev,test}.jsonl.gz
    <out>/manifests/skipped.json, normalization.json, aishell1_report.json

Audio stays where it is; the recordings point at the wav files of the copy.
"""

from __future__ import annotations

import logging
import shutil
import socket
import tempfile
from collections import Counter
from pathlib import Path
from urllib.parse import urlparse

from senone import SenoneError
from senone.data import write_manifest
from senone.data.skips import SkipReport
from senone.data.text import NormalizationSummary, is_cjk_char, normalize_zh_report
from senone.io import write_json

log = logging.getLogger(__name__)

CORPUS = "aishell1"
SPLITS = ("train", "dev", "test")
TRANSCRIPT = Path("data_aishell") / "transcript" / "aishell_transcript_v0.8.txt"
WAV_DIR = Path("data_aishell") / "wav"
OPENSLR = "http://www.openslr.org/resources"
REPORT_NAME = f"{CORPUS}_report.json"


def manifest_path(output_dir: str | Path, kind: str, split: str) -> Path:
    """``<out>/manifests/aishell1_<kind>_<split>.jsonl.gz`` (kind: recordings, supervisions, cuts)."""
    return Path(output_dir) / "manifests" / f"{CORPUS}_{kind}_{split}.jsonl.gz"


def _has_copy(root: Path) -> bool:
    return (root / TRANSCRIPT).is_file() and (root / WAV_DIR).is_dir()


def locate_corpus(corpus_dir: str | Path | None, download: bool, download_dir: str | Path | None,
                  base_url: str = OPENSLR) -> Path:
    """The folder holding ``data_aishell/``: the local copy, else a download (if allowed and online)."""
    if corpus_dir is not None:
        root = Path(corpus_dir)
        if root.name == "data_aishell":  # pointed at data_aishell itself
            root = root.parent
        if _has_copy(root):
            return root
        if not download:
            raise SenoneError(f"aishell1: no AISHELL-1 copy at {corpus_dir} (expected {root / TRANSCRIPT} and "
                              f"{root / WAV_DIR}/); fix corpus.corpus_dir, or set corpus.download: true")
    elif not download:
        raise SenoneError("aishell1: set corpus.corpus_dir to your AISHELL-1 copy (the folder holding data_aishell/), "
                          "or corpus.download: true to fetch it from openslr.org (about 15 GB)")
    target = Path(download_dir or corpus_dir or "downloads")
    return download_corpus(target, base_url)


def download_corpus(target: Path, base_url: str = OPENSLR) -> Path:
    """Lhotse's ``download_aishell`` into ``target``; a clear error when the host cannot be reached."""
    from lhotse.recipes.aishell import download_aishell

    url = urlparse(base_url)
    host, port = url.hostname or "", url.port or (443 if url.scheme == "https" else 80)
    manual = (f"download data_aishell.tgz from https://www.openslr.org/33 on a machine that is online, unpack it "
              f"(and the wav/*.tar.gz inside) and set corpus.corpus_dir to the folder holding data_aishell/")
    try:
        socket.create_connection((host, port), timeout=10).close()
    except OSError as exc:
        raise SenoneError(f"aishell1: cannot reach {host}:{port} to download AISHELL-1 ({exc}); this machine seems "
                          f"offline: {manual}") from None
    log.info("downloading AISHELL-1 (about 15 GB) from %s into %s", base_url, target)
    try:
        root = download_aishell(target, base_url=base_url)
    except Exception as exc:  # urllib/tarfile errors of many types
        raise SenoneError(f"aishell1: download from {base_url} failed ({type(exc).__name__}: {exc}); "
                          f"run again to resume, or {manual}") from None
    if not _has_copy(root):
        raise SenoneError(f"aishell1: the download into {root} has no {TRANSCRIPT}; remove it and run again")
    return root


def read_transcript(path: Path, skips: SkipReport) -> tuple[list[str], set[str]]:
    """The transcript's lines with repeated ids removed (the first kept, the others recorded in ``skips``),
    and the set of ids."""
    lines, ids = [], set()
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        parts = line.split(maxsplit=1)
        if not parts:
            continue
        if parts[0] in ids:
            skips.add(parts[0], "duplicate_utterance_id", f"{path.name}:{n}: listed again")
            continue
        ids.add(parts[0])
        lines.append(line)
    return lines, ids


def scan_wavs(root: Path) -> dict[str, dict[str, Path]]:
    """``{split: {utterance id: wav path}}`` from the file names alone; an id in two places is an error."""
    found: dict[str, dict[str, Path]] = {s: {} for s in SPLITS}
    where: dict[str, Path] = {}
    for split in SPLITS:
        for path in sorted((root / WAV_DIR / split).rglob("*.wav")):
            if path.stem in where:
                raise SenoneError(f"aishell1: utterance {path.stem} found twice ({where[path.stem]} and {path}); "
                                  "remove one copy (in two splits it would leak test speech into training)")
            where[path.stem] = path
            found[split][path.stem] = path
    if not where:
        raise SenoneError(f"aishell1: no wav files under {root / WAV_DIR}/{{train,dev,test}}/; unpack wav/*.tar.gz there")
    return found


def bad_wavs(wavs: dict[str, dict[str, Path]], skips: SkipReport) -> set[str]:
    """Ids of wavs whose header libsndfile cannot read, or that hold no samples (recorded in ``skips``)."""
    import soundfile as sf
    from tqdm import tqdm

    bad = set()
    paths = [(utt, p) for split in SPLITS for utt, p in wavs[split].items()]
    for utt, path in tqdm(paths, desc="aishell1: checking wav headers", mininterval=5):
        try:
            frames = sf.info(str(path)).frames
        except Exception as exc:  # libsndfile raises its own error types
            skips.add(utt, "empty_audio" if path.stat().st_size == 0 else "unreadable_audio",
                      f"{path}: {str(exc).splitlines()[0][:120]}")
            bad.add(utt)
            continue
        if frames == 0:
            skips.add(utt, "empty_audio", f"{path}: no samples")
            bad.add(utt)
    return bad


def run_lhotse(root: Path, transcript_lines: list[str], rewrite: bool, work_dir: Path) -> dict:
    """Lhotse's ``prepare_aishell`` on the copy, or on a view whose transcript is ``transcript_lines``.

    The view (``rewrite=True``) links ``data_aishell/wav`` to the copy and holds the filtered
    transcript; the recordings' paths are mapped back to the copy afterwards.
    """
    from lhotse import RecordingSet
    from lhotse.recipes.aishell import prepare_aishell
    from lhotse.utils import fastcopy

    if not rewrite:
        return prepare_aishell(root)
    view = Path(tempfile.mkdtemp(prefix=".aishell_view.", dir=work_dir))
    try:
        (view / TRANSCRIPT).parent.mkdir(parents=True)
        (view / TRANSCRIPT).write_text("".join(f"{line}\n" for line in transcript_lines), encoding="utf-8")
        (view / WAV_DIR).symlink_to((root / WAV_DIR).resolve(), target_is_directory=True)
        manifests = prepare_aishell(view)
    finally:
        shutil.rmtree(view, ignore_errors=True)
    prefix, real = str(view / WAV_DIR), str((root / WAV_DIR).resolve())
    for parts in manifests.values():
        parts["recordings"] = RecordingSet.from_recordings(
            fastcopy(r, sources=[fastcopy(s, source=s.source.replace(prefix, real, 1)) for s in r.sources])
            for r in parts["recordings"])
    return manifests


def _check_and_normalise(split: str, parts: dict, sampling_rate: int, min_duration: float, skips: SkipReport,
                         summary: NormalizationSummary):
    """The split's cuts (sorted by id) after the recipe's checks and text normalisation."""
    from lhotse import CutSet, MonoCut, RecordingSet, SupervisionSet
    from lhotse.utils import fastcopy

    recordings = {r.id: r for r in parts["recordings"]}
    kept_recs, kept_sups, cuts = [], [], []
    for sup in sorted(parts["supervisions"], key=lambda s: s.id):
        rec = recordings.get(sup.recording_id)
        if rec is None:
            continue
        if rec.sampling_rate != sampling_rate:
            skips.add(sup.id, "sample_rate", f"{rec.sampling_rate} Hz, the recipe expects {sampling_rate} Hz")
            continue
        if rec.num_channels != 1:
            skips.add(sup.id, "channel_count", f"{rec.num_channels} channels, AISHELL-1 is mono")
            continue
        if rec.duration < min_duration:
            skips.add(sup.id, "audio_too_short", f"{rec.duration:.3f} s < {min_duration} s")
            continue
        report = normalize_zh_report(sup.text or "")
        summary.add(report, sup.id)
        if not (report.latin_words or any(is_cjk_char(c) for c in report.text)):
            skips.add(sup.id, "no_words", f"transcript {sup.text!r}")
            continue
        sup = fastcopy(sup, text=report.text)
        kept_recs.append(rec)
        kept_sups.append(sup)
        cuts.append(MonoCut(id=sup.id, start=0.0, duration=rec.duration, channel=0, recording=rec, supervisions=[sup]))
    if not cuts:
        raise SenoneError(f"aishell1: no usable utterance in split {split}; see skipped.json next to the manifests")
    return RecordingSet.from_recordings(kept_recs), SupervisionSet.from_segments(kept_sups), CutSet.from_cuts(cuts)


def prepare_aishell1(
    output_dir: str | Path,
    *,
    corpus_dir: str | Path | None = None,
    download: bool = False,
    download_dir: str | Path | None = None,
    base_url: str = OPENSLR,
    sampling_rate: int = 16000,
    min_duration: float = 0.1,
):
    """Write AISHELL-1 manifests under ``output_dir`` and return ``{split: CutSet}`` (train, dev, test).

    Args:
        output_dir: recipe data folder (``manifests/`` is made inside).
        corpus_dir: the folder holding ``data_aishell/`` (or ``data_aishell`` itself).
        download: fetch the corpus (Lhotse's ``download_aishell``) when there is no local copy.
        download_dir: where to download to (default: ``corpus_dir``, else ``./downloads``).
        base_url: OpenSLR's resources address (a mirror may be given).
        sampling_rate: the recipe's rate; recordings at another rate are skipped.
        min_duration: shorter recordings are skipped.
    """
    output_dir = Path(output_dir)
    root = locate_corpus(corpus_dir, download, download_dir, base_url)
    skips = SkipReport(CORPUS)
    summary = NormalizationSummary(CORPUS)
    lines, ids = read_transcript(root / TRANSCRIPT, skips)
    wavs = scan_wavs(root)
    for split in SPLITS:
        for utt in sorted(set(wavs[split]) - ids):
            skips.add(utt, "no_transcript", f"{wavs[split][utt]} has no line in {TRANSCRIPT.name}")
    output_dir.mkdir(parents=True, exist_ok=True)
    filtered = bool(skips.counts["duplicate_utterance_id"])
    try:
        manifests = run_lhotse(root, lines, filtered, output_dir)
    except SenoneError:
        raise
    except Exception as exc:  # an unreadable wav: find every bad one, then let Lhotse pass over them
        log.warning("aishell1: Lhotse's preparation failed (%s: %s); checking every wav header", type(exc).__name__,
                    str(exc).splitlines()[0][:200] if str(exc) else "")
        bad = bad_wavs(wavs, skips)
        if not bad:
            raise SenoneError(f"aishell1: Lhotse's prepare_aishell failed on {root} ({type(exc).__name__}: {exc}) and "
                              "no wav header is broken; check the copy") from None
        manifests = run_lhotse(root, [line for line in lines if line.split(maxsplit=1)[0] not in bad], True, output_dir)

    cutsets, stats = {}, {}
    for split in SPLITS:
        recs, sups, cuts = _check_and_normalise(split, manifests[split], sampling_rate, min_duration, skips, summary)
        write_manifest(recs, manifest_path(output_dir, "recordings", split))
        write_manifest(sups, manifest_path(output_dir, "supervisions", split))
        write_manifest(cuts, manifest_path(output_dir, "cuts", split))
        cutsets[split] = cuts
        stats[split] = {"utterances": len(cuts), "speakers": len({s.speaker for s in sups}),
                        "hours": round(sum(c.duration for c in cuts) / 3600, 4)}
    manifests_dir = output_dir / "manifests"
    skips.summarise(log)
    skips.write(manifests_dir / "skipped.json")
    summary.summarise(log)
    summary.write(manifests_dir / "normalization.json")
    write_json(manifests_dir / REPORT_NAME, {
        "corpus": CORPUS, "source": str(root.resolve()),
        "config": {"sampling_rate": sampling_rate, "min_duration": min_duration},
        "splits": stats, "skipped": skips.total,
    })
    log.info("aishell1: %s", ", ".join(f"{s} {v['utterances']} utts {v['speakers']} speakers {v['hours']:.2f} h"
                                       for s, v in stats.items()))
    return cutsets
