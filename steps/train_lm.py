#!/usr/bin/env python3
"""LM stage: trigram ARPA on the training transcripts (never dev/test), dev OOV/perplexity, G.fst.

``lm.grammar: word_loop`` replaces the n-gram by a uniform loop over the lexicon's words (small closed
vocabularies such as digits; see senone.lm.grammar).

Open vocabulary: when the lang dir has ``char_freq.txt`` (``lang.open_vocab_chars`` > 0, character
units) and ``lm.open_vocab_weight`` (λ) > 0, the trained ARPA's unigrams are interpolated with that
frequency list over the whole lexicon and every back-off weight is renormalised (senone.lm.open_vocab),
so the characters the training text lacks are unlikely, not impossible. lm_report.json then has the
closed model's dev figures too (``dev_closed``); the perplexities of the two exclude different OOVs, so
both also carry ``perplexity_oov_penalised``: every dev token scored, an OOV at a fixed log10
probability (``oov_logprob10``), the same for both.
"""

from __future__ import annotations

import logging
from pathlib import Path

from senone.cli import base_parser, parse_conf, run
from senone.io import write_json
from senone.lang import load_lang, replace_oov
from senone.lang.transcripts import load_transcripts, read_extra_text, transcript_units
from senone import SenoneError
from senone.lang.common_chars import CHAR_FREQ_FILE, read_char_freq
from senone.lm import arpa_to_g, evaluate, train_arpa
from senone.lm.open_vocab import DEFAULT_WEIGHT, OOV_LOGPROB10, open_vocab_arpa
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
    open_vocab = False
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
        freq_path = lang.dir / CHAR_FREQ_FILE
        weight = float(lconf.get("open_vocab_weight", DEFAULT_WEIGHT) or 0.0)
        open_vocab = freq_path.exists() and weight > 0
        if freq_path.exists() and not open_vocab:
            log.info("lm.open_vocab_weight=0: the lexicon's characters beyond the training text stay unreachable "
                     "(closed-vocabulary LM)")
        closed_arpa = out / ("lm.closed.arpa" if open_vocab else "lm.arpa")
        stats = train_arpa(train_tokens, closed_arpa, order=order, extra_tokens=extra_tokens)
        if open_vocab:
            freq = {w: n for w, n in read_char_freq(freq_path).items() if w in lang.words}
            stats["open_vocab"] = open_vocab_arpa(closed_arpa, out / "lm.arpa", freq, weight=weight)
            stats["open_vocab"]["vocab_size"] = stats["vocab_size"] + stats["open_vocab"]["new_unigrams"]
    else:
        raise SenoneError(f"lm.grammar: {grammar!r} is not known; use word_loop, or ngram (null) for an n-gram LM")
    dev = list(transcript_units(load_transcripts(args.dev_cuts), unit).values())
    extra_report = {}
    if grammar:
        report = evaluate_word_loop(stats, words, dev)
    else:
        report = evaluate(out / "lm.arpa", dev, oov_logprob10=OOV_LOGPROB10)
        if open_vocab:
            extra_report["dev_closed"] = evaluate(closed_arpa, dev, oov_logprob10=OOV_LOGPROB10)
            closed_arpa.unlink()
    arpa_to_g(out / "lm.arpa", lang.words_path, out / "G.fst")
    write_json(out / "lm_report.json", {"unit": unit, "order": order, "grammar": grammar, "train": stats, "dev": report,
                                        **extra_report})
    log.info("LM (%s, %s): dev perplexity %.1f, OOV rate %.2f%% (%d of %d tokens)", unit,
             grammar or f"order {order}", report["perplexity"], 100 * report["oov_rate"], report["num_oov"],
             report["num_tokens"])
    if "dev_closed" in extra_report:
        c = extra_report["dev_closed"]
        log.info("LM without the open vocabulary: dev perplexity %.1f, OOV rate %.2f%%; with an OOV scored at log10 "
                 "%.2f: %.1f closed, %.1f open", c["perplexity"], 100 * c["oov_rate"], OOV_LOGPROB10,
                 c["perplexity_oov_penalised"], report["perplexity_oov_penalised"])


if __name__ == "__main__":
    p = base_parser(__doc__)
    p.add_argument("--lang", required=True)
    p.add_argument("--train-cuts", required=True)
    p.add_argument("--dev-cuts", required=True)
    p.add_argument("--out", required=True)
    run(main, p)
