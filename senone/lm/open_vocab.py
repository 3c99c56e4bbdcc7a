"""Open-vocabulary ARPA: interpolate the unigrams with a frequency list, renormalise the back-offs.

An n-gram estimated on the training text gives every other word probability zero, so the decoder can
never output it, whatever the lexicon holds. For a character LM with an open lexicon (the most
frequent characters of jieba's dictionary, ``senone.lang.common_chars``) we make the unseen
characters unlikely rather than impossible by mixing the model's unigram distribution with the
frequency list's, over the whole (open) vocabulary::

    P1'(w) = (1 − λ) · P1(w) + λ · Pfreq(w),      Pfreq(w) = f(w) / Σ_v f(v)

(λ = ``lm.open_vocab_weight``; ``</s>``, ``<UNK>`` and Latin words have f = 0 and keep (1 − λ) of
their probability, characters of the list that the ARPA lacks become unigrams with probability
λ · Pfreq(w), and ``<s>`` stays at −99). The explicit higher-order probabilities are kept, and every
back-off weight is recomputed from the bottom order up, as in Katz/ARPA renormalisation, so that each
conditional distribution sums to one again::

    bo(h) = (1 − Σ_{w ∈ E(h)} P(w | h)) / (1 − Σ_{w ∈ E(h)} P(w | h'))

where E(h) are the words with an explicit n-gram ``h w``, h' is h without its first word and
P(w | h') is the (already renormalised) back-off distribution of the lower order. An unseen
character after a context h is then reached by back-off: P(c | h) = bo(h) · … · λ · Pfreq(c).

``weight = 0`` or an empty frequency list copies the ARPA unchanged (byte for byte): today's closed
vocabulary. The default λ = 0.25 was chosen by dev perplexity at N = 7000: the optimum is flat between
0.2 and 0.3 (cv_zh 171.8 / 171.5 / 171.4, synth_zh 95.20 / 95.18 / 95.23 at λ = 0.2 / 0.25 / 0.3; 0.1 and
0.5 are worse on both), 0.25 is within 0.1% of the best on each, and on cv_zh it costs the tokens the
closed LM could score nothing (146.7 → 146.4).
Probabilities are written as the trainer writes them (7 decimals of log10); explicit
n-gram probabilities are therefore unchanged to the digit.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
from dataclasses import dataclass, field
from typing import Mapping

from senone import SenoneError
from senone.io import atomic_open, atomic_path, require_file
from senone.lm.ngram import BOS, EOS

log = logging.getLogger(__name__)

NGram = tuple[str, ...]
DEFAULT_WEIGHT = 0.25  # lm.open_vocab_weight in conf/lang.yaml (README "LM": chosen by dev perplexity)
# The shared-basis OOV penalty of the LM report (senone.lm.ngram.evaluate's oov_logprob10): a closed LM
# that set aside 1% of its probability for the ~10^4 characters outside its vocabulary, spread uniformly,
# would give each log10(0.01 / 10^4) = -6. (Its in-vocabulary probabilities are not scaled down by the 1%:
# a bias of under 0.5% in perplexity in the closed LM's favour. A milder penalty such as -4, a uniform
# guess among 10^4 characters, would hand the closed LM a second full distribution over its OOVs.)
OOV_LOGPROB10 = -6.0
_LOG10_ZERO = -99.0  # how ARPA writes log10(0) (<s>'s unigram)


@dataclass
class Arpa:
    """An ARPA back-off LM in memory: per order, n-gram → [log10 prob, log10 back-off or None],
    in the file's order."""

    ngrams: list[dict[NGram, list]] = field(default_factory=list)

    @property
    def order(self) -> int:
        return len(self.ngrams)

    def vocabulary(self) -> list[str]:
        return [ng[0] for ng in self.ngrams[0]] if self.ngrams else []


def read_arpa(path: str | os.PathLike) -> Arpa:
    """Parse an ARPA file (the ``\\data\\`` counts are checked against the sections)."""
    path = require_file(path, "lm")
    counts: dict[int, int] = {}
    arpa = Arpa()
    current = 0
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            s = line.strip()
            if not s:
                continue
            if s.startswith("\\"):
                if s == "\\end\\":
                    break
                if s.endswith("-grams:"):
                    current = int(s[1:s.index("-")])
                    if current != arpa.order + 1:
                        raise SenoneError(f"{path}:{lineno}: section {s} out of order")
                    arpa.ngrams.append({})
                continue
            if current == 0:
                if s.startswith("ngram ") and "=" in s:
                    n, c = s[6:].split("=", 1)
                    counts[int(n)] = int(c)
                continue
            parts = s.split()
            if len(parts) not in (current + 1, current + 2):
                raise SenoneError(f"{path}:{lineno}: expected a {current}-gram line "
                                  f"'logprob w1..w{current} [backoff]', got {s!r}")
            try:
                prob = float(parts[0])
                bow = float(parts[-1]) if len(parts) == current + 2 else None
            except ValueError:
                raise SenoneError(f"{path}:{lineno}: not a number in {s!r}") from None
            arpa.ngrams[-1][tuple(parts[1:current + 1])] = [prob, bow]
    found = {n + 1: len(t) for n, t in enumerate(arpa.ngrams)}
    if not arpa.ngrams or found != counts:
        raise SenoneError(f"{path}: ARPA header counts {counts} do not match its sections {found}; rewrite the LM")
    return arpa


def write_arpa(arpa: Arpa, path: str | os.PathLike) -> None:
    """Write ``arpa`` atomically in the ARPA format (7 decimals, tab-separated, as kaldingram)."""
    with atomic_open(path) as f:
        f.write("\\data\\\n")
        for n, table in enumerate(arpa.ngrams, 1):
            f.write(f"ngram {n}={len(table)}\n")
        for n, table in enumerate(arpa.ngrams, 1):
            f.write(f"\n\\{n}-grams:\n")
            for ng, (prob, bow) in table.items():
                words = " ".join(ng)
                f.write(f"{prob:.7f}\t{words}\n" if bow is None else f"{prob:.7f}\t{words}\t{bow:.7f}\n")
        f.write("\n\\end\\\n")


def backoff_prob(arpa: Arpa, history: NGram, word: str) -> float:
    """P(word | history) of the back-off model (linear, not log), history truncated to order − 1."""
    history = history[max(0, len(history) - arpa.order + 1):]
    weight = 1.0
    while True:
        ng = history + (word,)
        entry = arpa.ngrams[len(ng) - 1].get(ng)
        if entry is not None:
            return weight * 10.0 ** entry[0]
        if not history:
            return 0.0
        ctx = arpa.ngrams[len(history) - 1].get(history)
        if ctx is not None and ctx[1] is not None:
            weight *= 10.0 ** ctx[1]
        history = history[1:]


def renormalise_backoffs(arpa: Arpa) -> int:
    """Recompute every back-off weight, lowest order first (see the module doc); returns how many
    contexts were set. A context with no explicit continuation gets back-off 1 (log10 0)."""
    n_set = 0
    for k in range(1, arpa.order):  # contexts of length k, their continuations in order k + 1
        children: dict[NGram, list[str]] = {}
        for ng in arpa.ngrams[k]:
            children.setdefault(ng[:-1], []).append(ng[-1])
        orphans = [h for h in children if h not in arpa.ngrams[k - 1]]
        if orphans:
            raise SenoneError(f"ARPA: {len(orphans)} {k + 1}-grams extend a history that is not a {k}-gram "
                              f"(e.g. {' '.join(orphans[0])}); cannot renormalise this LM")
        for h, entry in arpa.ngrams[k - 1].items():
            words = children.get(h)
            if not words:
                if entry[1] is not None:
                    entry[1] = 0.0
                continue
            explicit = sum(10.0 ** arpa.ngrams[k][h + (w,)][0] for w in words)
            lower = sum(backoff_prob(arpa, h[1:], w) for w in words)
            num, den = 1.0 - explicit, 1.0 - lower
            if num <= 0.0 or den <= 0.0:
                raise SenoneError(f"ARPA: context {' '.join(h)!r} leaves no probability mass to back off "
                                  f"(explicit {explicit:.6f}, lower order {lower:.6f}); cannot renormalise")
            entry[1] = math.log10(num / den)
            n_set += 1
    return n_set


def interpolate_unigrams(arpa: Arpa, frequencies: Mapping[str, float], weight: float) -> dict:
    """P1'(w) = (1 − weight) P1(w) + weight Pfreq(w) in place (new words appended), then
    :func:`renormalise_backoffs`. Returns counts for the LM report."""
    if not 0.0 <= weight < 1.0:
        raise SenoneError(f"lm.open_vocab_weight={weight}: must be in [0, 1)")
    freq = {w: float(f) for w, f in frequencies.items() if f > 0 and w not in (BOS, EOS)}
    total = sum(freq.values())
    if total <= 0:
        raise SenoneError("open vocabulary: the frequency list is empty; rebuild the lang dir")
    unigrams = arpa.ngrams[0]
    for ng, entry in unigrams.items():
        w = ng[0]
        if w == BOS:
            continue
        p = (1.0 - weight) * 10.0 ** entry[0] + weight * freq.get(w, 0.0) / total
        entry[0] = math.log10(p)
    new = [w for w in sorted(freq, key=lambda w: (-freq[w], w)) if (w,) not in unigrams]
    for w in new:
        unigrams[(w,)] = [math.log10(weight * freq[w] / total), None]
    contexts = renormalise_backoffs(arpa)
    return {"new_unigrams": len(new), "contexts_renormalised": contexts,
            "frequency_mass_in_training_vocabulary": 1.0 - sum(freq[w] for w in new) / total}


def open_vocab_arpa(in_arpa: str | os.PathLike, out_arpa: str | os.PathLike, frequencies: Mapping[str, float],
                    *, weight: float = DEFAULT_WEIGHT) -> dict:
    """Write ``out_arpa``: ``in_arpa`` with its unigrams interpolated with ``frequencies`` (word →
    count, e.g. the lang dir's ``char_freq.txt``) at ``weight`` and every back-off renormalised.
    ``weight = 0`` or no frequencies: an unchanged copy. Returns what was done (for lm_report.json)."""
    if weight == 0.0 or not frequencies:
        if os.path.abspath(in_arpa) != os.path.abspath(out_arpa):
            with atomic_path(out_arpa) as tmp:
                shutil.copyfile(require_file(in_arpa, "lm"), tmp)
        return {"weight": weight, "new_unigrams": 0, "contexts_renormalised": 0}
    arpa = read_arpa(in_arpa)
    stats = interpolate_unigrams(arpa, frequencies, weight)
    write_arpa(arpa, out_arpa)
    log.info("open vocabulary: unigrams interpolated with the frequency list (weight %g), %d new unigrams, "
             "%d back-off weights renormalised", weight, stats["new_unigrams"], stats["contexts_renormalised"])
    return {"weight": weight, **stats}


__all__ = ["DEFAULT_WEIGHT", "OOV_LOGPROB10", "Arpa", "backoff_prob", "interpolate_unigrams", "open_vocab_arpa",
           "read_arpa", "renormalise_backoffs", "write_arpa"]
