#!/usr/bin/env python3
"""LM stage: trigram ARPA on the training transcripts (never dev/test), dev OOV/perplexity, G.fst."""

from __future__ import annotations

import logging
from pathlib import Path

from senone.cli import base_parser, parse_conf, run
from senone.io import write_json
from senone.lang import load_lang, replace_oov
from senone.lang.transcripts import load_transcripts, read_extra_text, transcript_units
from senone.lm import arpa_to_g, evaluate, train_arpa

log = logging.getLogger("senone.steps.train_lm")


def main(args) -> None:
    conf = parse_conf(args.conf)
    unit = conf["lang"]["unit"]
    lang = load_lang(args.lang)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    train = transcript_units(load_transcripts(args.train_cuts), unit)
    # words without a pronunciation are not in words.txt: the LM sees them as <UNK>, as the decoder will
    train_tokens = [replace_oov(toks, lang.words, lang.oov_word)[0] for toks in train.values()]
    extra = read_extra_text(conf.get("lm", {}).get("extra_text", []) or [], unit)
    extra_tokens = [replace_oov(toks, lang.words, lang.oov_word)[0] for toks in extra]
    stats = train_arpa(train_tokens, out / "lm.arpa", order=conf["lm"]["order"], extra_tokens=extra_tokens)
    dev = transcript_units(load_transcripts(args.dev_cuts), unit)
    report = evaluate(out / "lm.arpa", list(dev.values()))
    arpa_to_g(out / "lm.arpa", lang.words_path, out / "G.fst")
    write_json(out / "lm_report.json", {"unit": unit, "order": conf["lm"]["order"], "train": stats, "dev": report})
    log.info("LM (%s, order %d): dev perplexity %.1f, OOV rate %.2f%% (%d of %d tokens)", unit, conf["lm"]["order"],
             report["perplexity"], 100 * report["oov_rate"], report["num_oov"], report["num_tokens"])


if __name__ == "__main__":
    p = base_parser(__doc__)
    p.add_argument("--lang", required=True)
    p.add_argument("--train-cuts", required=True)
    p.add_argument("--dev-cuts", required=True)
    p.add_argument("--out", required=True)
    run(main, p)
