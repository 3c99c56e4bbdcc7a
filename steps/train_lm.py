#!/usr/bin/env python3
"""LM stage: trigram ARPA on the training transcripts (never dev/test), dev OOV/perplexity, G.fst.

``lm.grammar: word_loop`` replaces the n-gram by a uniform loop over the lexicon's words (small closed
vocabularies such as digits; see senone.lm.grammar).
"""

from __future__ import annotations

import logging
from pathlib import Path

from senone.cli import base_parser, parse_conf, run
from senone.io import write_json
from senone.lang import load_lang, replace_oov
from senone.lang.transcripts import load_transcripts, read_extra_text, transcript_units
from senone import SenoneError
from senone.lm import arpa_to_g, evaluate, train_arpa
from senone.lm.grammar import evaluate_word_loop, write_word_loop_arpa

log = logging.getLogger("senone.steps.train_lm")


def main(args) -> None:
    conf = parse_conf(args.conf)
    unit = conf["lang"]["unit"]
    lconf = conf["lm"]
    lang = load_lang(args.lang)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    grammar = lconf.get("grammar")
    if grammar == "word_loop":
        # every word the lexicon can pronounce, <UNK> excluded: the grammar is the task's vocabulary
        special = {"<eps>", "<s>", "</s>", lang.oov_word}
        words = [w for w in lang.words if w not in special and not w.startswith("#")]
        stats = write_word_loop_arpa(words, out / "lm.arpa", stop_prob=lconf.get("stop_prob"))
        order = 1
    elif grammar in (None, "ngram", "null"):  # "null": what `--config 'lm={grammar: null}'` arrives as
        grammar = None
        train = transcript_units(load_transcripts(args.train_cuts), unit)
        # words without a pronunciation are not in words.txt: the LM sees them as <UNK>, as the decoder will
        train_tokens = [replace_oov(toks, lang.words, lang.oov_word)[0] for toks in train.values()]
        extra = read_extra_text(lconf.get("extra_text", []) or [], unit)
        extra_tokens = [replace_oov(toks, lang.words, lang.oov_word)[0] for toks in extra]
        order = lconf["order"]
        stats = train_arpa(train_tokens, out / "lm.arpa", order=order, extra_tokens=extra_tokens)
    else:
        raise SenoneError(f"lm.grammar: {grammar!r} is not known; use word_loop, or ngram (null) for an n-gram LM")
    dev = list(transcript_units(load_transcripts(args.dev_cuts), unit).values())
    report = evaluate_word_loop(stats, words, dev) if grammar else evaluate(out / "lm.arpa", dev)
    arpa_to_g(out / "lm.arpa", lang.words_path, out / "G.fst")
    write_json(out / "lm_report.json", {"unit": unit, "order": order, "grammar": grammar, "train": stats, "dev": report})
    log.info("LM (%s, %s): dev perplexity %.1f, OOV rate %.2f%% (%d of %d tokens)", unit,
             grammar or f"order {order}", report["perplexity"], 100 * report["oov_rate"], report["num_oov"],
             report["num_tokens"])


if __name__ == "__main__":
    p = base_parser(__doc__)
    p.add_argument("--lang", required=True)
    p.add_argument("--train-cuts", required=True)
    p.add_argument("--dev-cuts", required=True)
    p.add_argument("--out", required=True)
    run(main, p)
