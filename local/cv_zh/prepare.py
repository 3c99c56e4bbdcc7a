"""Mozilla Common Voice, Mandarin (zh-CN): real read speech from a release folder, MP3 read in place.

``corpus_dir`` is a Common Voice release folder holding ``zh-CN/`` (or ``zh-CN`` itself):
``train.tsv``, ``dev.tsv``, optionally ``test.tsv``, and ``clips/*.mp3`` (48 kHz mono, 64 kbit/s).
The clips are decoded by libsndfile (``soundfile``, which reads MP3 since libsndfile 1.1; Lhotse's
audio backends use the same library for these files) and resampled to the recipe's rate on the fly
by Lhotse (each recording carries a ``Resample`` transform); nothing is converted on disk.

**Why not Lhotse's ``prepare_commonvoice``.** It reads this layout and works offline, but on this
corpus it fails or loses data silently: it reads the TSV columns ``accents`` and ``variant`` of
newer releases, so on a release with an ``accent`` column (this one) every row raises ``KeyError``;
a clip listed but missing is logged at INFO and dropped without a count; one corrupt MP3 raises in
``Recording.from_file`` and stops the whole preparation; a ``path`` listed twice becomes two
recordings with one id; and the MP3 length it stores is libsndfile's estimate from the file size
(270-852 samples longer than the decoded signal). Here the TSVs are read with the same parser
settings (tab-separated, no quoting: sentences contain unbalanced quotes), every clip is decoded
once to get its true length, and whatever cannot be used is a counted skip in ``skipped.json``.

**Speakers and metadata.** Speaker = ``client_id``; the supervisions' custom fields keep the TSV's
metadata (``gender``, ``age``, ``accent`` or ``accents``, ``up_votes``, ``down_votes``, where given)
and the raw sentence (``raw_text``). Utterance ids are ``<speaker prefix>-<clip name>`` (speaker first, as Kaldi sorts),
the prefix being the shortest leading part (at least 8 characters) of the ``client_id`` that tells
every speaker of the release apart.

**Splits** (fixed so that other tools' numbers on the same halves compare): train = the official
train split. The official dev split's speakers, sorted by ``client_id``, are divided alternately:
the 1st, 3rd, 5th... tune the LM weight (``dev``), the 2nd, 4th, 6th... are the test set, unless the
release has ``test.tsv``: then the official test split is the test set and the second half of dev
is not used. The same command runs unchanged on both kinds of copy.

**Text**: :func:`senone.data.text.normalize_zh_report` (punctuation removed, full-width forms,
numerals as spoken), summed in ``normalization.json``. Skipped, with a count per reason: a sentence
empty after normalisation (``empty_transcript``) or without a Chinese character or Latin word
(``no_words``); a clip missing (``missing_audio_file``), unreadable or corrupt (``unreadable_audio``),
cut short (``truncated_audio``: decodes to over one MPEG frame less than its header's length), empty,
at a rate below the recipe's, or shorter than :data:`MIN_SECONDS_PER_CHAR` per character of its
sentence (``audio_too_short_for_text``: it cannot be aligned, each syllable being at least two
3-state phones); a ``path`` listed more than once (``duplicate_path``: every copy goes, naming each
place); a TSV line with another number of fields than its header (``bad_tsv_line``). A TSV without
the ``client_id``, ``path`` or ``sentence`` column is one error line naming the file.

Output (``<out>`` = ``output_dir``)::

    <out>/manifests/cv_zh_{recordings,supervisions,cuts}_{train,dev,test}.jsonl.gz
    <out>/manifests/skipped.json, audio.json, normalization.json, cv_zh_report.json
"""

from __future__ import annotations

import csv
import logging
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from senone import SenoneError
from senone.data.corpus import Utterance, probe_audio, require_dir, write_splits
from senone.data.skips import SkipReport
from senone.data.text import NormalizationSummary, is_cjk_char, normalize_zh_report
from senone.io import write_json

log = logging.getLogger(__name__)

CORPUS = "cv_zh"
REQUIRED_COLUMNS = ("client_id", "path", "sentence")
#: TSV columns kept as the supervision's custom fields (whichever the release has).
METADATA_COLUMNS = ("age", "accent", "accents", "variant", "up_votes", "down_votes", "locale")
#: Shortest plausible audio per Chinese character: a syllable is at least two phones of three HMM
#: states, 10 ms each. The intact clips of the shared copy run at 1.3-5.8 characters per second.
MIN_SECONDS_PER_CHAR = 0.06
MIN_SPEAKER_PREFIX = 8


@dataclass(frozen=True)
class Row:
    """One clip of a TSV file, where it was listed and what it says."""

    split: str
    lineno: int
    client_id: str
    path: str
    sentence: str
    gender: str
    metadata: dict

    @property
    def where(self) -> str:
        return f"{self.split}.tsv:{self.lineno}"


def locate(corpus_dir: str | Path | None, locale: str) -> Path:
    """The ``<locale>`` folder of the release (``corpus_dir`` holds it, or is it)."""
    root = require_dir(corpus_dir, CORPUS)
    for candidate in (root / locale, root):
        if (candidate / "train.tsv").is_file() and (candidate / "dev.tsv").is_file():
            return candidate
    raise SenoneError(f"cv_zh: no {locale}/train.tsv and dev.tsv under {root}; pass --config corpus_dir=PATH with "
                      f"PATH the Common Voice release folder (holding {locale}/) or the {locale} folder itself")


def read_tsv(path: Path, split: str, report: SkipReport) -> list[Row]:
    """The rows of one Common Voice TSV; a missing column is an error, a malformed line a counted skip."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise SenoneError(f"{path}: not UTF-8 text (byte {exc.start}); Common Voice TSVs are UTF-8") from None
    reader = csv.reader(lines, delimiter="\t", quoting=csv.QUOTE_NONE)
    header = next(reader, None)
    missing = [c for c in REQUIRED_COLUMNS if c not in (header or [])]
    if missing:
        raise SenoneError(f"{path}: no column {', '.join(missing)} in its header ({' '.join(header or []) or 'empty'}); "
                          "a Common Voice TSV starts with client_id, path, sentence, ...")
    col = {name: i for i, name in enumerate(header)}
    rows = []
    for lineno, fields in enumerate(reader, start=2):
        if not fields:
            continue
        if len(fields) != len(header):
            report.add(f"{split}.tsv:{lineno}", "bad_tsv_line",
                       f"{path}:{lineno}: {len(fields)} tab-separated fields, the header has {len(header)}")
            continue
        rows.append(Row(split=split, lineno=lineno, client_id=fields[col["client_id"]].strip(),
                        path=fields[col["path"]].strip(), sentence=fields[col["sentence"]],
                        gender=fields[col["gender"]].strip() if "gender" in col else "",
                        metadata={k: fields[col[k]] for k in METADATA_COLUMNS if k in col and fields[col[k]]}))
    return rows


def drop_duplicate_paths(rows: list[Row], report: SkipReport) -> list[Row]:
    """``rows`` without every clip listed more than once (in one TSV or several): nothing says which is right."""
    places: dict[str, list[Row]] = defaultdict(list)
    for r in rows:
        places[r.path].append(r)
    for path, listed in sorted(places.items()):
        if len(listed) > 1:
            report.add(path, "duplicate_path", f"listed {len(listed)} times ({', '.join(r.where for r in listed)}); "
                       "every copy left out")
    return [r for r in rows if len(places[r.path]) == 1]


def speaker_prefixes(client_ids: set[str]) -> dict[str, str]:
    """Each ``client_id`` → its shortest leading part (≥ 8 characters) that no other speaker shares."""
    n = MIN_SPEAKER_PREFIX
    while len({c[:n] for c in client_ids}) < len(client_ids):
        n += 4
    return {c: c[:n] for c in client_ids}


def dev_halves(dev_rows: list[Row]) -> tuple[list[str], list[str]]:
    """The official dev split's speakers sorted by ``client_id``: (1st, 3rd, 5th..., 2nd, 4th, 6th...)."""
    speakers = sorted({r.client_id for r in dev_rows})
    return speakers[0::2], speakers[1::2]


def to_utterance(row: Row, clips: Path, prefix: str, sampling_rate: int, report: SkipReport,
                 summary: NormalizationSummary) -> Utterance | None:
    """The row as an utterance with its probed audio and normalised text, or None (the reason recorded)."""
    utt_id = f"{prefix}-{Path(row.path).stem}"
    if not row.client_id or not row.path:
        report.add(row.where, "bad_tsv_line", f"{row.where}: empty client_id or path")
        return None
    norm = normalize_zh_report(row.sentence)
    summary.add(norm, utt_id)
    if not norm.text:
        report.add(utt_id, "empty_transcript", f"{row.where}: sentence {row.sentence!r} is empty after normalisation")
        return None
    chars = sum(1 for ch in norm.text if is_cjk_char(ch))
    if not (chars or norm.latin_words):
        report.add(utt_id, "no_words", f"{row.where}: sentence {row.sentence!r} has no Chinese character or word")
        return None
    audio = probe_audio(clips / row.path, sampling_rate, report, utt_id)
    if audio is None:
        return None
    if audio.duration < MIN_SECONDS_PER_CHAR * chars:
        report.add(utt_id, "audio_too_short_for_text", f"{audio.path.name}: {audio.duration:.2f} s for {chars} "
                   f"characters (under {MIN_SECONDS_PER_CHAR * 1000:.0f} ms each): cut short, or the wrong sentence")
        return None
    custom = {"raw_text": row.sentence, **({"gender": row.gender} if row.gender else {}), **row.metadata}
    return Utterance(id=utt_id, speaker=row.client_id, text=norm.text, audio=audio, recording_id=Path(row.path).stem,
                     custom=custom)


def prepare_cv_zh(
    output_dir: str | Path,
    *,
    corpus_dir: str | Path | None = None,
    locale: str = "zh-CN",
    sampling_rate: int = 16000,
):
    """Write the cv_zh manifests under ``output_dir`` (see the module docstring); return ``{split: CutSet}``."""
    from tqdm import tqdm

    folder = locate(corpus_dir, locale)
    report = SkipReport(CORPUS)
    summary = NormalizationSummary(CORPUS)
    official = {s: read_tsv(folder / f"{s}.tsv", s, report) for s in ("train", "dev", "test")
                if (folder / f"{s}.tsv").is_file()}
    tune, held = dev_halves(official["dev"])
    test_source = "test.tsv" if "test" in official else "dev.tsv, 2nd/4th/6th... speakers"
    wanted = {"train": official["train"],
              "dev": [r for r in official["dev"] if r.client_id in set(tune)],
              "test": official["test"] if "test" in official else [r for r in official["dev"] if r.client_id in set(held)]}
    rows = drop_duplicate_paths([r for split in ("train", "dev", "test") for r in wanted[split]], report)
    split_of = {id(r): s for s, rs in wanted.items() for r in rs}
    prefix = speaker_prefixes({r.client_id for rs in official.values() for r in rs})
    clips = folder / "clips"
    by_split: dict[str, list[Utterance]] = {"train": [], "dev": [], "test": []}
    for row in tqdm(rows, desc="cv_zh: reading clips", unit="clip", mininterval=5):
        u = to_utterance(row, clips, prefix[row.client_id], sampling_rate, report, summary)
        if u is not None:
            by_split[split_of[id(row)]].append(u)
    shared = {u.speaker for u in by_split["train"]} & {u.speaker for s in ("dev", "test") for u in by_split[s]}
    if shared:
        log.warning("cv_zh: %d speaker(s) are in train and in dev/test (e.g. %s): errors are not speaker-independent",
                    len(shared), sorted(shared)[0][:16])
    cutsets = write_splits(output_dir, CORPUS, by_split, report, language="Chinese", sampling_rate=sampling_rate)
    manifests = Path(output_dir) / "manifests"
    summary.summarise(log)
    summary.write(manifests / "normalization.json")
    speakers = {s: sorted({u.speaker for u in v}) for s, v in by_split.items()}
    write_json(manifests / f"{CORPUS}_report.json", {
        "corpus": CORPUS, "source": str(folder.resolve()), "locale": locale, "sampling_rate": sampling_rate,
        "test_from": test_source, "official_splits": sorted(official),
        "splits": {s: {"utterances": len(v), "speakers": len(speakers[s]),
                       "hours": round(sum(u.audio.duration for u in v) / 3600, 4)} for s, v in by_split.items()},
        "dev_speakers_tuning": [prefix[c] for c in tune], "dev_speakers_second_half": [prefix[c] for c in held],
        "skipped": report.total})
    log.info("cv_zh: test set from %s; %s", test_source, ", ".join(
        f"{s} {len(v)} utts {len(speakers[s])} speakers {sum(u.audio.duration for u in v) / 3600:.2f} h"
        for s, v in by_split.items()))
    return cutsets
