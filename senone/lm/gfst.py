"""G.fst from an ARPA LM, as Kaldi's ``utils/format_lm.sh`` makes it.

``kaldilm.arpa2fst`` is Kaldi's own ``arpa2fst`` code: with ``disambig_symbol="#0"`` it puts ``#0``
on the input side of back-off arcs (output epsilon), turns ``<s>`` into the start state and
``</s>`` into final weights, so neither symbol appears on any arc (Kaldi's G has the same property).
It returns the FST as text with integer labels from ``words.txt``; we compile that with kaldifst,
ilabel-sort it (``fstarcsort --sort_type=ilabel``) and write it atomically.

ARPA words missing from ``words.txt`` (words the lexicon could not pronounce, if the caller did not
map them to ``<UNK>`` before training the LM) make arpa2fst skip every n-gram containing them, as
Kaldi's format_lm does; we count them and log one warning instead of arpa2fst's per-line ones.
"""

from __future__ import annotations

import logging
import os
import re

import kaldifst

from senone import SenoneError
from senone.io import atomic_path, read_symbol_table, require_file
from senone.lm.ngram import arpa_vocabulary

log = logging.getLogger(__name__)


def arpa_to_g(arpa_path: str | os.PathLike, words_txt: str | os.PathLike, out_fst: str | os.PathLike | None = None,
              *, disambig_symbol: str = "#0", bos: str = "<s>", eos: str = "</s>") -> kaldifst.StdVectorFst:
    """Convert an ARPA LM to G (a word acceptor with ``#0`` back-off arcs); write it to ``out_fst``
    if given and return it."""
    import kaldilm

    require_file(arpa_path, "lm")
    words = read_symbol_table(words_txt)
    for sym in (disambig_symbol, bos, eos):
        if sym not in words:
            raise SenoneError(f"{words_txt}: symbol {sym!r} missing; rebuild the lang dir with senone.lang.prepare_lang")
    missing = [w for w in arpa_vocabulary(arpa_path) if w not in words]
    if missing:
        log.warning("%s: %d LM words are not in %s and their n-grams are dropped from G (e.g. %s); "
                    "map unpronounceable words to <UNK> before training the LM", arpa_path, len(missing),
                    words_txt, ", ".join(missing[:5]))
    text = kaldilm.arpa2fst(input_arpa=str(arpa_path), disambig_symbol=disambig_symbol, bos_symbol=bos,
                            eos_symbol=eos, read_symbol_table=str(words_txt), max_arpa_warnings=0)
    if not text.strip():
        raise SenoneError(f"{arpa_path}: arpa2fst produced an empty G; check that the ARPA file is valid")
    # kaldilm's text: "src dst ilabel olabel [weight]" arcs and "state [weight]" finals.
    b, e = words[bos], words[eos]
    on_arc = re.compile(rf"^\d+[ \t]+\d+[ \t]+(?:\d+[ \t]+)?(?:{b}|{e})(?:[ \t]|$)", re.M)
    if on_arc.search(text):
        raise SenoneError(f"{arpa_path}: G has {bos}/{eos} on an arc; kaldilm did not remove them")
    G = kaldifst.compile(text, acceptor=False)
    kaldifst.arcsort(G, sort_type="ilabel")
    if out_fst is not None:
        with atomic_path(out_fst) as tmp:
            if not G.write(str(tmp)):
                raise SenoneError(f"{out_fst}: could not write G.fst; check disk space and permissions")
    return G
