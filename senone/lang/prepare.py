"""Kaldi's ``utils/prepare_lang.sh`` in Python: a lexicon → a lang directory Kaldi can read.

The directory is built in a hidden temporary sibling and renamed into place, so a killed run never
leaves a half-written lang dir behind (every file in it is therefore written atomically too).

Layout (Kaldi's names and orders)::

    phones.txt            <eps> 0, silence phones (SIL, SPN), nonsilence phones sorted, #0..#N+1
    words.txt             <eps> 0, lexicon words sorted by code point (<UNK> among them), #0, <s>, </s>
    lexicon.txt           word phones...          (also lexiconp.txt: word prob phones...)
    lexicon_disambig.txt  word phones... #k       (also lexiconp_disambig.txt)
    L.fst, L_disambig.fst lexicon FSTs, olabel-sorted (see senone.lang.lexicon_fst)
    oov.txt / oov.int     <UNK>
    topo                  HMM topology: 3-state left-to-right for nonsilence phones,
                          Kaldi's 5-state silence model for silence phones
    phones/               silence, nonsilence, optional_silence, context_indep, disambig,
                          wdisambig(_phones|_words), sets, roots, extra_questions (.txt/.int/.csl)
    lang.json             counts and settings

Disambiguation symbols: ``#1..#N`` come from the lexicon (``add_lex_disambig``), ``#N+1`` follows the
optional silence in L_disambig, and ``#0`` is G's back-off symbol (also a word, for the ``#0:#0``
self-loop). All of them are listed in ``phones/disambig.*``.

Only position-independent phones are supported (``position_dependent=False``): word-position
suffixes (_B/_I/_E/_S) quadruple the phone set, and nothing in senone needs word boundaries yet
(lattice word alignment is not available from the PyPI Kaldi builds).

Tree-building files: by default every phone is its own set/root, so a monophone model keeps tones
apart (Kaldi's AISHELL recipe puts all tones of a final in one set, which makes its monophone
tone-blind by construction). ``share_variants=True`` groups phones that differ only in a trailing
digit (Mandarin tones, CMUdict stress) into one set/root as Kaldi's recipes do.
``extra_questions.txt`` always holds the silence phones, one question per trailing digit (all tone-3
phones, ...), and one per base phone with several variants (a1..a5).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import kaldifst

from senone import SenoneError
from senone.hmm.questions import read_phone_sets
from senone.io import read_symbol_table, require_file
from senone.lang.lexicon import Lexicon
from senone.lang.lexicon_fst import add_disambig_symbols, lexicon_disambig_fst, lexicon_fst

_TRAILING_DIGIT = re.compile(r"^(.*\D)(\d)$")


# --------------------------------------------------------------------------------------------
# Topology
# --------------------------------------------------------------------------------------------

def topology_text(nonsilence_ids: Sequence[int], silence_ids: Sequence[int], *,
                  num_nonsil_states: int = 3, num_sil_states: int = 5) -> str:
    """Kaldi HMM topology text (the format of ``utils/gen_topo.pl``'s output).

    Nonsilence phones: ``num_nonsil_states`` emitting states left to right, self-loop 0.75, forward
    0.25. Silence phones: the first state can go to any of the first ``num_sil_states - 1`` states,
    the middle states to any of states 1..``num_sil_states - 1``, and the last state loops (0.75) or
    exits (0.25): the ergodic middle lets long silences and noises be modelled by a few states.
    """
    lines = ["<Topology>"]

    def entry(phones: Sequence[int], states: list[list[tuple[int, float]]]) -> None:
        lines.extend(["<TopologyEntry>", "<ForPhones>", " ".join(map(str, phones)), "</ForPhones>"])
        for s, trans in enumerate(states):
            t = " ".join(f"<Transition> {d} {p:g}" for d, p in trans)
            lines.append(f"<State> {s} <PdfClass> {s} {t} </State>")
        lines.append(f"<State> {len(states)} </State>")
        lines.append("</TopologyEntry>")

    if nonsilence_ids:
        entry(nonsilence_ids, [[(s, 0.75), (s + 1, 0.25)] for s in range(num_nonsil_states)])
    if silence_ids:
        n = num_sil_states
        if n == 1:
            states = [[(0, 0.75), (1, 0.25)]]
        else:
            p0 = 1.0 / (n - 1)
            states = [[(d, p0) for d in range(n - 1)]]
            pm = 1.0 / (n - 1)
            for s in range(1, n - 1):
                states.append([(d, pm) for d in range(1, n)])
            states.append([(n - 1, 0.75), (n, 0.25)])
        entry(silence_ids, states)
    lines.append("</Topology>")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------

def _variant_groups(phones: Sequence[str]) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """Group phones by base (trailing digit stripped) and by the trailing digit."""
    by_base: dict[str, list[str]] = {}
    by_digit: dict[str, list[str]] = {}
    for p in phones:
        m = _TRAILING_DIGIT.match(p)
        base, digit = (m.group(1), m.group(2)) if m else (p, None)
        by_base.setdefault(base, []).append(p)
        if digit is not None:
            by_digit.setdefault(digit, []).append(p)
    return by_base, by_digit


def _write_phone_list(d: Path, name: str, phones: Sequence[str], table: Mapping[str, int]) -> None:
    """phones/<name>.txt, .int and .csl (colon-separated ids) as Kaldi writes them."""
    (d / f"{name}.txt").write_text("".join(f"{p}\n" for p in phones), encoding="utf-8")
    (d / f"{name}.int").write_text("".join(f"{table[p]}\n" for p in phones), encoding="utf-8")
    (d / f"{name}.csl").write_text(":".join(str(table[p]) for p in phones) + "\n", encoding="utf-8")


def _write_phone_sets(d: Path, name: str, sets: Sequence[Sequence[str]], table: Mapping[str, int],
                      prefix: str = "") -> None:
    (d / f"{name}.txt").write_text("".join(f"{prefix}{' '.join(s)}\n" for s in sets), encoding="utf-8")
    (d / f"{name}.int").write_text(
        "".join(f"{prefix}{' '.join(str(table[p]) for p in s)}\n" for s in sets), encoding="utf-8")


def _write_table(path: Path, table: Mapping[str, int]) -> None:
    path.write_text("".join(f"{s} {i}\n" for s, i in sorted(table.items(), key=lambda kv: kv[1])),
                    encoding="utf-8")


def prepare_lang(
    lexicon: Lexicon,
    out_dir: str | os.PathLike,
    *,
    sil_prob: float = 0.5,
    position_dependent: bool = False,
    share_variants: bool = False,
    num_nonsil_states: int = 3,
    num_sil_states: int = 5,
    extra_info: Mapping[str, Any] | None = None,
    extra_files: Mapping[str, str] | None = None,
) -> "Lang":
    """Write a Kaldi lang directory for ``lexicon`` into ``out_dir`` (replacing it) and load it.

    ``extra_info`` is merged into ``lang.json`` (e.g. how many words were unpronounceable);
    ``extra_files`` (file name → text) are written into the directory with the rest (e.g. the open
    vocabulary's ``char_freq.txt``).
    """
    if position_dependent:
        raise SenoneError("position_dependent=True: word-position-dependent phones are not implemented; "
                          "set position_dependent: false")
    if not 0.0 <= sil_prob < 1.0:
        raise SenoneError(f"sil_prob={sil_prob}: must be in [0, 1)")
    if lexicon.oov_word not in lexicon:
        raise SenoneError(f"lexicon has no entry for the OOV word {lexicon.oov_word}; add '{lexicon.oov_word} SPN'")
    if lexicon.optional_silence not in lexicon.silence_phones:
        raise SenoneError(f"optional silence {lexicon.optional_silence!r} is not a silence phone")
    out_dir = Path(out_dir)

    entries = list(lexicon.entries())
    disambig_entries, max_disambig = add_disambig_symbols(entries)
    sil_disambig = max_disambig + 1
    disambig_syms = [f"#{k}" for k in range(sil_disambig + 1)]  # #0 .. #N+1

    silence = list(lexicon.silence_phones)
    nonsilence = lexicon.nonsilence_phones()
    clash = [p for p in nonsilence if p in silence]
    if clash:
        raise SenoneError(f"phones {clash} are both silence and nonsilence")
    phones: dict[str, int] = {"<eps>": 0}
    for p in silence + nonsilence + disambig_syms:
        phones[p] = len(phones)
    words: dict[str, int] = {"<eps>": 0}
    for w in lexicon.words():
        words[w] = len(words)
    for w in ("#0", "<s>", "</s>"):
        words[w] = len(words)

    L = lexicon_fst(entries, phones, words, sil_phone=lexicon.optional_silence, sil_prob=sil_prob)
    L_disambig = lexicon_disambig_fst(disambig_entries, phones, words, sil_phone=lexicon.optional_silence,
                                      sil_disambig=f"#{sil_disambig}", sil_prob=sil_prob)

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp", dir=out_dir.parent))
    try:
        pd = tmp / "phones"
        pd.mkdir()
        _write_table(tmp / "phones.txt", phones)
        _write_table(tmp / "words.txt", words)
        lexicon.write(tmp / "lexicon.txt")
        lexicon.write(tmp / "lexiconp.txt", with_probs=True)
        with open(tmp / "lexicon_disambig.txt", "w", encoding="utf-8") as f, \
                open(tmp / "lexiconp_disambig.txt", "w", encoding="utf-8") as fp:
            for w, prob, pron in disambig_entries:
                f.write(f"{w}\t{' '.join(pron)}\n")
                fp.write(f"{w}\t{prob:g}\t{' '.join(pron)}\n")
        if not L.write(str(tmp / "L.fst")) or not L_disambig.write(str(tmp / "L_disambig.fst")):
            raise SenoneError(f"{out_dir}: writing L.fst failed; check disk space and permissions")
        (tmp / "oov.txt").write_text(f"{lexicon.oov_word}\n", encoding="utf-8")
        (tmp / "oov.int").write_text(f"{words[lexicon.oov_word]}\n", encoding="utf-8")

        _write_phone_list(pd, "silence", silence, phones)
        _write_phone_list(pd, "nonsilence", nonsilence, phones)
        _write_phone_list(pd, "optional_silence", [lexicon.optional_silence], phones)
        _write_phone_list(pd, "context_indep", silence, phones)
        _write_phone_list(pd, "disambig", disambig_syms, phones)
        (pd / "wdisambig.txt").write_text("#0\n", encoding="utf-8")
        (pd / "wdisambig_phones.int").write_text(f"{phones['#0']}\n", encoding="utf-8")
        (pd / "wdisambig_words.int").write_text(f"{words['#0']}\n", encoding="utf-8")

        by_base, by_digit = _variant_groups(nonsilence)
        if share_variants:
            nonsil_sets = [by_base[b] for b in sorted(by_base)]
        else:
            nonsil_sets = [[p] for p in nonsilence]
        sets = [[p] for p in silence] + nonsil_sets
        _write_phone_sets(pd, "sets", sets, phones)
        _write_phone_sets(pd, "roots", sets, phones, prefix="shared split ")
        questions: list[list[str]] = []
        for q in [silence] + [by_digit[d] for d in sorted(by_digit)] + \
                 [by_base[b] for b in sorted(by_base) if len(by_base[b]) > 1]:
            if q not in questions:
                questions.append(q)
        _write_phone_sets(pd, "extra_questions", questions, phones)

        (tmp / "topo").write_text(
            topology_text([phones[p] for p in nonsilence], [phones[p] for p in silence],
                          num_nonsil_states=num_nonsil_states, num_sil_states=num_sil_states),
            encoding="utf-8")
        info = {
            "num_words": len(lexicon),
            "num_lexicon_entries": len(entries),
            "num_phones": len(silence) + len(nonsilence),
            "num_silence_phones": len(silence),
            "num_nonsilence_phones": len(nonsilence),
            "num_disambig": len(disambig_syms),
            "max_lexicon_disambig": max_disambig,
            "sil_prob": sil_prob,
            "position_dependent": False,
            "share_variants": share_variants,
            "oov_word": lexicon.oov_word,
            "optional_silence": lexicon.optional_silence,
            "L_states": L.num_states,
            "L_arcs": sum(map(L.num_arcs, range(L.num_states))),
            "L_disambig_states": L_disambig.num_states,
            "L_disambig_arcs": sum(map(L_disambig.num_arcs, range(L_disambig.num_states))),
        }
        info.update(dict(extra_info or {}))
        for name, text in (extra_files or {}).items():
            if Path(name).name != name or (tmp / name).exists():
                raise SenoneError(f"extra lang file {name!r}: must be a new plain file name")
            (tmp / name).write_text(text, encoding="utf-8")
        (tmp / "lang.json").write_text(json.dumps(info, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
        _replace_dir(tmp, out_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return load_lang(out_dir)


def _replace_dir(src: Path, dst: Path) -> None:
    """Move a finished directory onto ``dst``, removing any previous one.

    mkdtemp/mkstemp create 0700/0600 entries; give them the modes a plain write would have had.
    """
    umask = os.umask(0o022)
    os.umask(umask)
    for path in [src, *src.rglob("*")]:
        path.chmod((0o777 if path.is_dir() else 0o666) & ~umask)
    if dst.exists() or dst.is_symlink():
        old = Path(tempfile.mkdtemp(prefix=f".{dst.name}.", suffix=".old", dir=dst.parent))
        os.rmdir(old)
        os.replace(dst, old)
        os.replace(src, dst)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(src, dst)


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------

def _read_ints(path: Path) -> list[int]:
    return [int(x) for x in path.read_text(encoding="utf-8").split()]


@dataclass(frozen=True)
class Lang:
    """What later stages need from a lang directory (ids, not names, where Kaldi wants ids)."""

    dir: Path
    phones: dict[str, int]              # phones.txt
    words: dict[str, int]               # words.txt
    silence_phones: list[int]           # SIL, SPN (context-independent, 5-state topology)
    nonsilence_phones: list[int]
    optional_silence: int               # SIL
    disambig_phones: list[int]          # #0..#N+1 phone ids (to drop from H∘CLG; TrainingGraphCompiler)
    wdisambig_phone: int                # phone id of #0
    wdisambig_word: int                 # word id of #0 (G's back-off symbol)
    oov_word: str
    oov_id: int
    bos_id: int                         # <s> in words.txt (never on G's arcs)
    eos_id: int                         # </s>
    phone_sets: list[list[int]]         # phones/sets.int
    extra_questions: list[list[int]]    # phones/extra_questions.int
    info: dict[str, Any] = field(default_factory=dict)  # lang.json

    @property
    def L_path(self) -> Path:
        return self.dir / "L.fst"

    @property
    def L_disambig_path(self) -> Path:
        return self.dir / "L_disambig.fst"

    @property
    def topo_path(self) -> Path:
        return self.dir / "topo"

    @property
    def words_path(self) -> Path:
        return self.dir / "words.txt"

    @property
    def phones_path(self) -> Path:
        return self.dir / "phones.txt"

    @property
    def id2phone(self) -> dict[int, str]:
        return {i: p for p, i in self.phones.items()}

    @property
    def id2word(self) -> dict[int, str]:
        return {i: w for w, i in self.words.items()}

    @property
    def real_phones(self) -> list[int]:
        """Silence + nonsilence phone ids (no <eps>, no disambiguation symbols), ascending."""
        return sorted(self.silence_phones + self.nonsilence_phones)

    def topology(self):
        """The ``topo`` file as a ``kaldi_hmm_gmm.HmmTopology``."""
        import kaldi_hmm_gmm

        topo = kaldi_hmm_gmm.HmmTopology()
        topo.read(self.topo_path.read_text(encoding="utf-8"))  # read() takes the text, not a path
        return topo

    def read_L(self, disambig: bool = False) -> kaldifst.StdVectorFst:
        """L.fst, or L_disambig.fst with ``disambig=True`` (both olabel-sorted)."""
        path = self.L_disambig_path if disambig else self.L_path
        fst = kaldifst.StdVectorFst.read(str(path))
        if fst is None:
            raise SenoneError(f"{path}: not a readable OpenFst file; rebuild the lang dir")
        return fst


def load_lang(lang_dir: str | os.PathLike) -> Lang:
    """Read a lang directory written by :func:`prepare_lang` (or by Kaldi's prepare_lang.sh)."""
    d = Path(lang_dir)
    for name in ("phones.txt", "words.txt", "L.fst", "L_disambig.fst", "topo", "oov.txt",
                 "phones/silence.int", "phones/nonsilence.int", "phones/optional_silence.int",
                 "phones/disambig.int"):
        require_file(d / name, "lang")
    phones = read_symbol_table(d / "phones.txt")
    words = read_symbol_table(d / "words.txt")
    oov = (d / "oov.txt").read_text(encoding="utf-8").strip()
    for sym, table, name in (("#0", phones, "phones.txt"), ("#0", words, "words.txt"),
                             ("<s>", words, "words.txt"), ("</s>", words, "words.txt"),
                             (oov, words, "words.txt")):
        if sym not in table:
            raise SenoneError(f"{d / name}: symbol {sym!r} missing; rebuild the lang dir")
    sets_path, q_path = d / "phones/sets.int", d / "phones/extra_questions.int"
    info_path = d / "lang.json"
    return Lang(
        dir=d,
        phones=phones,
        words=words,
        silence_phones=_read_ints(d / "phones/silence.int"),
        nonsilence_phones=_read_ints(d / "phones/nonsilence.int"),
        optional_silence=_read_ints(d / "phones/optional_silence.int")[0],
        disambig_phones=_read_ints(d / "phones/disambig.int"),
        wdisambig_phone=phones["#0"],
        wdisambig_word=words["#0"],
        oov_word=oov,
        oov_id=words[oov],
        bos_id=words["<s>"],
        eos_id=words["</s>"],
        phone_sets=read_phone_sets(sets_path) if sets_path.exists() else [],
        extra_questions=read_phone_sets(q_path) if q_path.exists() else [],
        info=json.loads(info_path.read_text(encoding="utf-8")) if info_path.exists() else {},
    )
