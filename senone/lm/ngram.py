"""N-gram LM estimation (ARPA) and perplexity.

Estimation uses ``kaldingram`` (Kaldi's ``make_phone_lm.py`` lineage, same numbers as SRILM's
``ngram-count -ukndiscount -kn-modify-counts-at-end -gtNmin 0``): back-off Kneser-Ney with one
discount per order, D_n = n1 / (n1 + 2 n2), and continuation counts for the lower orders. It is not
*modified* KN (three discounts per order, usually somewhat lower perplexity on large text). We use it
anyway: it is next-gen-Kaldi code, its ARPA files load in kenlm and kaldilm, its conditional
distributions sum to one (tested), and our own modified-KN estimator would be one more
implementation to verify for a gain that the LM-weight sweep mostly absorbs. We call its ``NgramCounts`` class in-process
(no temporary text file, UTF-8 throughout).

The functions only see the sentences they are given: the caller passes the *training* transcripts
(and optional extra text); dev and test transcripts must never be passed to :func:`train_arpa`,
only to :func:`evaluate`.

Perplexity (:func:`evaluate`) follows kenlm's ``query`` "excluding OOVs" convention: every
sentence is scored with ``<s>`` context and a final ``</s>``; the log10 probabilities of all
in-vocabulary tokens and of ``</s>`` are summed, and PPL = 10^(−sum / (tokens − OOVs + sentences)).
OOV tokens (not in the LM's vocabulary) contribute nothing and are reported separately as a count
and a rate over the tokens (``</s>`` not counted). The word after an OOV is scored with the OOV in
its history, as kenlm and SRILM do.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

from senone import SenoneError
from senone.io import atomic_open, atomic_path, require_file

log = logging.getLogger(__name__)

BOS, EOS = "<s>", "</s>"


@contextlib.contextmanager
def _quiet_kaldingram() -> Iterator[None]:
    """Silence kaldingram's nested per-order tqdm bars (dozens of lines per call in a log file);
    we log one line per phase instead."""
    import kaldingram.prune
    import kaldingram.train

    saved = kaldingram.train.tqdm, kaldingram.prune.tqdm
    quiet = functools.partial(saved[0], disable=True)
    kaldingram.train.tqdm = kaldingram.prune.tqdm = quiet
    try:
        yield
    finally:
        kaldingram.train.tqdm, kaldingram.prune.tqdm = saved


def _check_tokens(tokens: Sequence[str], where: str) -> None:
    for t in tokens:
        if not t or t != t.strip() or any(c.isspace() for c in t):
            raise SenoneError(f"{where}: token {t!r} is empty or contains whitespace; tokenise with senone.lang.to_units")
        if t in (BOS, EOS):
            raise SenoneError(f"{where}: token {t!r} is reserved for sentence boundaries; remove it from the text")


def train_arpa(
    train_tokens: Iterable[Sequence[str]],
    out_arpa: str | os.PathLike,
    *,
    order: int = 3,
    extra_tokens: Iterable[Sequence[str]] = (),
    prune_threshold: float = 0.0,
) -> dict[str, Any]:
    """Estimate a back-off Kneser-Ney ``order``-gram from token lists and write it as ARPA.

    ``train_tokens``: the training transcripts, one token list per utterance (units from
    ``senone.lang.to_units``, OOVs already mapped to ``<UNK>`` if wanted). ``extra_tokens``: more
    LM-only sentences, tokenised the same way. Empty sentences are skipped (counted). With
    ``prune_threshold > 0`` the model is entropy-pruned (Stolcke, kaldingram's SRILM-compatible
    implementation) before it is written. Returns statistics (sentences, tokens, vocabulary size,
    n-gram counts, discounts).
    """
    from kaldingram.train import NgramCounts

    if not 1 <= order <= 5:
        raise SenoneError(f"LM order {order}: kaldingram supports orders 1..5; set lm order to 3")
    counts = NgramCounts(order, bos_symbol=BOS, eos_symbol=EOS)
    try:
        from kaldingram.train import _GcSuspended as gc_off  # counting is much faster without cyclic GC
    except ImportError:  # pragma: no cover - older kaldingram
        gc_off = contextlib.nullcontext
    num_sent = num_tok = num_empty = num_extra = 0
    vocab: set[str] = set()
    with gc_off():
        for source, lists in (("training transcripts", train_tokens), ("extra LM text", extra_tokens)):
            for i, tokens in enumerate(lists):
                if not tokens:
                    num_empty += 1
                    continue
                _check_tokens(tokens, f"{source}, sentence {i + 1}")
                counts.add_raw_counts_from_line(" ".join(tokens))
                num_sent += 1
                num_tok += len(tokens)
                vocab.update(tokens)
                if source == "extra LM text":
                    num_extra += 1
    if num_sent == 0:
        raise SenoneError(f"{out_arpa}: no non-empty training sentences for the LM; check the training transcripts")
    if num_empty:
        log.info("LM: skipped %d empty sentences", num_empty)
    log.info("LM: %d sentences, %d tokens, %d distinct units; estimating %d-gram KN", num_sent, num_tok,
             len(vocab), order)
    with _quiet_kaldingram():
        counts.cal_discounting_constants()
        counts.cal_f()
        counts.cal_bow()
    discounts = [float(d) for d in counts.d]

    if prune_threshold > 0:
        out_arpa = Path(out_arpa)
        out_arpa.parent.mkdir(parents=True, exist_ok=True)
        fd, full = tempfile.mkstemp(prefix=f".{out_arpa.name}.", suffix=".full.tmp", dir=out_arpa.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f, _quiet_kaldingram():
                counts.print_as_arpa(fout=f)
            del counts
            log.info("LM: entropy pruning with threshold %g", prune_threshold)
            with _quiet_kaldingram():
                _prune_arpa(full, out_arpa, prune_threshold)
        finally:
            os.unlink(full)
    else:
        with atomic_open(out_arpa) as f, _quiet_kaldingram():
            counts.print_as_arpa(fout=f)
    stats = {
        "order": order,
        "num_sentences": num_sent,
        "num_extra_sentences": num_extra,
        "num_tokens": num_tok,
        "vocab_size": len(vocab),
        "ngrams": arpa_counts(out_arpa),
        "discounts": discounts,
        "prune_threshold": prune_threshold,
        "estimator": "kaldingram back-off Kneser-Ney (one discount per order)",
    }
    return stats


def _prune_arpa(in_arpa: str | os.PathLike, out_arpa: str | os.PathLike, threshold: float) -> None:
    from kaldingram.prune import ArpaParser, prune

    lm = ArpaParser().loadf(str(in_arpa), encoding="utf-8")[0]
    prune(lm, threshold, 1)
    with atomic_path(out_arpa) as tmp:
        ArpaParser().dumpf(lm, str(tmp), encoding="utf-8")
        _fix_arpa_header(tmp)


def _fix_arpa_header(path: str | os.PathLike) -> None:
    """Rewrite the ``ngram N=count`` header from the sections' contents and drop empty top orders.

    kaldingram's pruner leaves the old count in the header of an order it emptied completely, which
    kenlm then rejects.
    """
    sections: dict[int, list[str]] = {}
    current = None
    with open(path, encoding="utf-8") as f:
        for line in f:
            s = line.strip()
            if s.startswith("\\") and s.endswith("-grams:"):
                current = int(s[1:s.index("-")])
                sections[current] = []
            elif s == "\\end\\":
                current = None
            elif current is not None and s:
                sections[current].append(s)
    while sections and not sections[max(sections)]:
        del sections[max(sections)]
    with open(path, "w", encoding="utf-8") as f:
        f.write("\\data\\\n")
        for n in sorted(sections):
            f.write(f"ngram {n}={len(sections[n])}\n")
        for n in sorted(sections):
            f.write(f"\n\\{n}-grams:\n")
            f.writelines(x + "\n" for x in sections[n])
        f.write("\n\\end\\\n")


def arpa_counts(arpa_path: str | os.PathLike) -> dict[int, int]:
    """The ``ngram N=count`` header of an ARPA file."""
    out: dict[int, int] = {}
    with open(arpa_path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if line.startswith("ngram ") and "=" in line:
                n, c = line[6:].split("=", 1)
                out[int(n)] = int(c)
            elif line.startswith("\\1-grams:"):
                break
    return out


def arpa_vocabulary(arpa_path: str | os.PathLike) -> list[str]:
    """The words of an ARPA file's unigram section (``<s>`` and ``</s>`` included)."""
    words = []
    in_unigrams = False
    with open(arpa_path, encoding="utf-8") as f:
        for line in f:
            s = line.strip()
            if s == "\\1-grams:":
                in_unigrams = True
                continue
            if in_unigrams:
                if not s:
                    continue
                if s.startswith("\\"):
                    break
                parts = s.split()
                if len(parts) >= 2:
                    words.append(parts[1])
    return words


def load_kenlm(arpa_path: str | os.PathLike):
    """Load an ARPA (or kenlm binary) file with kenlm, without its missing-<unk> complaint."""
    import kenlm

    require_file(arpa_path, "lm")
    config = kenlm.Config()
    config.arpa_complain = kenlm.ARPALoadComplain.NONE
    config.show_progress = False
    return kenlm.Model(str(arpa_path), config)


def evaluate(arpa_path: str | os.PathLike, dev_token_lists: Iterable[Sequence[str]], *,
             oov_logprob10: float | None = None) -> dict[str, float | int]:
    """Perplexity and OOV rate of an LM on held-out token lists (kenlm, OOVs excluded; see module doc).

    Returns ``perplexity`` (OOVs excluded), ``oov_rate``, ``num_tokens`` (without ``</s>``),
    ``num_oov``, ``num_sentences`` and ``logprob10`` (summed log10 probability of the
    in-vocabulary tokens and ``</s>``). kenlm prints "The ARPA file is missing <unk>" to stderr
    when loading a kaldingram ARPA (it has no ``<unk>``); that is expected and harmless here.

    Perplexities that exclude OOVs are not comparable between LMs with different vocabularies (the
    smaller vocabulary skips the hardest tokens). With ``oov_logprob10`` the result also has
    ``perplexity_oov_penalised``: every token scored, an OOV at that fixed log10 probability, over
    tokens + sentences; LMs evaluated with the same penalty are comparable.
    """
    model = load_kenlm(arpa_path)
    total = 0.0
    num_tok = num_oov = num_sent = 0
    for i, tokens in enumerate(dev_token_lists):
        if not tokens:
            continue
        _check_tokens(tokens, f"dev sentence {i + 1}")
        num_sent += 1
        num_tok += len(tokens)
        for logprob, _ngram_len, oov in model.full_scores(" ".join(tokens), bos=True, eos=True):
            if oov:
                num_oov += 1
            else:
                total += logprob
    if num_sent == 0:
        raise SenoneError("LM evaluation: no non-empty dev sentences; check the dev transcripts")
    scored = num_tok - num_oov + num_sent
    out = {
        "perplexity": 10.0 ** (-total / scored) if scored else math.inf,
        "oov_rate": num_oov / num_tok if num_tok else 0.0,
        "num_tokens": num_tok,
        "num_oov": num_oov,
        "num_sentences": num_sent,
        "logprob10": total,
    }
    if oov_logprob10 is not None:
        out["oov_logprob10"] = oov_logprob10
        out["perplexity_oov_penalised"] = 10.0 ** (-(total + num_oov * oov_logprob10) / (num_tok + num_sent))
    return out
