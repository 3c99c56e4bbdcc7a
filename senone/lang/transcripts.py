"""From Lhotse supervisions to the token sequences the lang, LM, training and scoring stages use.

One place decides how a transcript becomes units (jieba words or characters) and word ids, so that
the lexicon, the LM, the training graphs and the scoring all see the same tokens.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from senone import SenoneError
from senone.io import require_file
from senone.lang.lexicon import observed_readings
from senone.lang.segment import is_cjk, to_units

log = logging.getLogger(__name__)


@dataclass
class Transcript:
    utt: str
    speaker: str
    text: str
    syllables: str | None  # tonal pinyin actually spoken (synthetic corpora store it), else None


def load_transcripts(cuts_path: str | Path) -> list[Transcript]:
    """Read the supervisions of a cut manifest; one transcript per cut (its first supervision).

    An empty transcript is an error naming the manifest and the cut, because an utterance with no
    words cannot be aligned and would silently vanish from training.
    """
    from lhotse import CutSet

    cuts_path = require_file(cuts_path, "prepare")
    out: list[Transcript] = []
    seen: set[str] = set()
    for cut in CutSet.from_file(cuts_path):
        if not cut.supervisions:
            raise SenoneError(f"{cuts_path}: cut {cut.id} has no supervision; regenerate the manifests")
        sup = cut.supervisions[0]
        text = (sup.text or "").strip()
        if not text:
            raise SenoneError(f"{cuts_path}: cut {cut.id} has an empty transcript; fix or drop it in the corpus preparation")
        if cut.id in seen:
            raise SenoneError(f"{cuts_path}: cut id {cut.id} appears twice; ids must be unique")
        seen.add(cut.id)
        custom = sup.custom or {}
        out.append(Transcript(cut.id, sup.speaker or cut.id, text, custom.get("pinyin")))
    return out


def transcript_units(transcripts: list[Transcript], unit: str) -> dict[str, list[str]]:
    return {t.utt: to_units(t.text, unit) for t in transcripts}


def contextual_syllables(text: str) -> list[str]:
    """pypinyin's reading of the CJK characters of a sentence in context (phrase-aware), TONE3."""
    from pypinyin import Style, lazy_pinyin

    cjk = "".join(ch for ch in text if is_cjk(ch))
    return lazy_pinyin(cjk, style=Style.TONE3, neutral_tone_with_five=True)


def observed_pronunciations(transcripts: list[Transcript], units: Mapping[str, list[str]]) -> list[tuple[str, list[str]]]:
    """(unit, syllables) pairs: what the speakers said where the corpus recorded it, else the reading
    pypinyin gives the unit in the context of its sentence.

    These are the readings a character really takes in the training text (行 hang2 in 银行, xing2 in
    行走), which the lexicon adds to each character's default reading.
    """
    pairs: list[tuple[str, list[str]]] = []
    mismatched = 0
    for t in transcripts:
        syllables = t.syllables or contextual_syllables(t.text)
        try:
            pairs.extend(observed_readings(units[t.utt], syllables))
        except SenoneError:
            mismatched += 1
    if mismatched:
        log.warning("%d transcripts' recorded syllables do not match their characters; their readings were not used",
                    mismatched)
    return pairs


def to_word_ids(units: Mapping[str, list[str]], words: Mapping[str, int], oov_word: str,
                source: str) -> tuple[dict[str, list[int]], int]:
    """Map units to word ids, OOVs to the OOV word's id. An utterance that is all OOV is an error.

    Returns the id sequences and the number of OOV tokens mapped.
    """
    oov_id = words[oov_word]
    out: dict[str, list[int]] = {}
    num_oov = 0
    for utt, toks in units.items():
        ids = [words.get(tok, oov_id) for tok in toks]
        n = sum(1 for i in ids if i == oov_id)
        if toks and n == len(toks):
            raise SenoneError(f"{source}: transcript of {utt} is entirely unpronounceable ({' '.join(toks)!r}); "
                              "add its words to the lexicon or drop the utterance")
        num_oov += n
        out[utt] = ids
    return out, num_oov


def read_extra_text(paths: list[str], unit: str) -> list[list[str]]:
    """Extra LM text files (one sentence per line) as unit lists; a missing file is an error."""
    out = []
    for p in paths:
        path = Path(p)
        if not path.is_file():
            raise SenoneError(f"{path}: extra LM text named in the recipe (lm.extra_text) not found")
        out += [to_units(line.strip(), unit) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return out
