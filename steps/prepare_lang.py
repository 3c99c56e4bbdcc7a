#!/usr/bin/env python3
"""Lang stage: lexicon from the training transcripts (+ extra LM text), then a Kaldi lang directory."""

from __future__ import annotations

import logging

from senone import SenoneError
from senone.cli import base_parser, parse_conf, run
from senone.lang import build_mandarin_lexicon, collect_vocabulary, prepare_lang, read_lexicon
from senone.lang.transcripts import load_transcripts, observed_pronunciations, read_extra_text, transcript_units

log = logging.getLogger("senone.steps.prepare_lang")


def main(args) -> None:
    conf = parse_conf(args.conf)
    unit = conf["lang"]["unit"]
    if unit not in ("char", "word"):
        raise SenoneError(f"lang.unit must be 'char' or 'word', got {unit!r}")
    transcripts = load_transcripts(args.train_cuts)
    units = transcript_units(transcripts, unit)
    extra = read_extra_text(conf.get("lm", {}).get("extra_text", []) or [], unit)
    vocab = collect_vocabulary(units.values(), extra)
    observed = observed_pronunciations(transcripts, units)
    user = read_lexicon(conf["lang"]["lexicon"]) if conf["lang"].get("lexicon") else None
    lexicon, unpronounceable = build_mandarin_lexicon(vocab, observed=observed, user_lexicon=user,
                                                      heteronyms=conf["lang"].get("heteronyms", False))
    if unpronounceable:
        log.warning("%d words have no pronunciation and will be mapped to %s: %s", len(unpronounceable),
                    conf["lang"]["oov_word"], " ".join(unpronounceable[:20]))
    lang = prepare_lang(lexicon, args.out, sil_prob=conf["lang"]["sil_prob"],
                        share_variants=conf["lang"].get("share_tones", True),
                        extra_info={"unit": unit, "unpronounceable": unpronounceable,
                                    "observed_readings": len(observed)})
    log.info("lang: %d words, %d phones, %d lexicon entries -> %s", len(lang.words), len(lang.real_phones),
             lexicon.num_entries(), args.out)


if __name__ == "__main__":
    p = base_parser(__doc__)
    p.add_argument("--train-cuts", required=True)
    p.add_argument("--out", required=True)
    run(main, p)
