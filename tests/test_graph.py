"""HCLG construction and the FST helpers, on a hand-made toy lang (no other senone module used).

``build_toy_system`` is also imported by tests/test_decode.py.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from pathlib import Path

import kaldi_hmm_gmm as khg
import kaldifst
import numpy as np
import pytest

from senone import SenoneError
from senone.graph import (
    arrays_to_fst,
    count_labels,
    fst_summary,
    fst_to_arrays,
    is_stochastic,
    make_hclg,
    read_fst,
    read_int_list,
    remove_symbols,
    stochasticity,
    write_fst,
)

PHONES = ["<eps>", "SIL", "a", "b", "c", "#0", "#1", "#2"]
WORDS = ["<eps>", "ab", "abc", "ca", "kah", "#0", "<s>", "</s>"]
# "ab" is a prefix of "abc" and "ca"/"kah" are homophones: both need disambiguation symbols.
LEXICON = {"ab": ["a", "b", "#1"], "abc": ["a", "b", "c"], "ca": ["c", "a", "#1"], "kah": ["c", "a", "#2"]}
TOPO = """<Topology>
<TopologyEntry>
<ForPhones>
1 2 3 4
</ForPhones>
<State> 0 <PdfClass> 0 <Transition> 0 0.5 <Transition> 1 0.5 </State>
<State> 1 <PdfClass> 1 <Transition> 1 0.5 <Transition> 2 0.5 </State>
<State> 2 <PdfClass> 2 <Transition> 2 0.5 <Transition> 3 0.5 </State>
<State> 3 </State>
</TopologyEntry>
</Topology>
"""


@dataclass
class ToySystem:
    lang_dir: Path
    g_path: Path
    ctx_dep: khg.ContextDependency
    trans_model: khg.TransitionModel
    am: khg.AmDiagGmm
    means: np.ndarray  # (num_pdfs, dim)
    phone_ids: dict[str, int]
    word_ids: dict[str, int]

    def synth(self, words: list[str], rng: np.random.Generator, noise: float = 0.3) -> tuple[np.ndarray, np.ndarray]:
        """Features and the pdf-id per frame for ``words`` said with leading/trailing silence."""
        phones = ["SIL"] + [p for w in words for p in LEXICON[w] if not p.startswith("#")] + ["SIL"]
        ids = [self.phone_ids[p] for p in phones]
        pdfs: list[int] = []
        for k, p in enumerate(ids):
            if self.ctx_dep.context_width == 1:
                window = [p]
            else:  # N=3, P=1; 0 (no phone) beyond the utterance edges, as in Kaldi's C transducer
                window = [ids[k - 1] if k > 0 else 0, p, ids[k + 1] if k + 1 < len(ids) else 0]
            for pdf_class in range(3):
                ok, pdf = self.ctx_dep.compute(window, pdf_class)
                assert ok
                pdfs += [pdf] * int(rng.integers(2, 5))
        pdf_arr = np.asarray(pdfs)
        feats = self.means[pdf_arr] + noise * rng.standard_normal((len(pdfs), self.means.shape[1]))
        return feats.astype(np.float32), pdf_arr


def _write_table(path: Path, symbols: list[str]) -> dict[str, int]:
    path.write_text("".join(f"{s} {i}\n" for i, s in enumerate(symbols)), encoding="utf-8")
    return {s: i for i, s in enumerate(symbols)}


def _kaldi_token(s: str) -> bytes:
    return s.encode() + b" "


def _kaldi_int32(v: int) -> bytes:
    return b"\x04" + struct.pack("<i", v)


def triphone_tree(phones: list[int], no_split: int) -> khg.ContextDependency:
    """A hand-made N=3, P=1 tree in Kaldi's binary ContextDependency format: every (central phone,
    pdf class) splits on whether the right neighbour's id is even (phone ``no_split`` does not)."""
    tok, i32 = _kaldi_token, _kaldi_int32

    def ce(pdf: int) -> bytes:
        return tok("CE") + i32(pdf)

    def te(key: int, table: list[bytes | None]) -> bytes:
        body = b"".join(t if t is not None else tok("NULL") for t in table)
        return tok("TE") + i32(key) + b"\xfc" + struct.pack("<I", len(table)) + tok("(") + body + tok(")")

    def se(key: int, yes: list[int], a: bytes, b: bytes) -> bytes:
        ints = b"\x04" + struct.pack("<i", len(yes)) + b"".join(struct.pack("<i", y) for y in sorted(yes))
        return tok("SE") + i32(key) + ints + tok("{") + a + b + tok("}")

    even = [p for p in phones if p % 2 == 0]
    table: list[bytes | None] = [None] * (max(phones) + 1)
    pdf = 0
    for ph in phones:
        per_class = []
        for _ in range(3):
            if ph == no_split:
                per_class.append(ce(pdf))
                pdf += 1
            else:
                per_class.append(se(2, even, ce(pdf), ce(pdf + 1)))
                pdf += 2
        table[ph] = te(-1, per_class)
    data = tok("ContextDependency") + i32(3) + i32(1) + tok("ToPdf") + te(1, table) + tok("EndContextDependency")
    tree = khg.ContextDependency.__new__(khg.ContextDependency)
    tree.__setstate__((np.frombuffer(data, dtype=np.int8).tolist(),))
    return tree


def build_toy_system(root: Path, dim: int = 4, seed: int = 0, triphone: bool = False) -> ToySystem:
    """A Kaldi-layout lang dir, G.fst, tree (monophone or N=3/P=1), transition model and a
    1-Gaussian-per-pdf GMM with far-apart means."""
    lang = root / "lang"
    (lang / "phones").mkdir(parents=True, exist_ok=True)
    P = _write_table(lang / "phones.txt", PHONES)
    W = _write_table(lang / "words.txt", WORDS)
    (lang / "phones" / "disambig.int").write_text("".join(f"{P[p]}\n" for p in PHONES if p.startswith("#")))

    # L_disambig: optional silence at the start and after every word (p = 0.5), #0:#0 self-loop on
    # the loop state so G's backoff arcs pass through, word label on each pronunciation's first arc.
    half = -math.log(0.5)
    lines = [
        f"0 1 0 0 {half}", f"0 1 {P['SIL']} 0 {half}",
        f"2 1 0 0 {half}", f"2 1 {P['SIL']} 0 {half}",
        f"1 1 {P['#0']} {W['#0']}", "1",
    ]
    next_state = 3
    for word, pron in LEXICON.items():
        cur = 1
        for k, ph in enumerate(pron):
            if k == len(pron) - 1:
                nxt = 2
            else:
                nxt, next_state = next_state, next_state + 1
            lines.append(f"{cur} {nxt} {P[ph]} {W[word] if k == 0 else 0}")
            cur = nxt
    kaldifst.compile("\n".join(lines) + "\n").write(str(lang / "L_disambig.fst"))

    # G: a backoff bigram in arpa2fst's shape (#0 on the input of backoff arcs, epsilon output).
    # State 1 = <s> history (the start: fstcompile starts at the first line's source state),
    # 0 = unigram/backoff state, 2.. = after each word. "kah" is rare so "ca" wins over it.
    cost = {w: -math.log(p) for w, p in {"ab": 0.35, "abc": 0.3, "ca": 0.3, "kah": 0.05}.items()}
    hist = {"ab": 2, "abc": 3, "ca": 4, "kah": 5}
    g = [f"1 0 {W['#0']} 0 0.1", f"1 {hist['ab']} {W['ab']} {W['ab']} 0.5"]
    for w, c in cost.items():
        g += [f"0 {hist[w]} {W[w]} {W[w]} {c:.4f}", f"{hist[w]} 0 {W['#0']} 0 0.2", f"{hist[w]} 1.0"]
    g.append(f"{hist['ab']} {hist['ca']} {W['ca']} {W['ca']} 0.7")
    g_path = root / "G.fst"
    kaldifst.compile("\n".join(g) + "\n", keep_state_numbering=True).write(str(g_path))

    topo = khg.HmmTopology()
    topo.read(TOPO)
    phones = [P[p] for p in ("SIL", "a", "b", "c")]
    if triphone:
        ctx_dep = triphone_tree(phones, no_split=P["SIL"])
    else:
        ctx_dep = khg.monophone_context_dependency(phones, topo.get_phone_to_num_pdf_classes())
    tm = khg.TransitionModel(ctx_dep, topo)

    rng = np.random.default_rng(seed)
    means = rng.standard_normal((tm.num_pdfs, dim)) * 6.0  # far apart relative to unit variance
    am = khg.AmDiagGmm()
    for pdf in range(tm.num_pdfs):
        gmm = khg.DiagGmm(1, dim)
        gmm.set_weights(np.ones(1, np.float32))
        gmm.set_means(means[pdf : pdf + 1].astype(np.float32))
        gmm.set_invvars(np.ones((1, dim), np.float32))
        gmm.compute_gconsts()
        am.add_pdf(gmm)
    return ToySystem(lang, g_path, ctx_dep, tm, am, means, P, W)


@pytest.fixture(scope="module")
def toy(tmp_path_factory) -> ToySystem:
    return build_toy_system(tmp_path_factory.mktemp("toy"))


@pytest.fixture(scope="module")
def graph_dir(toy, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("graph")
    make_hclg(toy.lang_dir, toy.g_path, toy.ctx_dep, toy.trans_model, out)
    return out


# --------------------------------------------------------------------------------------------
# fst_utils
# --------------------------------------------------------------------------------------------


def _random_fst(rng: np.random.Generator, num_states: int = 30, num_arcs: int = 120) -> kaldifst.StdVectorFst:
    lines = []
    for _ in range(num_arcs):
        s, d = rng.integers(0, num_states, size=2)
        i, o = rng.integers(0, 9, size=2)
        lines.append(f"{s} {d} {i} {o} {rng.uniform(0, 3):.3f}")
    lines += [f"{s} {rng.uniform(0, 2):.3f}" for s in range(0, num_states, 7)]
    return kaldifst.compile("\n".join(lines) + "\n", keep_state_numbering=True)


def _arcs_py(fst) -> list[tuple]:
    out = []
    for s in range(fst.num_states):
        for arc in kaldifst.ArcIterator(fst, s):
            out.append((s, arc.ilabel, arc.olabel, round(arc.weight.value, 4), arc.nextstate))
        out.append((s, "final", round(fst.final(s).value, 4)))
    return out


def test_arrays_round_trip_is_exact():
    fst = _random_fst(np.random.default_rng(1))
    arrays = fst_to_arrays(fst)
    assert arrays.num_states == fst.num_states
    assert arrays.num_arcs == sum(fst.num_arcs(s) for s in range(fst.num_states))
    back = arrays_to_fst(arrays)
    assert back.start == fst.start
    assert _arcs_py(back) == _arcs_py(fst)


def test_arrays_ignore_attached_symbol_tables():
    fst = kaldifst.compile("0 1 1 2 0.5\n1 0.25\n")
    syms = kaldifst.SymbolTable()
    syms.add_symbol("<eps>")
    syms.add_symbol("x")
    fst.input_symbols = syms
    arrays = fst_to_arrays(fst)
    assert arrays.ilabel.tolist() == [1] and arrays.olabel.tolist() == [2]
    assert fst.input_symbols is not None  # the caller's FST is left untouched


@pytest.mark.parametrize("on", ["input", "output"])
def test_remove_symbols_matches_arc_by_arc_reference(on):
    fst = _random_fst(np.random.default_rng(2))
    drop = {3, 5}
    got = remove_symbols(fst, drop, on=on)
    expected = []
    for item in _arcs_py(fst):
        if item[1] == "final":
            expected.append(item)
            continue
        s, i, o, w, d = item
        if on == "input" and i in drop:
            i = 0
        if on == "output" and o in drop:
            o = 0
        expected.append((s, i, o, w, d))
    assert _arcs_py(got) == expected
    assert count_labels(got, drop, on=on) == 0
    assert count_labels(fst, drop, on=on) > 0  # the input had some to remove


def test_remove_symbols_drops_stale_properties():
    # An epsilon-free FST, once relabelled, has epsilons: OpenFst must not keep a stale
    # "no epsilons" bit, which algorithms consult to skip work.
    fst = kaldifst.compile("0 1 3 3 0.5\n1 2 4 4 0.5\n2\n")
    k_epsilons, k_no_epsilons = 0x400000, 0x800000
    assert fst.properties(k_no_epsilons, True) & k_no_epsilons
    got = remove_symbols(remove_symbols(fst, [4], on="input"), [4], on="output")
    assert got.properties(k_epsilons | k_no_epsilons, True) & k_epsilons
    kaldifst.rmepsilon(got)
    assert sum(got.num_arcs(s) for s in range(got.num_states)) == 1


def test_stochasticity_of_known_fsts():
    stoch = kaldifst.compile(f"0 1 1 1 {-math.log(0.25)}\n0 2 2 2 {-math.log(0.75)}\n1 0\n2 0\n")
    assert is_stochastic(stoch)
    assert stochasticity(stoch) == pytest.approx((0.0, 0.0), abs=1e-5)
    leaky = kaldifst.compile(f"0 1 1 1 {-math.log(0.25)}\n1 0\n")
    lo, hi = stochasticity(leaky)
    assert lo == pytest.approx(math.log(0.25), abs=1e-5) and hi == pytest.approx(0.0, abs=1e-5)
    assert not is_stochastic(leaky)


def test_read_write_fst_round_trip_and_errors(tmp_path):
    fst = _random_fst(np.random.default_rng(3))
    path = write_fst(fst, tmp_path / "x.fst")
    assert _arcs_py(read_fst(path)) == _arcs_py(fst)
    assert [p.name for p in tmp_path.iterdir()] == ["x.fst"]  # no temporary left behind
    with pytest.raises(SenoneError, match="not found"):
        read_fst(tmp_path / "missing.fst")
    (tmp_path / "junk.fst").write_bytes(b"not an fst")
    with pytest.raises(SenoneError, match="junk.fst"):
        read_fst(tmp_path / "junk.fst")


def test_read_int_list(tmp_path):
    (tmp_path / "d.int").write_text("5\n6\n\n7\n")
    assert read_int_list(tmp_path / "d.int") == [5, 6, 7]
    (tmp_path / "bad.int").write_text("5\n#1\n")
    with pytest.raises(SenoneError, match="bad.int:2"):
        read_int_list(tmp_path / "bad.int")


# --------------------------------------------------------------------------------------------
# make_hclg
# --------------------------------------------------------------------------------------------


def test_make_hclg_writes_a_complete_graph_dir(toy, graph_dir):
    import json

    for name in ("HCLG.fst", "words.txt", "phones.txt", "disambig_tid.int", "graph.json"):
        assert (graph_dir / name).is_file(), name
    assert (graph_dir / "words.txt").read_text() == (toy.lang_dir / "words.txt").read_text()
    assert (graph_dir / "phones.txt").read_text() == (toy.lang_dir / "phones.txt").read_text()
    info = json.loads((graph_dir / "graph.json").read_text())
    hclg = read_fst(graph_dir / "HCLG.fst")
    summary = fst_summary(hclg)
    assert info["num_states"] == summary["num_states"] == hclg.num_states > 0
    assert info["num_arcs"] == summary["num_arcs"]
    assert info["context_width"] == 1 and info["central_position"] == 0
    assert info["build_seconds"] >= 0 and "compose H CLG" in info["step_seconds"]
    assert not list(graph_dir.glob(".*"))  # atomic writes left no temporaries


def test_hclg_has_only_real_transition_ids(toy, graph_dir):
    hclg = read_fst(graph_dir / "HCLG.fst")
    disambig_tids = read_int_list(graph_dir / "disambig_tid.int")
    num_tids = toy.trans_model.num_transition_ids
    # One disambiguation tid per disambiguation phone, numbered after the real transition-ids.
    assert len(disambig_tids) == 3 and min(disambig_tids) > num_tids
    assert count_labels(hclg, disambig_tids, on="input") == 0
    arrays = fst_to_arrays(hclg)
    assert arrays.ilabel.min() >= 0 and arrays.ilabel.max() <= num_tids
    # Every real transition-id is reachable (all phones in some word), and self-loops were added.
    used = set(arrays.ilabel.tolist()) - {0}
    assert used == set(range(1, num_tids + 1))
    words = set(arrays.olabel.tolist()) - {0}
    assert words == {toy.word_ids[w] for w in LEXICON}
    # Self-loops carry self_loop_scale × -log p(self-loop) (0.5 in the toy topology).
    tm = toy.trans_model
    loops = (arrays.nextstate == arrays.arc_state()) & (arrays.ilabel > 0)
    assert loops.any()
    assert all(tm.is_self_loop(int(t)) for t in arrays.ilabel[loops])
    np.testing.assert_allclose(arrays.weight[loops], 0.1 * math.log(2), rtol=1e-5)


def test_make_hclg_triphone(tmp_path):
    import json

    tri = build_toy_system(tmp_path, triphone=True)
    assert (tri.ctx_dep.context_width, tri.ctx_dep.central_position) == (3, 1)
    assert tri.trans_model.num_pdfs == 3 + 3 * 3 * 2  # SIL unsplit, a/b/c split on the right phone
    make_hclg(tri.lang_dir, tri.g_path, tri.ctx_dep, tri.trans_model, tmp_path / "graph")
    info = json.loads((tmp_path / "graph" / "graph.json").read_text())
    assert (info["context_width"], info["central_position"]) == (3, 1)
    hclg = read_fst(tmp_path / "graph" / "HCLG.fst")
    disambig_tids = read_int_list(tmp_path / "graph" / "disambig_tid.int")
    assert disambig_tids and count_labels(hclg, disambig_tids) == 0
    assert fst_to_arrays(hclg).ilabel.max() <= tri.trans_model.num_transition_ids


def test_hclga_is_stochastic_when_g_is(toy, tmp_path):
    # With a stochastic G (uniform unigram loop), LG and HCLGa must be stochastic (log-semiring
    # determinization), which catches wrong weights anywhere in the pipeline.
    import json

    W = toy.word_ids
    n = len(LEXICON) + 1
    lines = [f"0 0 {W[w]} {W[w]} {math.log(n):.6f}" for w in LEXICON] + [f"0 {math.log(n):.6f}"]
    g_path = tmp_path / "G_uniform.fst"
    kaldifst.compile("\n".join(lines) + "\n").write(str(g_path))
    make_hclg(toy.lang_dir, g_path, toy.ctx_dep, toy.trans_model, tmp_path / "graph", self_loop_scale=1.0)
    info = json.loads((tmp_path / "graph" / "graph.json").read_text())
    assert info["lg_stochasticity"] == pytest.approx([0.0, 0.0], abs=2e-3)
    assert info["hclga_stochasticity"] == pytest.approx([0.0, 0.0], abs=2e-3)
    # With self-loop scale 1 the final HCLG is stochastic too (Kaldi's add-self-loops renormalises).
    assert is_stochastic(read_fst(tmp_path / "graph" / "HCLG.fst"), delta=2e-3)


def test_make_hclg_warns_about_g_words_missing_from_l(toy, tmp_path, caplog):
    W = toy.word_ids
    # "</s>" is in words.txt but has no pronunciation: its path disappears in L ∘ G.
    g_path = tmp_path / "G_oov.fst"
    kaldifst.compile(f"0 0 {W['ab']} {W['ab']} 0.7\n0 0 {W['</s>']} {W['</s>']} 0.7\n0 0\n").write(str(g_path))
    with caplog.at_level("WARNING", logger="senone.graph.hclg"):
        make_hclg(toy.lang_dir, g_path, toy.ctx_dep, toy.trans_model, tmp_path / "graph")
    assert any("1 word(s) in G" in r.message and "</s>" in r.message for r in caplog.records)


def test_make_hclg_rejects_mismatched_inputs(toy, tmp_path):
    with pytest.raises(SenoneError, match="L_disambig.fst"):
        make_hclg(tmp_path / "nolang", toy.g_path, toy.ctx_dep, toy.trans_model, tmp_path / "g1")
    with pytest.raises(SenoneError, match="G_missing"):
        make_hclg(toy.lang_dir, tmp_path / "G_missing.fst", toy.ctx_dep, toy.trans_model, tmp_path / "g2")
    # A model over phones the lang does not have (ids 1..6 where the lang has 4 real phones).
    topo = khg.HmmTopology()
    topo.read(TOPO.replace("1 2 3 4\n", "1 2 3 4 5 6\n"))
    cd = khg.monophone_context_dependency([1, 2, 3, 4, 5, 6], topo.get_phone_to_num_pdf_classes())
    with pytest.raises(SenoneError, match="phones.txt"):
        make_hclg(toy.lang_dir, toy.g_path, cd, khg.TransitionModel(cd, topo), tmp_path / "g3")
    # A G whose words L never outputs gives an empty LG.
    g_path = tmp_path / "G_bad.fst"
    kaldifst.compile("0 1 99 99\n1\n").write(str(g_path))
    with pytest.raises(SenoneError, match="empty"):
        make_hclg(toy.lang_dir, g_path, toy.ctx_dep, toy.trans_model, tmp_path / "g4")
