"""Phones and syllables of a best-path alignment (senone.decode.phones)."""

from __future__ import annotations

import kaldi_hmm_gmm as khg
import numpy as np
import pytest

from senone import SenoneError
from senone.decode.phones import (
    SyllableCounts,
    alignment_to_phones,
    alignments_to_phones,
    hyp_syllables,
    hyp_syllables_batch,
    phones_to_syllables,
    ref_syllable_keys,
    strip_tone,
    syllable_key,
    syllable_key_from_pinyin,
)
from senone.gmm.align import equal_align
from senone.hmm.tree_stats import TransitionTables
from senone.lang import build_mandarin_lexicon, prepare_lang

# One reading per character (prefer_observed), so every path through the lexicon is known.
READINGS = {"你": "ni3", "是": "shi4", "我": "wo3", "一": "yi1", "五": "wu3", "鱼": "yu2", "二": "er2",
            "啊": "a1", "日": "ri4"}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    chars = sorted(READINGS)
    lex, missing = build_mandarin_lexicon(chars, observed=[(c, [s]) for c, s in READINGS.items()],
                                          prefer_observed=True)
    assert not missing
    lang = prepare_lang(lex, tmp_path_factory.mktemp("phones") / "lang")
    topo = lang.topology()
    ctx = khg.monophone_context_dependency(lang.real_phones, topo.get_phone_to_num_pdf_classes())
    tm = khg.TransitionModel(ctx, topo)
    return lang, topo, ctx, tm


def _tid(tables: TransitionTables, topo, phone: int, state: int, dest: int) -> int:
    """The transition-id of phone ``phone``'s HMM state ``state`` → ``dest`` (monophone model)."""
    rows = np.flatnonzero((tables.tuples[:, 0] == phone) & (tables.tuples[:, 1] == state))
    assert len(rows) == 1
    dests = [d for d, _ in topo.topology_for_phone(phone)[state].transitions]
    return int(tables.state2id[rows[0]] + dests.index(dest))


def _phone_frames(tables, topo, phone: int, loops: list[int], *, reordered: bool = True) -> list[int]:
    """Transition-ids of one phone instance walking the topology's path through states 0..last:
    silence (5 states) goes 0 → 1 → 4 → final, nonsilence 0 → 1 → 2 → final; ``loops[k]`` self-loops
    in the k-th visited state, after its forward transition when ``reordered`` (Kaldi's default)."""
    n = len(topo.topology_for_phone(phone)) - 1
    path = [0, 1, n - 1, n] if n == 5 else list(range(n + 1))
    out: list[int] = []
    for k, (s, d) in enumerate(zip(path[:-1], path[1:])):
        fwd = [_tid(tables, topo, phone, s, d)]
        loop = [_tid(tables, topo, phone, s, s)] * loops[k]
        out += fwd + loop if reordered else loop + fwd
    return out


SEQ = ["SIL", "n", "i3", "sh", "ix4", "uo3", "uo3", "i1", "SIL", "SPN", "u3", "v2", "er2", "a1", "a1",
       "r", "ix4", "r", "ix4", "SIL"]
SYLS = ["n_i3", "sh_ix4", "uo3", "uo3", "i1", "u3", "v2", "er2", "a1", "a1", "r_ix4", "r_ix4"]


def _alignment(lang, topo, tm, *, reordered: bool, seed: int = 0) -> list[int]:
    tables = TransitionTables.from_model(tm)
    rng = np.random.default_rng(seed)
    ali: list[int] = []
    for name in SEQ:
        # three visited states per phone; zero self-loops in some of them, several in others
        ali += _phone_frames(tables, topo, lang.phones[name], rng.integers(0, 3, size=3).tolist(),
                             reordered=reordered)
    return ali


@pytest.mark.parametrize("reordered", [True, False])
def test_alignment_to_phones_hand_built(world, reordered):
    lang, topo, _ctx, tm = world
    ali = _alignment(lang, topo, tm, reordered=reordered)
    expected = [lang.phones[p] for p in SEQ]
    assert alignment_to_phones(tm, ali) == expected                      # order detected
    assert alignment_to_phones(tm, np.asarray(ali, dtype=np.int32), reordered=reordered) == expected
    assert hyp_syllables(tm, ali, lang.id2phone, ["SIL", "SPN"]) == SYLS
    assert hyp_syllables(tm, ali, lang.id2phone, lang.silence_phones) == SYLS  # ids work too


def test_same_phone_twice_without_self_loops(world):
    """a1 a1 with no self-loops at all: the phone boundary is the final-entering transition."""
    lang, topo, _ctx, tm = world
    tables = TransitionTables.from_model(tm)
    a1 = lang.phones["a1"]
    one = _phone_frames(tables, topo, a1, [0, 0, 0])
    assert alignment_to_phones(tm, one + one + one) == [a1, a1, a1]
    loops = _phone_frames(tables, topo, a1, [2, 0, 3])
    assert alignment_to_phones(tm, loops + one + loops) == [a1, a1, a1]


def test_batch_matches_single_and_keeps_empty(world):
    lang, topo, _ctx, tm = world
    alis = {f"u{i}": _alignment(lang, topo, tm, reordered=True, seed=i) for i in range(4)}
    alis["empty"] = []
    batch = alignments_to_phones(tm, alis)
    assert list(batch) == list(alis)
    assert batch["empty"] == []
    for u in alis:
        assert batch[u] == alignment_to_phones(tm, alis[u])
    keys, counts = hyp_syllables_batch(tm, alis, lang.id2phone, ["SIL", "SPN"])
    assert keys["u2"] == SYLS and keys["empty"] == []
    assert counts.syllables == 4 * len(SYLS) and counts.orphan_initials == 0 and counts.foreign_phones == 0
    assert counts.silence == 4 * 4


def test_partial_alignment_keeps_last_phone(world):
    """A partial decode can stop inside a phone; the phone is still reported, a lone initial dropped."""
    lang, topo, _ctx, tm = world
    tables = TransitionTables.from_model(tm)
    n, i3, sh = lang.phones["n"], lang.phones["i3"], lang.phones["sh"]
    ali = _phone_frames(tables, topo, n, [1, 1, 1]) + _phone_frames(tables, topo, i3, [1, 1, 1])
    ali += _phone_frames(tables, topo, sh, [1, 1, 1])[:3]
    assert alignment_to_phones(tm, ali) == [n, i3, sh]
    counts = SyllableCounts()
    assert hyp_syllables(tm, ali, lang.id2phone, counts=counts) == ["n_i3"]
    assert counts.orphan_initials == 1


def test_bad_transition_id(world):
    _lang, _topo, _ctx, tm = world
    with pytest.raises(SenoneError, match="transition-id"):
        alignment_to_phones(tm, [1, tm.num_transition_ids + 1])


def test_kaldi_training_graph_paths(world):
    """Random paths through Kaldi's own compiled training graph (optional silence, reordered
    self-loops) give back the words' phones and syllables."""
    lang, _topo, ctx, tm = world
    compiler = khg.TrainingGraphCompiler(tm, ctx, lang.read_L(), list(lang.disambig_phones),
                                         khg.TrainingGraphCompilerOptions())
    text = ["啊", "啊", "你", "是", "一", "一", "二", "五"]
    graph = compiler.compile_graph_from_text([lang.words[w] for w in text])
    expected_syls = [syllable_key_from_pinyin(READINGS[w]) for w in text]
    expected_phones = [lang.phones[p] for w in text for p in _pron(lang, w)]
    sil = set(lang.silence_phones)
    for seed in range(5):
        ali = equal_align(graph, 60 + 7 * seed, seed)
        assert ali is not None
        phones = alignment_to_phones(tm, ali)
        assert [p for p in phones if p not in sil] == expected_phones
        assert hyp_syllables(tm, ali, lang.id2phone) == expected_syls


def _pron(lang, word: str) -> list[str]:
    for line in (lang.dir / "lexicon.txt").read_text(encoding="utf-8").splitlines():
        w, phones = line.split("\t")
        if w == word:
            return phones.split()
    raise KeyError(word)


def test_phones_to_syllables_edge_cases():
    counts = SyllableCounts()
    got = phones_to_syllables(["SIL", "zh", "ix1", "b", "SIL", "m", "u2", "AH0", "h", "ao3", "sh"],
                              {"SIL", "SPN"}, counts=counts)
    assert got == ["zh_ix1", "m_u2", "<AH0>", "h_ao3"]
    assert counts.orphan_initials == 2 and counts.foreign_phones == 1 and counts.silence == 2
    # a lexicon built with apical_i=False writes the apical vowel as i: the key is the same
    assert phones_to_syllables(["sh", "i4", "n", "i3"], {"SIL"}) == ["sh_ix4", "n_i3"]
    # a Latin word spelt by the lexicon: B → bi4, F → ai2 fu5
    assert phones_to_syllables(["b", "i4", "ai2", "f", "u5"], {"SIL"}) == ["b_i4", "ai2", "f_u5"]


def test_keys_from_pinyin():
    assert syllable_key_from_pinyin("shi4") == syllable_key(("sh", "ix4")) == "sh_ix4"
    assert syllable_key_from_pinyin("ni3") == "n_i3"
    zero_initial = {"yi1": "i1", "wu3": "u3", "yu2": "v2", "wo3": "uo3", "er2": "er2", "a1": "a1",
                    "you3": "iou3", "yuan2": "van2"}
    for syl, key in zero_initial.items():
        assert syllable_key_from_pinyin(syl) == key
    assert syllable_key_from_pinyin("lü4") == "l_v4"
    assert syllable_key_from_pinyin("de") == "d_e5"
    with pytest.raises(SenoneError):
        syllable_key_from_pinyin("xyz3")
    with pytest.raises(SenoneError):
        syllable_key(())


def test_strip_tone():
    assert strip_tone("n_i3") == "n_i"
    assert strip_tone("sh_ix4") == "sh_ix"
    assert strip_tone("uo3") == "uo"
    assert strip_tone("er5") == "er"
    assert strip_tone("<AH0>") == "<AH0>"
    assert strip_tone("iphone") == "iphone"
    assert strip_tone("AH1") == "AH1"          # not a Mandarin final
    assert strip_tone("x_AH1") == "x_AH1"


def test_ref_syllable_keys():
    keys, bad = ref_syllable_keys({"a": "ni3 hao3 shi4", "b": ["yi1", "BF", "123"], "c": "", "d": "de ma5"})
    # BF is spelt as the lexicon spells it (B bi4, F ai2 fu5); digits stay a token of their own
    assert keys == {"a": ["n_i3", "h_ao3", "sh_ix4"], "b": ["i1", "b_i4", "ai2", "f_u5", "123"], "c": [],
                    "d": ["d_e5", "m_a5"]}
    assert bad == 1
    keys, bad = ref_syllable_keys({"b": "BF"}, spell_latin=False)
    assert keys == {"b": ["BF"]} and bad == 1
