"""FSDD (Free Spoken Digit Dataset): real English isolated digits, read in place.

The corpus (CC BY-SA 4.0, "Free Spoken Digit Dataset, Zohar Jackson et al.") is 3,000 WAV files of
6 male speakers saying each digit 50 times, mono 16-bit at 8 kHz, silence trimmed, about 22 minutes.
File names are ``{digit}_{speaker}_{take}.wav`` under ``recordings/``; ``speakers.tsv`` (optional)
gives each speaker's gender and accent.

Design decisions:

* **In place.** Manifests point at the files under ``corpus_dir`` (absolute paths); nothing is copied.
* **Speaker-independent split.** Upstream's convention (takes 0-4 of every speaker as test) tests on
  the training speakers; here dev and test are whole speakers that training never hears, so the test
  WER is that of an unseen speaker. The default (``recipes/fsdd.yaml``) trains on jackson, yweweler,
  george and lucas (about 16 min), tunes on nicolas (dev) and tests on theo; the speaker lists are
  settings.
* **Labels.** The supervision text is the digit's English word in CMUdict spelling (``SEVEN``), the
  word the lexicon and the WER scorer see; ``custom`` keeps the digit and the take.
* **Bad files** (see :mod:`senone.data.corpus`): a name that is not ``{digit}_{speaker}_{take}.wav``,
  a file that does not open or is empty, a sample rate other than the recipe's, several channels, and
  two files that give the same utterance id (``7_theo_03.wav`` and ``7_theo_3.wav``) are skipped
  with a count per reason, and listed in ``manifests/skipped.json``.

Output: ``<out>/manifests/fsdd_{recordings,supervisions,cuts}_{train,dev,test}.jsonl.gz``,
``<out>/manifests/skipped.json`` and ``<out>/manifests/speakers.tsv`` (speaker, split, gender,
accent, utterances, minutes).
"""

from __future__ import annotations

import csv
import logging
import re
from collections import Counter
from pathlib import Path
from typing import Sequence

from senone import SenoneError
from senone.data.corpus import (
    Utterance,
    drop_duplicate_ids,
    probe_audio,
    require_dir,
    split_speakers,
    write_splits,
)
from senone.data.skips import SkipReport
from senone.io import write_text

log = logging.getLogger(__name__)

CORPUS = "fsdd"
SAMPLE_RATE = 8000
#: The digit words, in CMUdict's spelling (the lexicon's and the scorer's tokens).
DIGIT_WORDS = ("ZERO", "ONE", "TWO", "THREE", "FOUR", "FIVE", "SIX", "SEVEN", "EIGHT", "NINE")
_FILE_NAME = re.compile(r"(?P<digit>[0-9])_(?P<speaker>[A-Za-z0-9]+)_(?P<take>[0-9]+)\.wav")


def read_speaker_table(path: Path) -> dict[str, dict[str, str]]:
    """``speakers.tsv`` as ``{speaker: {column: value}}``; {} when the file is absent."""
    if not path.is_file():
        return {}
    with open(path, encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    if rows and "speaker" not in rows[0]:
        raise SenoneError(f"{path}: expected a header line with a 'speaker' column")
    return {r["speaker"]: r for r in rows if r.get("speaker")}


def find_recordings(corpus_dir: Path) -> tuple[Path, list[Path]]:
    """The folder of the WAV files (``recordings/`` or ``corpus_dir`` itself) and the files in it."""
    folder = corpus_dir / "recordings" if (corpus_dir / "recordings").is_dir() else corpus_dir
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() == ".wav")
    if not files:
        raise SenoneError(f"fsdd: no .wav files in {folder}; corpus_dir must be the FSDD folder "
                          "(with recordings/{digit}_{speaker}_{take}.wav)")
    return folder, files


def prepare_fsdd(
    output_dir: str | Path,
    *,
    corpus_dir: str | Path | None = None,
    dev_speakers: Sequence[str] = ("nicolas",),
    test_speakers: Sequence[str] = ("theo",),
    train_speakers: Sequence[str] | None = None,
    sampling_rate: int = SAMPLE_RATE,
):
    """Read FSDD from ``corpus_dir`` and write its manifests under ``output_dir``; ``{split: CutSet}``.

    ``train_speakers=None`` trains on every speaker not in dev or test; speakers named in no split are
    left out (logged).
    """
    root = require_dir(corpus_dir, CORPUS)
    folder, files = find_recordings(root)
    report = SkipReport(CORPUS)
    speaker_info = read_speaker_table(root / "speakers.tsv")

    utts: list[Utterance] = []
    named: set[str] = set()  # every speaker with a well-named file, usable or not: the split is over these
    for path in files:
        m = _FILE_NAME.fullmatch(path.name)
        if m is None:
            report.add(path.name, "unparsable_file_name", "expected {digit}_{speaker}_{take}.wav")
            continue
        speaker, digit, take = m.group("speaker"), int(m.group("digit")), int(m.group("take"))
        named.add(speaker)
        utt_id = f"{speaker}-{digit}-{take:02d}"  # speaker first: Kaldi's sorting convention
        audio = probe_audio(path, sampling_rate, report, utt_id)
        if audio is None:
            continue
        utts.append(Utterance(id=utt_id, speaker=speaker, text=DIGIT_WORDS[digit], audio=audio,
                              custom={"digit": digit, "take": take, "file": path.name}))
    utts = drop_duplicate_ids(utts, lambda u: u.id, report, "utterance")
    speakers = sorted(named)
    missing = [s for s in speakers if speaker_info and s not in speaker_info]
    if missing:
        log.info("fsdd: speaker(s) %s not in speakers.tsv (no gender/accent recorded)", ", ".join(missing))
    split_of_speaker = {s: split for split, names in split_speakers(
        speakers, dev=list(dev_speakers), test=list(test_speakers),
        train=list(train_speakers) if train_speakers is not None else None, corpus=CORPUS).items() for s in names}
    unused = [s for s in speakers if s not in split_of_speaker]
    if unused:
        log.info("fsdd: speaker(s) %s are in no split and left out", ", ".join(unused))
    by_split: dict[str, list[Utterance]] = {"train": [], "dev": [], "test": []}
    for u in utts:
        split = split_of_speaker.get(u.speaker)
        if split is not None:
            u.custom["accent"] = speaker_info.get(u.speaker, {}).get("accent")
            by_split[split].append(u)
    cutsets = write_splits(output_dir, CORPUS, by_split, report, language="English", sampling_rate=sampling_rate)

    count, seconds = Counter(), Counter()
    for split_utts in by_split.values():
        for u in split_utts:
            count[u.speaker] += 1
            seconds[u.speaker] += u.audio.duration
    lines = ["speaker\tsplit\tgender\taccent\tutterances\tminutes"]
    for s in speakers:
        info = speaker_info.get(s, {})
        lines.append(f"{s}\t{split_of_speaker.get(s, '-')}\t{info.get('gender', '')}\t{info.get('accent', '')}\t"
                     f"{count[s]}\t{seconds[s] / 60:.2f}")
    write_text(Path(output_dir) / "manifests" / "speakers.tsv", "\n".join(lines) + "\n")
    return cutsets
