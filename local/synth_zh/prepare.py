"""synth_zh: a Mandarin corpus synthesised offline from the sentences of ``hsk-sentences-audio``.

The default recipe needs a corpus that anyone can make without a download: 4,354 graded HSK
sentences (shipped inside a PyPI wheel, CC BY-SA 4.0) are normalised, spoken by espeak-ng's Mandarin
voice with 24 synthetic speakers (voice variant × pitch × pitch range × rate), speed-perturbed,
padded with silence, mixed with white or pink noise, and resampled to 16 kHz.

Design decisions:

* **Splits.** Test and dev speakers are disjoint from training speakers, and test and dev sentences
  are disjoint from training sentences (and from each other), so the test CER measures speaker- and
  sentence-independent recognition. Sentences are shuffled once; test takes sentences from the front
  until it holds ``test_minutes`` of audio, dev continues, training gets the rest.
* **Size.** Splits are filled to a duration target (each utterance's length is known once it is
  rendered). If the training sentences run out before ``train_hours`` is reached, they are spoken
  again by other training speakers (pass 2, 3, ...), never by the same one twice.
* **Labels.** ``supervision.custom["pinyin"]`` holds the tonal syllables espeak actually spoke
  (from its own phonemes, see ``senone.data.synth.EspeakPinyin``), one per character; where that
  cannot be read, pypinyin's reading is stored and counted.
* **Drops.** Sentences that keep non-Chinese tokens after normalisation, duplicates, and sentences
  espeak reads partly as English (it spells some erhua entries letter by letter) are dropped, each
  with a count in the report; an utterance espeak returns no audio for is skipped with a count.
* **Determinism.** Every random choice derives from ``seed`` and the utterance id, and every
  utterance's audio is a pure function of its render spec, so the same seed gives byte-identical
  audio and manifests for any ``num_jobs``.

Output (``<out>`` = ``output_dir``)::

    <out>/audio/<split>/<utt_id>.flac              16 kHz, 16-bit
    <out>/manifests/synth_zh_{recordings,supervisions,cuts}_<split>.jsonl.gz
    <out>/manifests/synth_zh_report.json           counts, label statistics, configuration
    <out>/manifests/speakers.tsv                   one line per speaker

Audio paths in the manifests are ``output_dir``-relative as given (pass an absolute ``output_dir``
for manifests usable from any working directory).
"""

from __future__ import annotations

import json
import logging
import math
import time
import zlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np

from senone import SenoneError
from senone.data import write_manifest
from senone.data.synth import (
    EspeakPhonemizer,
    EspeakPinyin,
    EspeakVoice,
    RenderPool,
    RenderSpec,
    espeak_version,
    foreign_languages,
)
from senone.data.text import normalize_zh_report
from senone.io import atomic_open, write_json, write_text

log = logging.getLogger(__name__)

CORPUS = "synth_zh"
SPLITS = ("train", "dev", "test")
SAMPLE_RATE = 16000

SOURCE_PACKAGE = "hsk-sentences-audio"
SOURCE_URL = "https://github.com/no7z/hsk-sentences-audio"
SOURCE_LICENSE = "CC BY-SA 4.0"
SOURCE_LICENSE_URL = "https://creativecommons.org/licenses/by-sa/4.0/"
SOURCE_ATTRIBUTION = (f"Sentences from the {SOURCE_PACKAGE} package ({SOURCE_URL}), "
                      f"licensed {SOURCE_LICENSE} ({SOURCE_LICENSE_URL}).")

MALE_VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m6", "m7")
FEMALE_VARIANTS = ("f1", "f2", "f3", "f4", "f5")
# Male and female variants alternate so that every split (dev and test take the first speakers)
# gets both.
VARIANT_ORDER = ("m1", "f1", "m2", "f2", "m3", "f3", "m4", "f4", "m5", "f5", "m6", "m7")
PITCH_RANGE = (30, 70)         # espeakPITCH
PITCH_SPAN_RANGE = (40, 70)    # espeakRANGE (tone contours stay clear above ~40)
RATE_RANGE = (145, 195)        # words per minute
PAD_RANGE_S = (0.05, 0.30)     # leading/trailing silence
NOISE_KINDS = ("white", "pink")

REPORT_NAME = f"{CORPUS}_report.json"
#: Extra LM text the preparation writes beside the manifests (recipes/synth_zh.yaml: lm.extra_text).
LM_TEXT_NAME = f"{CORPUS}_lm_text.txt"


def manifest_path(output_dir: Path, kind: str, split: str) -> Path:
    """``<out>/manifests/synth_zh_<kind>_<split>.jsonl.gz`` (kind: recordings, supervisions, cuts)."""
    return Path(output_dir) / "manifests" / f"{CORPUS}_{kind}_{split}.jsonl.gz"


@dataclass(frozen=True)
class Speaker:
    id: str
    split: str
    gender: str
    voice: EspeakVoice


@dataclass(frozen=True)
class Sentence:
    id: str
    text: str
    pinyin: str
    pinyin_source: str  # "espeak" or "pypinyin"


def _rng(seed: int, *keys: int | str) -> np.random.Generator:
    """A generator for one purpose, independent of every other draw (keys name the purpose)."""
    ints = [int(seed)] + [k if isinstance(k, int) else zlib.crc32(k.encode()) for k in keys]
    return np.random.default_rng(ints)


def make_speakers(seed: int, num_train: int, num_dev: int, num_test: int) -> list[Speaker]:
    """Distinct synthetic speakers: dev first, then test, then train (variants cycle m/f)."""
    rng = _rng(seed, "speakers")
    total = num_train + num_dev + num_test
    splits = ["dev"] * num_dev + ["test"] * num_test + ["train"] * num_train
    seen: set[tuple] = set()
    speakers = []
    for i in range(total):
        variant = VARIANT_ORDER[i % len(VARIANT_ORDER)]
        while True:
            voice = EspeakVoice(
                language="cmn",
                variant=variant,
                pitch=int(rng.integers(PITCH_RANGE[0], PITCH_RANGE[1] + 1)),
                pitch_range=int(rng.integers(PITCH_SPAN_RANGE[0], PITCH_SPAN_RANGE[1] + 1)),
                rate=int(rng.integers(RATE_RANGE[0], RATE_RANGE[1] + 1)),
            )
            key = (voice.variant, voice.pitch, voice.rate)
            if key not in seen:
                seen.add(key)
                break
        gender = "m" if variant.startswith("m") else "f"
        speakers.append(Speaker(id=f"spk{i:02d}", split=splits[i], gender=gender, voice=voice))
    return speakers


def load_sentences(max_sentences: int | None = None, report: dict | None = None,
                   records: Sequence[Mapping[str, str]] | None = None) -> list[Sentence]:
    """Read, normalise and filter the source sentences, and label each with espeak's pinyin.

    ``records`` (dicts with ``id`` and ``chinese``) replaces the packaged sentences. What was
    dropped, and the label statistics, go into ``report["sentences"]`` and ``report["labels"]``.
    """
    from pypinyin import Style, lazy_pinyin

    if report is None:
        report = {}
    if records is None:
        try:
            import hsk_sentences_audio
        except ImportError as e:
            raise SenoneError(f"{SOURCE_PACKAGE} is not installed; pip install {SOURCE_PACKAGE}") from e
        records = hsk_sentences_audio.load_sentences()
    if max_sentences is not None:
        records = records[:max_sentences]
    phonemizer = EspeakPhonemizer("cmn")
    to_pinyin = EspeakPinyin(phonemizer)
    dropped: Counter = Counter()
    dropped_chars: Counter = Counter()
    examples: dict[str, list[str]] = {}
    seen: set[str] = set()
    numerals = 0
    label = Counter()
    sentences = []

    def drop(reason: str, rec_id: str) -> None:
        dropped[reason] += 1
        examples.setdefault(reason, [])
        if len(examples[reason]) < 5:
            examples[reason].append(rec_id)

    for rec in records:
        rec_id, raw = rec["id"], rec["chinese"]
        norm = normalize_zh_report(raw)
        dropped_chars.update(norm.dropped)
        numerals += len(norm.numbers)
        if not norm.text:
            drop("empty", rec_id)
            continue
        if not norm.cjk_only:
            drop("non_cjk", rec_id)
            log.debug("%s: non-Chinese tokens %s after normalisation; dropped", rec_id, norm.non_cjk)
            continue
        if norm.text in seen:
            drop("duplicate", rec_id)
            continue
        seen.add(norm.text)
        phonemes = phonemizer.phonemes(norm.text)
        if foreign_languages(phonemes, "cmn"):
            drop("espeak_foreign_reading", rec_id)
            log.debug("%s: espeak reads part of %r as %s; dropped", rec_id, norm.text, foreign_languages(phonemes))
            continue
        citation = lazy_pinyin(norm.text, style=Style.TONE3, neutral_tone_with_five=True)
        spoken = to_pinyin.to_pinyin(phonemes, citation)
        if spoken is not None and len(spoken) == len(norm.text):
            source = "espeak"
            label["syllables"] += len(spoken)
            for s, c in zip(spoken, citation):
                if s[:-1] != c[:-1]:
                    label["syllable_differs"] += 1
                elif s[-1] != c[-1]:
                    label["tone_differs"] += 1
        else:
            source = "pypinyin"
            spoken = citation
            log.debug("%s: espeak phonemes %r do not give one syllable per character; using pypinyin", rec_id, phonemes)
        label[source] += 1
        sentences.append(Sentence(id=rec_id, text=norm.text, pinyin=" ".join(spoken), pinyin_source=source))

    for reason, n in sorted(dropped.items()):
        log.info("dropped %d sentence(s): %s (e.g. %s)", n, reason, ", ".join(examples[reason]))
    if label["pypinyin"]:
        log.info("%d sentence(s): espeak's phonemes did not give one syllable per character; "
                 "labels from pypinyin", label["pypinyin"])
    syl = max(1, label["syllables"])
    report["sentences"] = {
        "read": len(records),
        "kept": len(sentences),
        "dropped": dict(sorted(dropped.items())),
        "dropped_examples": examples,
        "numeral_expressions_converted": numerals,
        "characters_removed": dict(sorted(dropped_chars.items())),
    }
    report["labels"] = {
        "source": "espeak-ng phonemes (espeak_TextToPhonemes), pypinyin where they do not align",
        "sentences_from_espeak": label["espeak"],
        "sentences_from_pypinyin": label["pypinyin"],
        "fallback_rate": round(label["pypinyin"] / max(1, len(sentences)), 6),
        "syllables_compared": label["syllables"],
        "tone_differs_from_pypinyin": label["tone_differs"],
        "tone_differs_rate": round(label["tone_differs"] / syl, 6),
        "syllable_differs_from_pypinyin": label["syllable_differs"],
        "syllable_differs_rate": round(label["syllable_differs"] / syl, 6),
    }
    log.info("%d of %d sentences kept; espeak spoke a different tone from pypinyin's in %.2f%% of %d "
             "syllables and a different syllable in %.2f%%", len(sentences), len(records),
             100 * label["tone_differs"] / syl, label["syllables"], 100 * label["syllable_differs"] / syl)
    return sentences


@dataclass
class _Utt:
    id: str
    split: str
    speaker: Speaker
    sentence: Sentence
    spec: RenderSpec
    num_samples: int = 0


def _make_utt(split: str, speaker: Speaker, sentence: Sentence, seed: int,
              speed_factors: Sequence[float], snr_db: float) -> _Utt:
    utt_id = f"{speaker.id}-{sentence.id}"
    rng = _rng(seed, "utt", utt_id)
    speed = float(speed_factors[int(rng.integers(len(speed_factors)))])
    noise = NOISE_KINDS[int(rng.integers(len(NOISE_KINDS)))] if math.isfinite(snr_db) else "none"
    lead, trail = (round(float(x), 3) for x in rng.uniform(*PAD_RANGE_S, size=2))
    spec = RenderSpec(text=sentence.text, voice=speaker.voice, speed=speed, noise=noise, snr_db=float(snr_db),
                      noise_seed=int(rng.integers(2**62)), lead_s=lead, trail_s=trail)
    return _Utt(id=utt_id, split=split, speaker=speaker, sentence=sentence, spec=spec)


def _fill(pool: RenderPool, candidate: Callable[[int], _Utt | None], target_s: float, max_utts: int | None,
          skipped: Counter, split: str, audio_dir: Path) -> tuple[list[_Utt], int]:
    """Render candidates 0, 1, ... in order until ``target_s`` seconds (or ``max_utts``) are reached.

    Accepted utterances are written to ``audio_dir/<utt_id>.flac`` at once.
    Returns the accepted utterances and the index of the first candidate not consumed. Work is
    submitted in batches sized from the average duration so far, so little is rendered in vain;
    what is rendered past the target is discarded, which keeps the result independent of batching.
    """
    accepted: list[_Utt] = []
    total = 0.0
    index = 0
    limit = max_utts if max_utts is not None else 1 << 62
    mean = 2.5  # seconds per utterance until measured
    exhausted = False
    while total < target_s and len(accepted) < limit and not exhausted:
        want = min(limit - len(accepted), math.ceil((target_s - total) / mean))
        size = int(min(1024, max(8 * pool.num_jobs, want * 1.05 + 2 * pool.num_jobs)))
        batch = []
        for i in range(index, index + size):
            utt = candidate(i)
            if utt is None:
                exhausted = True
                break
            batch.append(utt)
        if not batch:
            break
        results = pool.imap([(u.id, u.spec) for u in batch])
        for utt, (_, audio, n) in zip(batch, results):
            index += 1
            if n == 0:
                skipped["no_audio"] += 1
                log.warning("%s: espeak produced no audio for %r; skipped", utt.id, utt.sentence.text)
                continue
            utt.num_samples = n
            with atomic_open(audio_dir / f"{utt.id}.flac", "wb") as f:
                f.write(audio)
            accepted.append(utt)
            total += n / SAMPLE_RATE
            if total >= target_s or len(accepted) >= limit:
                break
        if accepted:
            mean = total / len(accepted)
        log.info("%s: %d utterances, %.1f of %.1f min", split, len(accepted), total / 60, target_s / 60)
    if total < target_s and (max_utts is None or len(accepted) < max_utts):
        log.warning("%s: only %.1f min of the %.1f min asked for: not enough sentences/speakers",
                    split, total / 60, target_s / 60)
    return accepted, index


def _write_split(output_dir: Path, split: str, utts: list[_Utt]):
    from lhotse import AudioSource, CutSet, MonoCut, Recording, RecordingSet, SupervisionSegment, SupervisionSet

    recordings, supervisions, cuts = [], [], []
    for u in sorted(utts, key=lambda u: u.id):
        path = output_dir / "audio" / split / f"{u.id}.flac"
        duration = u.num_samples / SAMPLE_RATE
        rec = Recording(id=u.id, sources=[AudioSource(type="file", channels=[0], source=str(path))],
                        sampling_rate=SAMPLE_RATE, num_samples=u.num_samples, duration=duration)
        spec = u.spec
        sup = SupervisionSegment(
            id=u.id, recording_id=u.id, start=0.0, duration=duration, channel=0, text=u.sentence.text,
            language="Chinese", speaker=u.speaker.id,
            custom={"pinyin": u.sentence.pinyin, "pinyin_source": u.sentence.pinyin_source,
                    "sentence_id": u.sentence.id, "voice": spec.voice.name, "speed": spec.speed,
                    "noise": spec.noise, "snr_db": spec.snr_db if spec.noise != "none" else None})
        recordings.append(rec)
        supervisions.append(sup)
        cuts.append(MonoCut(id=u.id, start=0.0, duration=duration, channel=0, recording=rec, supervisions=[sup]))
    recs, sups, cutset = RecordingSet.from_recordings(recordings), SupervisionSet.from_segments(supervisions), CutSet.from_cuts(cuts)
    write_manifest(recs, manifest_path(output_dir, "recordings", split))
    write_manifest(sups, manifest_path(output_dir, "supervisions", split))
    write_manifest(cutset, manifest_path(output_dir, "cuts", split))
    return cutset


def unspoken_sentences(train_pool: Sequence[Sentence], spoken: set[str], held_out_texts: set[str]) -> list[str]:
    """Texts of the training pool that no training utterance speaks: extra LM text (``lm.extra_text``).

    With 2 h of audio about 750 of the pool's sentences are never synthesised; as LM text they lower the
    character LM's dev perplexity from 95 to 87. The pool excludes every dev/test sentence by construction;
    a text identical to a dev/test one is dropped as well, so no evaluated sentence reaches the LM.
    """
    return [s.text for s in train_pool if s.id not in spoken and s.text not in held_out_texts]


def _load_existing(output_dir: Path, config: dict):
    """The finished corpus, if every manifest exists and the report was made with ``config``."""
    report_path = output_dir / "manifests" / REPORT_NAME
    paths = [manifest_path(output_dir, k, s) for s in SPLITS for k in ("recordings", "supervisions", "cuts")]
    paths.append(output_dir / "manifests" / LM_TEXT_NAME)
    if not report_path.is_file() or not all(p.is_file() for p in paths):
        return None
    try:
        old = json.loads(report_path.read_text(encoding="utf-8")).get("config")
    except (OSError, json.JSONDecodeError):
        return None
    if old != config:
        log.info("%s was made with other settings; regenerating", report_path)
        return None
    from lhotse import CutSet

    return {s: CutSet.from_file(manifest_path(output_dir, "cuts", s)).to_eager() for s in SPLITS}


def prepare_synth_zh(
    output_dir: str | Path,
    *,
    seed: int = 0,
    num_train_speakers: int = 20,
    num_dev_speakers: int = 2,
    num_test_speakers: int = 2,
    train_hours: float = 2.0,
    dev_minutes: float = 10.0,
    test_minutes: float = 10.0,
    snr_db: float = 20.0,
    speed_factors: Sequence[float] = (0.9, 1.0, 1.1),
    num_jobs: int = 2,
    max_sentences: int | None = None,
    max_utterances: int | None = None,
):
    """Generate the synth_zh corpus under ``output_dir`` and return ``{split: CutSet}``.

    Args:
        output_dir: corpus folder (audio/ and manifests/ are made inside).
        seed: every random choice (sentence order, speakers, speed, noise, padding) derives from it.
        num_train_speakers, num_dev_speakers, num_test_speakers: synthetic speakers per split
            (disjoint voices).
        train_hours, dev_minutes, test_minutes: audio duration each split is filled to.
        snr_db: speech-to-noise ratio of the added white/pink noise; ``float("inf")`` for none.
        speed_factors: speed-perturbation factors, one drawn per utterance.
        num_jobs: worker processes for synthesis (the result does not depend on it).
        max_sentences: read only the first N source sentences (quick tests).
        max_utterances: cap on training utterances (quick tests); dev/test follow their minutes.

    If the manifests and report of a run with the same settings exist, they are loaded instead
    of regenerated.
    """
    output_dir = Path(output_dir)
    if min(num_train_speakers, num_dev_speakers, num_test_speakers) < 1:
        raise SenoneError("synth_zh: every split needs at least one speaker (num_*_speakers >= 1)")
    if not speed_factors or any(not (0.5 <= f <= 2.0) for f in speed_factors):
        raise SenoneError(f"synth_zh: speed_factors {list(speed_factors)} must be a non-empty list within 0.5..2.0")
    if num_train_speakers + num_dev_speakers + num_test_speakers > len(VARIANT_ORDER) * 20:
        raise SenoneError("synth_zh: too many speakers asked for; at most 240 distinct voices")
    config = {
        "seed": seed, "num_train_speakers": num_train_speakers, "num_dev_speakers": num_dev_speakers,
        "num_test_speakers": num_test_speakers, "train_hours": train_hours, "dev_minutes": dev_minutes,
        "test_minutes": test_minutes, "snr_db": snr_db if math.isfinite(snr_db) else None,
        "speed_factors": [float(f) for f in speed_factors], "max_sentences": max_sentences,
        "max_utterances": max_utterances, "sample_rate": SAMPLE_RATE,
    }
    existing = _load_existing(output_dir, config)
    if existing is not None:
        log.info("%s: corpus already prepared; loading its manifests", output_dir)
        return existing

    start = time.perf_counter()
    report: dict = {
        "corpus": CORPUS,
        "source": {"package": SOURCE_PACKAGE, "url": SOURCE_URL, "license": SOURCE_LICENSE,
                   "license_url": SOURCE_LICENSE_URL, "attribution": SOURCE_ATTRIBUTION},
        "synthesizer": {"engine": "espeak-ng", "version": espeak_version(), "package": "espeakng-loader",
                        "voice": "cmn"},
        "config": config,
    }
    sentences = load_sentences(max_sentences, report)
    order = _rng(seed, "sentences").permutation(len(sentences))
    sentences = [sentences[i] for i in order]
    speakers = make_speakers(seed, num_train_speakers, num_dev_speakers, num_test_speakers)
    by_split = {s: [sp for sp in speakers if sp.split == s] for s in SPLITS}

    # Remove audio of an earlier, unfinished or differently configured run.
    for split in SPLITS:
        folder = output_dir / "audio" / split
        if folder.is_dir():
            for f in folder.glob("*.flac"):
                f.unlink()
    skipped: Counter = Counter()
    utts: dict[str, list[_Utt]] = {}
    cursor = 0
    with RenderPool(num_jobs, SAMPLE_RATE, "flac") as pool:
        for split, minutes in (("test", test_minutes), ("dev", dev_minutes)):
            spk = by_split[split]
            base = cursor

            def held_out(i: int, base=base, spk=spk, split=split) -> _Utt | None:
                if base + i >= len(sentences):
                    return None
                return _make_utt(split, spk[i % len(spk)], sentences[base + i], seed, speed_factors, snr_db)

            utts[split], used = _fill(pool, held_out, minutes * 60, None, skipped, split,
                                      output_dir / "audio" / split)
            cursor += used
        train_sentences = sentences[cursor:]
        if not train_sentences:
            raise SenoneError("synth_zh: no sentences left for training after dev/test; "
                              "lower dev_minutes/test_minutes or raise max_sentences")
        spk = by_split["train"]
        n = len(train_sentences)

        def train_candidate(i: int) -> _Utt | None:
            rep, k = divmod(i, n)  # pass `rep` speaks sentence k with a speaker it has not used yet
            if rep >= len(spk):
                return None
            return _make_utt("train", spk[(k + rep) % len(spk)], train_sentences[k], seed, speed_factors, snr_db)

        utts["train"], _ = _fill(pool, train_candidate, train_hours * 3600, max_utterances, skipped, "train",
                                 output_dir / "audio" / "train")

    cutsets = {}
    split_report = {}
    for split in SPLITS:
        cutsets[split] = _write_split(output_dir, split, utts[split])
        seconds = sum(u.num_samples for u in utts[split]) / SAMPLE_RATE
        split_report[split] = {
            "utterances": len(utts[split]),
            "speakers": len({u.speaker.id for u in utts[split]}),
            "sentences": len({u.sentence.id for u in utts[split]}),
            "hours": round(seconds / 3600, 4),
            "seconds": round(seconds, 2),
        }
    train_sents = {u.sentence.id for u in utts["train"]}
    held = {u.sentence.id for s in ("dev", "test") for u in utts[s]}
    if train_sents & held:  # guaranteed by construction; checked because the test CER relies on it
        raise SenoneError(f"synth_zh: {len(train_sents & held)} sentences in both train and dev/test (bug)")
    report["utterances_skipped"] = dict(skipped)
    report["splits"] = split_report
    lm_text = unspoken_sentences(train_sentences, train_sents, {u.sentence.text for s in ("dev", "test") for u in utts[s]})
    write_text(output_dir / "manifests" / LM_TEXT_NAME, "".join(f"{t}\n" for t in lm_text))
    report["lm_text"] = {"file": LM_TEXT_NAME, "sentences": len(lm_text),
                         "what": "sentences of the training pool that no split speaks (never a dev/test sentence)"}

    per_spk = Counter()
    per_spk_s = Counter()
    for split in SPLITS:
        for u in utts[split]:
            per_spk[u.speaker.id] += 1
            per_spk_s[u.speaker.id] += u.num_samples / SAMPLE_RATE
    lines = ["speaker\tsplit\tgender\tvoice\tpitch\tpitch_range\trate_wpm\tutterances\tminutes"]
    for sp in speakers:
        v = sp.voice
        lines.append(f"{sp.id}\t{sp.split}\t{sp.gender}\t{v.name}\t{v.pitch}\t{v.pitch_range}\t{v.rate}\t"
                     f"{per_spk[sp.id]}\t{per_spk_s[sp.id] / 60:.2f}")
    write_text(output_dir / "manifests" / "speakers.tsv", "\n".join(lines) + "\n")
    write_json(output_dir / "manifests" / REPORT_NAME, report)  # last: marks the corpus complete
    log.info("synth_zh ready in %.1f s: %s", time.perf_counter() - start,
             ", ".join(f"{s} {r['utterances']} utts {r['hours'] * 60:.1f} min" for s, r in split_report.items()))
    return cutsets
