"""Decision-tree clustering (tree statistics, questions, build-tree, Kaldi I/O, gmm-init-model, convert-ali).

A toy world with a known context effect: phones 1 (silence, Kaldi's 5-state topology), 2..6
(3 states). The middle state of phone 2 sounds different after phones 4/5 than after silence, so a
tree must ask about the left context there. Phones 3 and 6 never occur: 3 shares a root with 2
(like the tones of a final), 6 has a root of its own.
"""

from __future__ import annotations

import numpy as np
import pytest

import kaldi_hmm_gmm as khg

from senone import SenoneError
from senone.hmm.questions import Questions, cluster_phones, compile_questions, read_phone_sets, write_phone_sets
from senone.hmm.tree import (
    LeafStats,
    Root,
    build_tree,
    convert_alignments,
    init_model_from_tree,
    leaf_stats,
    read_roots,
    roots_from_sets,
    stub_map,
)
from senone.hmm.tree_io import (
    ConstantEventMap,
    ContextDependencyTree,
    SplitEventMap,
    TableEventMap,
    iter_questions,
    read_tree,
)
from senone.hmm.tree_stats import TransitionTables, TreeStats, accumulate_tree_stats, gauss_objf

TOPO = """<Topology>
<TopologyEntry>
<ForPhones>
2 3 4 5 6
</ForPhones>
<State> 0 <PdfClass> 0 <Transition> 0 0.75 <Transition> 1 0.25 </State>
<State> 1 <PdfClass> 1 <Transition> 1 0.75 <Transition> 2 0.25 </State>
<State> 2 <PdfClass> 2 <Transition> 2 0.75 <Transition> 3 0.25 </State>
<State> 3 </State>
</TopologyEntry>
<TopologyEntry>
<ForPhones>
1
</ForPhones>
<State> 0 <PdfClass> 0 <Transition> 0 0.25 <Transition> 1 0.25 <Transition> 2 0.25 <Transition> 3 0.25 </State>
<State> 1 <PdfClass> 1 <Transition> 1 0.25 <Transition> 2 0.25 <Transition> 3 0.25 <Transition> 4 0.25 </State>
<State> 2 <PdfClass> 2 <Transition> 1 0.25 <Transition> 2 0.25 <Transition> 3 0.25 <Transition> 4 0.25 </State>
<State> 3 <PdfClass> 3 <Transition> 1 0.25 <Transition> 2 0.25 <Transition> 3 0.25 <Transition> 4 0.25 </State>
<State> 4 <PdfClass> 4 <Transition> 4 0.75 <Transition> 5 0.25 </State>
<State> 5 </State>
</TopologyEntry>
</Topology>
"""
PHONE_SETS = [[1], [2, 3], [4], [5], [6]]
SIL = 1
DIM = 3


def topology() -> khg.HmmTopology:
    topo = khg.HmmTopology()
    topo.read(TOPO)
    return topo


def mono_model(topo: khg.HmmTopology) -> khg.TransitionModel:
    ctx = khg.monophone_context_dependency([1, 2, 3, 4, 5, 6], topo.get_phone_to_num_pdf_classes())
    return ctx, khg.TransitionModel(ctx, topo)


def _tid_lookup(trans_model: khg.TransitionModel, topo: khg.HmmTopology) -> dict[tuple[int, int, int], int]:
    """(phone, hmm_state, destination state) -> transition-id."""
    tables = TransitionTables.from_model(trans_model)
    out = {}
    for t in range(1, tables.num_transition_ids + 1):
        ph, st, k = int(tables.phone[t]), int(tables.hmm_state[t]), int(tables.trans_index[t])
        dest = topo.topology_for_phone(ph)[st].transitions[k][0]
        out[ph, st, dest] = t
    return out


def make_corpus(num_utts: int, seed: int = 0):
    """Reordered transition-id alignments, features, and per frame the true (left, phone, right, pdf-class)."""
    topo = topology()
    _ctx, tm = mono_model(topo)
    tid = _tid_lookup(tm, topo)
    rng = np.random.default_rng(seed)
    base = rng.normal(scale=5.0, size=(7, 5, DIM))
    alis, feats, truth = {}, {}, {}
    for u in range(num_utts):
        phones = [SIL] + rng.choice([2, 4, 5], size=rng.integers(2, 7)).tolist() + [SIL]
        a, x, ev = [], [], []
        for k, ph in enumerate(phones):
            left = phones[k - 1] if k > 0 else 0
            right = phones[k + 1] if k + 1 < len(phones) else 0
            nstates = 5 if ph == SIL else 3
            for s in range(nstates):
                dur = int(rng.integers(1, 5))
                a += [tid[ph, s, s + 1]] + [tid[ph, s, s]] * (dur - 1)   # reordered: forward first
                mean = base[ph, s].copy()
                if ph == 2 and s == 1:
                    mean[0] += 4.0 if left in (4, 5) else -4.0
                x.append(mean + rng.normal(size=(dur, DIM)))
                ctx = (-1, ph, -1) if ph == SIL else (left, ph, right)
                ev += [(*ctx, s)] * dur
        utt = f"u{u:03d}"
        alis[utt] = np.asarray(a, dtype=np.int32)
        feats[utt] = np.concatenate(x).astype(np.float32)
        truth[utt] = ev
    return alis, feats, truth


@pytest.fixture(scope="module")
def world():
    topo = topology()
    ctx, tm = mono_model(topo)
    alis, feats, truth = make_corpus(120)
    stats = accumulate_tree_stats(tm, alis, feats, ci_phones=[SIL])
    auto = cluster_phones(stats, PHONE_SETS)
    questions = compile_questions(topo, {"cluster-phones": auto, "extra": [[2, 3], [4, 5]]})
    result = build_tree(stats, questions, roots_from_sets(PHONE_SETS), topo, max_leaves=40, min_count=20)
    return dict(topo=topo, mono_ctx=ctx, mono_tm=tm, alis=alis, feats=feats, truth=truth, stats=stats,
                questions=questions, result=result)


# --------------------------------------------------------------------------------------------
# Tree statistics
# --------------------------------------------------------------------------------------------

def test_tree_stats_match_per_frame_reference(world):
    """The vectorised accumulation equals a frame-by-frame sum keyed by the true events."""
    ref: dict[tuple, list] = {}
    for utt, ev in world["truth"].items():
        for e, x in zip(ev, world["feats"][utt].astype(np.float64)):
            acc = ref.setdefault(e, [0.0, np.zeros(DIM), np.zeros(DIM)])
            acc[0] += 1
            acc[1] += x
            acc[2] += x * x
    stats = world["stats"]
    assert stats.num_events == len(ref)
    assert stats.num_utts == 120 and stats.num_skipped == 0
    for row, n, s1, s2 in zip(stats.events.tolist(), stats.count, stats.sum, stats.sumsq):
        r = ref[tuple(row)]
        assert n == r[0]
        np.testing.assert_allclose(s1, r[1], rtol=1e-9, atol=1e-6)
        np.testing.assert_allclose(s2, r[2], rtol=1e-9, atol=1e-6)
    # silence is context-independent: its events carry no context keys
    sil = stats.key_column(1) == SIL
    assert (stats.key_column(0)[sil] == -1).all() and (stats.key_column(2)[sil] == -1).all()


def test_tree_stats_shards_merge_and_save(world, tmp_path):
    alis, feats, tm = world["alis"], world["feats"], world["mono_tm"]
    utts = sorted(alis)
    a = accumulate_tree_stats(tm, {u: alis[u] for u in utts[:50]}, feats, ci_phones=[SIL], batch_frames=300)
    b = accumulate_tree_stats(tm, {u: alis[u] for u in utts[50:]}, feats, ci_phones=[SIL])
    merged = a.add(b)
    whole = world["stats"]
    np.testing.assert_array_equal(merged.events, whole.events)
    np.testing.assert_allclose(merged.sum, whole.sum)
    np.testing.assert_allclose(merged.count, whole.count)
    assert merged.num_utts == 120
    merged.save(tmp_path / "treeacc.npz")
    back = TreeStats.load(tmp_path / "treeacc.npz")
    np.testing.assert_array_equal(back.events, whole.events)
    np.testing.assert_allclose(back.sumsq, whole.sumsq)
    forked = accumulate_tree_stats(tm, alis, feats, ci_phones=[SIL], num_jobs=2)
    np.testing.assert_allclose(forked.sum, whole.sum)


def test_tree_stats_skip_mismatched_utterance(world):
    alis = dict(world["alis"])
    feats = dict(world["feats"])
    feats["u000"] = feats["u000"][:-1]
    stats = accumulate_tree_stats(world["mono_tm"], alis, feats, ci_phones=[SIL])
    assert stats.num_skipped == 1
    assert stats.num_frames == world["stats"].num_frames - len(alis["u000"])


# --------------------------------------------------------------------------------------------
# Questions
# --------------------------------------------------------------------------------------------

def _synthetic_stats(means: dict[tuple[int, int, int], np.ndarray], n: int, seed: int = 0) -> TreeStats:
    """Stats for events (left, centre, right) with pdf-class 0, n frames each, drawn around ``means``."""
    rng = np.random.default_rng(seed)
    events, cnt, s1, s2 = [], [], [], []
    for (l, c, r), mu in sorted(means.items()):
        x = mu + rng.normal(size=(n, len(mu)))
        events.append((l, c, r, 0))
        cnt.append(n)
        s1.append(x.sum(0))
        s2.append((x * x).sum(0))
    return TreeStats(3, 1, np.asarray(events, dtype=np.int32), np.asarray(cnt, dtype=np.float64),
                     np.asarray(s1), np.asarray(s2))


def test_cluster_phones_separates_distinct_groups():
    # central phones 2,3 (one set), 4 sound alike; 5 and 6 alike and far from them; 1 far from all
    means = {}
    for c, mu in {1: [-9.0, 9.0], 2: [0.0, 0.0], 3: [0.3, 0.0], 4: [0.0, 0.4], 5: [9.0, 9.0], 6: [9.0, 9.5]}.items():
        for l in (1, 2):
            means[(l, c, 1)] = np.asarray(mu)
    stats = _synthetic_stats(means, 200)
    stats.events[:, 3] = 1   # cluster-phones looks at pdf-class 1 by default
    q = cluster_phones(stats, [[1], [2, 3], [4], [5], [6]])
    assert [2, 3, 4] in q and [5, 6] in q
    assert [2, 3] in q and [1] in q          # every original set is a question
    assert [2] not in q                       # sets are never split
    assert q == sorted(q) and all(s == sorted(s) for s in q)
    assert cluster_phones(stats, [[1], [2, 3], [4], [5], [6]]) == q   # deterministic


def test_compile_questions_rejects_unknown_phone():
    topo = topology()
    with pytest.raises(SenoneError, match=r"extra_questions\.int.*question 2.*phone 9"):
        compile_questions(topo, {"auto": [[2, 3]], "lang/phones/extra_questions.int": [[4, 5], [1, 9]]})
    q = compile_questions(topo, {"a": [[3, 2], [4]], "b": [[2, 3]]})
    assert q.phone_questions == ((2, 3), (4,))          # sorted, duplicates removed
    assert q.pdf_class_questions == ((0,), (0, 1), (0, 1, 2), (0, 1, 2, 3))   # silence has 5 pdf-classes
    assert q.keys == [-1, 0, 1, 2]


def test_phone_sets_files(tmp_path):
    write_phone_sets(tmp_path / "q.int", [[1, 2], [3]])
    assert read_phone_sets(tmp_path / "q.int") == [[1, 2], [3]]
    (tmp_path / "roots.int").write_text("shared split 1\nnot-shared not-split 2 3\n")
    assert read_roots(tmp_path / "roots.int") == [Root((1,)), Root((2, 3), shared=False, split=False)]
    (tmp_path / "bad.int").write_text("shared 1 2\n")
    with pytest.raises(SenoneError, match="bad.int:1"):
        read_roots(tmp_path / "bad.int")


# --------------------------------------------------------------------------------------------
# build-tree
# --------------------------------------------------------------------------------------------

def _context_world():
    """Central phone 2: left phones {1,2} vs {3,4,5} differ by 6 in mean; the right phone barely matters."""
    means = {}
    for l in (1, 2, 3, 4, 5):
        for r in (1, 2, 3, 4, 5):
            means[(l, 2, r)] = np.asarray([3.0 if l <= 2 else -3.0, 0.1 * r, 0.0])
    stats = _synthetic_stats(means, 60, seed=1)
    questions = Questions(phone_questions=((1, 2), (1, 3), (1, 2, 3), (2, 4), (3, 4, 5), (1, 5)),
                          pdf_class_questions=((0,), (0, 1)))
    topo = topology()
    roots = [Root((1,)), Root((2, 3)), Root((4,)), Root((5,)), Root((6,))]
    return stats, questions, topo, roots


def test_first_split_separates_the_known_groups():
    stats, questions, topo, roots = _context_world()
    res = build_tree(stats, questions, roots, topo, max_leaves=len(roots) + 1, min_count=0)
    assert res.num_splits == 1
    splits = [(k, ys) for k, ys in iter_questions(res.tree.to_pdf) if k != 1]
    assert splits == [(0, (1, 2))] or splits == [(0, (3, 4, 5))]
    # the gain is the likelihood difference of the two Gaussians versus one
    assert res.objf_split - res.objf_stub == pytest.approx(res.smallest_split, rel=1e-9)
    assert res.objf_final >= res.objf_stub
    for l, expect_same in ((2, True), (3, False)):
        same = res.tree.compute([l, 2, 1], 0) == res.tree.compute([1, 2, 1], 0)
        assert same is expect_same


def test_max_leaves_and_min_count_respected():
    stats, questions, topo, roots = _context_world()
    res = build_tree(stats, questions, roots, topo, max_leaves=8, thresh=1e-3, cluster_thresh=0, min_count=0)
    assert res.leaves_after_split == 8 and res.num_leaves == 8
    merged = build_tree(stats, questions, roots, topo, max_leaves=8, thresh=1e-3, min_count=0)
    assert merged.num_leaves <= 8 and merged.num_merged == 8 - merged.num_leaves
    big = build_tree(stats, questions, roots, topo, max_leaves=100, thresh=1e-3, cluster_thresh=0, min_count=250)
    seen = big.leaf_stats.count[big.leaf_stats.count > 0]
    assert seen.min() >= 250
    assert big.num_splits >= 1
    small = build_tree(stats, questions, roots, topo, max_leaves=100, thresh=1e-3, cluster_thresh=0, min_count=0)
    assert small.num_leaves > big.num_leaves   # the floor blocked splits


def test_tree_covers_every_phone_and_unseen_phones(world):
    res, topo = world["result"], world["topo"]
    tree = res.tree
    n2 = topo.get_phone_to_num_pdf_classes()
    for c in range(1, 7):
        for l in range(7):
            for r in range(7):
                for pc in range(n2[c]):
                    assert tree.compute([l, c, r], pc) is not None
    # phone 3 (unseen) shares root [2, 3]: it gets pdfs of that root's subtree, which have data
    pdfs3 = {tree.compute([4, 3, 4], pc) for pc in range(3)}
    assert all(res.leaf_stats.count[p] > 0 for p in pdfs3)
    # phone 6 (unseen, own root) has one leaf without statistics
    pdfs6 = {tree.compute([4, 6, 4], pc) for pc in range(3)}
    assert len(pdfs6) == 1 and res.unseen_leaves == sorted(pdfs6)
    # the tree asks about the left context of phone 2's middle state, as the data demand
    assert tree.compute([4, 2, 5], 1) == tree.compute([5, 2, 2], 1) != tree.compute([1, 2, 5], 1)
    # roots must cover the topology
    with pytest.raises(SenoneError, match=r"phones \[6\] of the HMM topology are in no tree root"):
        build_tree(world["stats"], world["questions"], roots_from_sets(PHONE_SETS[:-1]), topo, max_leaves=10)


def test_silence_not_split_keeps_one_pdf_per_state(world):
    res = build_tree(world["stats"], world["questions"], roots_from_sets(PHONE_SETS, not_split=[SIL]), world["topo"],
                     max_leaves=40, min_count=20)
    sil = [res.tree.compute([2, SIL, 4], pc) for pc in range(5)]
    assert len(set(sil)) == 5
    assert {res.tree.compute([5, SIL, 0], pc) for pc in range(5)} == set(sil)


# --------------------------------------------------------------------------------------------
# Kaldi I/O
# --------------------------------------------------------------------------------------------

def test_tree_loads_into_kaldi_and_round_trips(world, tmp_path):
    tree: ContextDependencyTree = world["result"].tree
    topo = world["topo"]
    ctx = tree.to_kaldi()
    assert (ctx.context_width, ctx.central_position, ctx.num_pdfs) == (3, 1, tree.num_pdfs)
    for c in range(1, 7):
        for l in range(7):
            for r in range(7):
                for pc in range(topo.num_pdf_classes(c)):
                    assert ctx.compute([l, c, r], pc) == (True, tree.compute([l, c, r], pc))
    phones, n2 = list(topo.phones), topo.get_phone_to_num_pdf_classes()
    assert tree.pdf_info(phones, n2) == [sorted(x) for x in ctx.get_pdf_info(phones, n2)]
    # Kaldi's own writer gives our bytes, binary and text; our reader reads both back
    ctx.write(True, str(tmp_path / "tree"))
    assert (tmp_path / "tree").read_bytes() == b"\0B" + tree.to_bytes(binary=True)
    ctx.write(False, str(tmp_path / "tree.txt"))
    assert (tmp_path / "tree.txt").read_bytes() == tree.to_bytes(binary=False)
    assert read_tree(tmp_path / "tree") == tree and read_tree(tmp_path / "tree.txt") == tree
    tree.write(tmp_path / "mine")
    assert (tmp_path / "mine").read_bytes() == (tmp_path / "tree").read_bytes()
    assert ContextDependencyTree.from_kaldi(ctx) == tree
    (tmp_path / "junk").write_bytes(b"\0BContextDependency \x04")
    with pytest.raises(SenoneError, match="junk"):
        read_tree(tmp_path / "junk")


def test_handmade_event_maps_round_trip():
    """Every event-map kind, NULL table entries included, through Kaldi's reader and writer."""
    to_pdf = TableEventMap(1, (None, ConstantEventMap(0),
                               SplitEventMap(0, (1, 3), TableEventMap(-1, (ConstantEventMap(1), ConstantEventMap(2))),
                                             ConstantEventMap(3))))
    tree = ContextDependencyTree(3, 1, to_pdf)
    ctx = tree.to_kaldi()
    assert ctx.num_pdfs == 4
    assert ctx.compute([3, 2, 0], 1) == (True, 2) and ctx.compute([2, 2, 0], 0) == (True, 3)
    assert ContextDependencyTree.from_kaldi(ctx) == tree
    assert tree.compute([3, 2, 0], 1) == 2 and tree.compute([0, 0, 0], 0) is None


def test_stub_map_is_kaldis():
    stub, n = stub_map([Root((1,)), Root((2, 3)), Root((4,), shared=False, split=False)], [0, 5, 3, 3, 3], 1)
    assert n == 1 + 1 + 3
    assert stub == SplitEventMap(1, (1,), ConstantEventMap(0),
                                 SplitEventMap(1, (2, 3), ConstantEventMap(1),
                                               TableEventMap(-1, tuple(ConstantEventMap(i) for i in (2, 3, 4)))))


# --------------------------------------------------------------------------------------------
# gmm-init-model and convert-ali
# --------------------------------------------------------------------------------------------

def test_init_model_from_tree(world, caplog):
    res, topo = world["result"], world["topo"]
    with caplog.at_level("WARNING", logger="senone.hmm.tree"):
        tm, am = init_model_from_tree(res.tree, res.leaf_stats, topo)
    # a phone never seen in training is named, with what was done about it
    assert any(f"pdf-id {res.unseen_leaves[0]} has no statistics (phones [6])" in r.getMessage()
               for r in caplog.records)
    assert tm.num_pdfs == am.num_pdfs == res.num_leaves
    ls = res.leaf_stats
    p = int(np.argmax(ls.count))
    mean = ls.sum[p] / ls.count[p]
    np.testing.assert_allclose(np.asarray(am.get_pdf(p).means)[0], mean, rtol=1e-5, atol=1e-5)
    var = np.maximum(ls.sumsq[p] / ls.count[p] - mean ** 2, 0.01)
    np.testing.assert_allclose(np.asarray(am.get_pdf(p).vars)[0], var, rtol=1e-4)
    # the unseen leaf gets the global Gaussian
    u = res.unseen_leaves[0]
    g_mean = ls.sum.sum(0) / ls.count.sum()
    np.testing.assert_allclose(np.asarray(am.get_pdf(u).means)[0], g_mean, rtol=1e-5, atol=1e-5)
    with pytest.raises(SenoneError, match="leaf statistics for 2 pdfs"):
        init_model_from_tree(res.tree, LeafStats(ls.count[:2], ls.sum[:2], ls.sumsq[:2], 0.01), topo)


def test_convert_alignments_keeps_phones_and_states(world):
    res, topo = world["result"], world["topo"]
    tm, _am = init_model_from_tree(res.tree, res.leaf_stats, topo)
    ctx = res.tree.to_kaldi()
    alis = world["alis"]
    new = convert_alignments(world["mono_tm"], tm, ctx, alis)
    assert set(new) == set(alis)
    old_t, new_t = TransitionTables.from_model(world["mono_tm"]), TransitionTables.from_model(tm)
    counts = np.zeros(tm.num_pdfs)
    for utt, a in alis.items():
        b = new[utt]
        assert len(b) == len(a)
        np.testing.assert_array_equal(old_t.phone[a], new_t.phone[b])
        np.testing.assert_array_equal(old_t.hmm_state[a], new_t.hmm_state[b])
        np.testing.assert_array_equal(old_t.trans_index[a], new_t.trans_index[b])
        # each frame's new pdf is what Kaldi's tree says for its phone in context
        for (l, c, r, pc), t in zip(world["truth"][utt], b):
            window = [c, c, c] if c == SIL else [l, c, r]   # silence's tree ignores context
            assert ctx.compute(window, pc) == (True, tm.transition_id_to_pdf(int(t)))
        counts += np.bincount(new_t.pdf[b], minlength=tm.num_pdfs)
    # tree statistics and converted alignments agree on every leaf's frame count
    np.testing.assert_array_equal(counts, res.leaf_stats.count)
    # converting back to the monophone model gives the original alignments
    back = convert_alignments(tm, world["mono_tm"], world["mono_ctx"], new)
    assert all(np.array_equal(back[u], alis[u]) for u in alis)
    # the other self-loop order, and back
    plain = convert_alignments(world["mono_tm"], tm, res.tree, alis, reorder=False)
    assert any(not np.array_equal(plain[u], new[u]) for u in alis)
    u = next(iter(alis))
    assert sorted(plain[u].tolist()) == sorted(new[u].tolist())   # same transitions, other order
    again = convert_alignments(tm, tm, res.tree, plain, reorder=True)
    assert all(np.array_equal(again[u], new[u]) for u in alis)


def test_leaf_stats_and_objective(world):
    res, stats = world["result"], world["stats"]
    ls = leaf_stats(res.tree, stats)
    np.testing.assert_allclose(ls.count, res.leaf_stats.count)
    assert ls.count.sum() == stats.num_frames
    assert res.objf_final == pytest.approx(ls.objf())
    # one Gaussian per leaf fits better than one per root
    assert res.like_gain_per_frame > 0.5
    assert float(gauss_objf(np.array([0.0]), np.zeros((1, 2)), np.zeros((1, 2)), 0.01)[0]) == 0.0
