#!/usr/bin/env python3
"""Lang stage: lexicon from the training transcripts (+ extra LM text), then a Kaldi lang directory.

``language: zh`` builds the Mandarin lexicon (pypinyin + readings seen in training, a user lexicon on
top); ``language: en`` takes ARPAbet pronunciations from the user lexicon (``lang.lexicon``) and the
built-in CMUdict digits. Either way, words without a pronunciation are counted, listed in
``<lang>/unpronounceable.txt`` (training-token count, word) and mapped to ``<UNK>`` (``SPN``).

Open vocabulary (``lang.open_vocab_chars: N``, Mandarin with ``lang.unit: char`` only): the N most
frequent characters of jieba's dictionary (MIT; senone.lang.common_chars) join the lexicon with their
pypinyin readings, and ``<lang>/char_freq.txt`` keeps their frequencies for the LM stage
(senone.lm.open_vocab); lang.json's ``open_vocab`` records the source, licence and counts. Word-unit
and English recipes keep the closed vocabulary of their training text (logged).
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

from senone import SenoneError
from senone.cli import base_parser, parse_conf, run
from senone.io import write_text
from senone.lang import build_mandarin_lexicon, collect_vocabulary, prepare_lang, read_lexicon
from senone.lang.common_chars import CHAR_FREQ_FILE, DEFAULT_NUM_CHARS, add_common_characters, char_freq_text
from senone.lang.english import build_english_lexicon
from senone.lang.transcripts import load_transcripts, observed_pronunciations, read_extra_text, transcript_units

log = logging.getLogger("senone.steps.prepare_lang")

LANGUAGES = ("zh", "en")


def unpronounceable_counts(words: list[str], units: dict[str, list[str]]) -> list[tuple[str, int]]:
    """(word, training-token count) of the unpronounceable words, most frequent first."""
    wanted = set(words)
    counts = Counter(tok for toks in units.values() for tok in toks if tok in wanted)
    return sorted(((w, counts[w]) for w in words), key=lambda wc: (-wc[1], wc[0]))


def report_unpronounceable(counts: list[tuple[str, int]], num_tokens: int, out_dir: Path, oov_word: str) -> None:
    """Write ``unpronounceable.txt`` (count TAB word) and log the count with examples."""
    path = out_dir / "unpronounceable.txt"
    write_text(path, "".join(f"{n}\t{w}\n" for w, n in counts))
    tokens = sum(n for _, n in counts)
    if counts:
        log.warning("%d word(s) without a pronunciation (%d of %d training tokens, %.2f%%) are mapped to %s: "
                    "e.g. %s; all in %s", len(counts), tokens, num_tokens, 100 * tokens / max(num_tokens, 1),
                    oov_word, " ".join(w for w, _ in counts[:10]), path)
    else:
        log.info("every training word has a pronunciation")


def main(args) -> None:
    conf = parse_conf(args.conf)
    lconf = conf["lang"]
    language = conf.get("language", "zh")
    if language not in LANGUAGES:
        raise SenoneError(f"language must be one of {LANGUAGES}, got {language!r}; set it in the recipe")
    unit = lconf["unit"]
    if unit not in ("char", "word"):
        raise SenoneError(f"lang.unit must be 'char' or 'word', got {unit!r}")
    transcripts = load_transcripts(args.train_cuts)
    units = transcript_units(transcripts, unit)
    extra = read_extra_text(conf.get("lm", {}).get("extra_text", []) or [], unit)
    vocab = collect_vocabulary(units.values(), extra)
    user = read_lexicon(lconf["lexicon"]) if lconf.get("lexicon") else None
    info: dict = {"unit": unit, "language": language}
    if language == "zh":
        observed = observed_pronunciations(transcripts, units)
        lexicon, unpronounceable = build_mandarin_lexicon(vocab, observed=observed, user_lexicon=user,
                                                          heteronyms=lconf.get("heteronyms", False))
        info["observed_readings"] = len(observed)
    else:
        lexicon, unpronounceable = build_english_lexicon(vocab, user_lexicon=user,
                                                         builtin=lconf.get("builtin_lexicon", True),
                                                         stress=lconf.get("stress", "keep"))
        info["stress"] = lconf.get("stress", "keep")
    extra_files: dict[str, str] = {}
    num_open = int(lconf.get("open_vocab_chars", DEFAULT_NUM_CHARS) or 0)
    if num_open and (language != "zh" or unit != "char"):
        log.info("lang.open_vocab_chars=%d applies to Mandarin character units only; this recipe (language %s, "
                 "unit %s) keeps the closed vocabulary of its training text", num_open, language, unit)
    elif num_open:
        closed = len(lexicon)
        ov = add_common_characters(lexicon, num_open, heteronyms=lconf.get("heteronyms", False))
        extra_files[CHAR_FREQ_FILE] = char_freq_text(ov.pop("frequencies"))
        info["open_vocab"] = {**ov, "closed_words": closed, "frequency_file": CHAR_FREQ_FILE}
        log.info("open vocabulary: %d training words + %d of the %d most frequent characters (%s) = %d words",
                 closed, ov["added"], num_open, ov["licence"], len(lexicon))
    counts = unpronounceable_counts(unpronounceable, units)
    num_tokens = sum(len(t) for t in units.values())
    info.update(unpronounceable=unpronounceable, unpronounceable_tokens=sum(n for _, n in counts),
                training_tokens=num_tokens)
    lang = prepare_lang(lexicon, args.out, sil_prob=lconf["sil_prob"],
                        share_variants=lconf.get("share_tones", True), extra_info=info, extra_files=extra_files)
    report_unpronounceable(counts, num_tokens, Path(args.out), lconf["oov_word"])
    log.info("lang: %d words, %d phones, %d lexicon entries -> %s", len(lang.words), len(lang.real_phones),
             lexicon.num_entries(), args.out)


if __name__ == "__main__":
    p = base_parser(__doc__)
    p.add_argument("--train-cuts", required=True)
    p.add_argument("--out", required=True)
    run(main, p)
