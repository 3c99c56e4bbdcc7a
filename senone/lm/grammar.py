"""A word-loop grammar (any sequence of vocabulary words, all equally likely) as a unigram ARPA file.

For a small closed vocabulary such as spoken digits, an n-gram estimated from the training
transcripts says little about the words and much about the *utterances*: on isolated digits its
``P(</s> | <s> digit)`` is close to 1, i.e. it learns that every utterance holds exactly one word, and
the decoder is then told the answer's length. A digit loop (Kaldi's TIDIGITS recipe uses one) assumes
nothing but the vocabulary: at every position the utterance ends or goes on with any word, so
insertions and deletions stay possible and the WER measures the acoustic models.

Written as a uniform unigram ARPA — ``P(w) = (1 - stop_prob) / V`` for each of the ``V`` words,
``P(</s>) = stop_prob`` — the loop goes through the same path as every other LM: kaldilm's arpa2fst
makes the one-state G (``senone.lm.gfst.arpa_to_g``); its dev perplexity is computed here in closed
form (kenlm loads no unigram-only ARPA), with kenlm's conventions (see ``senone.lm.ngram``). The default ``stop_prob = 1 / (V + 1)`` makes ending the utterance
as likely as any one word; the LM-weight sweep on dev scales these costs, so it acts as the
word-insertion penalty.
"""

from __future__ import annotations

import math
import os
from typing import Iterable, Sequence

from senone import SenoneError
from senone.io import atomic_open
from senone.lm.ngram import BOS, EOS, _check_tokens


def write_word_loop_arpa(words: Iterable[str], out_arpa: str | os.PathLike, *, stop_prob: float | None = None) -> dict:
    """Write the uniform word-loop grammar over ``words`` as a unigram ARPA; return its description."""
    vocab = sorted(set(words))
    if not vocab:
        raise SenoneError(f"{out_arpa}: a word-loop grammar needs at least one word; check the lexicon")
    _check_tokens(vocab, "word-loop vocabulary")
    if stop_prob is None:
        stop_prob = 1.0 / (len(vocab) + 1)
    if not 0.0 < stop_prob < 1.0:
        raise SenoneError(f"lm.stop_prob={stop_prob}: must be between 0 and 1")
    word_lp = math.log10((1.0 - stop_prob) / len(vocab))
    with atomic_open(out_arpa) as f:
        f.write(f"\\data\\\nngram 1={len(vocab) + 2}\n\n\\1-grams:\n")
        f.write(f"-99\t{BOS}\n{math.log10(stop_prob):.6f}\t{EOS}\n")
        for w in vocab:
            f.write(f"{word_lp:.6f}\t{w}\n")
        f.write("\n\\end\\\n")
    return {"kind": "word_loop", "vocabulary": len(vocab), "stop_prob": stop_prob}


def evaluate_word_loop(grammar: dict, vocabulary: Iterable[str], dev_token_lists: Iterable[Sequence[str]]) -> dict:
    """Dev perplexity and OOV rate of the word loop, as ``senone.lm.ngram.evaluate`` reports an n-gram's
    (OOV tokens excluded; every sentence scores its in-vocabulary tokens and ``</s>``)."""
    vocab = set(vocabulary)
    stop = grammar["stop_prob"]
    word_lp = math.log10((1.0 - stop) / grammar["vocabulary"])
    total = 0.0
    num_tok = num_oov = num_sent = 0
    for tokens in dev_token_lists:
        if not tokens:
            continue
        num_sent += 1
        num_tok += len(tokens)
        oov = sum(1 for t in tokens if t not in vocab)
        num_oov += oov
        total += (len(tokens) - oov) * word_lp + math.log10(stop)
    if num_sent == 0:
        raise SenoneError("LM evaluation: no non-empty dev sentences; check the dev transcripts")
    scored = num_tok - num_oov + num_sent
    return {"perplexity": 10.0 ** (-total / scored), "oov_rate": num_oov / num_tok if num_tok else 0.0,
            "num_tokens": num_tok, "num_oov": num_oov, "num_sentences": num_sent, "logprob10": total}
