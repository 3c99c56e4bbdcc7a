"""Streaming features (gmm.max_feature_memory_gb): the same models as in memory, bounded memory."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
from lhotse import MonoCut, SupervisionSegment
from lhotse.features import Features

from senone import SenoneError
from senone.feats.cmvn import compute_cmvn_stats
from senone.feats.source import CutFeatures, FeatureMemory, MappedFeatures, num_frames, through
from senone.feats.transform import StageFeatures
from senone.gmm.lda_mllt import LdaMlltConfig, train_lda_mllt
from senone.gmm.mono import MonoConfig, train_mono
from senone.gmm.passes import accumulate
from senone.gmm.sat import SatConfig, estimate_transforms, train_sat
from tests import toy_hmm
from tests.test_lda_mllt import correlated_corpus, toy_lang


def stored_cuts(feats: dict[str, np.ndarray], storage, speakers: int = 3) -> list[MonoCut]:
    """Lhotse cuts whose (static) features live in a Kaldi feats.ark/feats.scp as the feats stage
    writes them (one open reader per process: forked workers must not share it), speakers
    assigned round robin."""
    from senone.feats.extract import KaldiTwoByteWriter

    cuts = []
    with KaldiTwoByteWriter(storage) as writer:
        for i, (utt, x) in enumerate(sorted(feats.items())):
            key = writer.write(utt, x)
            dur = round(len(x) * 0.01, 8)
            manifest = Features(type="toy", num_frames=len(x), num_features=x.shape[1], frame_shift=0.01,
                                sampling_rate=16000, start=0.0, duration=dur, storage_type=writer.name,
                                storage_path=str(writer.storage_path), storage_key=key)
            sup = SupervisionSegment(id=utt, recording_id=utt, start=0.0, duration=dur, speaker=f"spk{i % speakers}")
            cuts.append(MonoCut(id=utt, start=0.0, duration=dur, channel=0, supervisions=[sup], features=manifest))
    return cuts


def deltas_of(static, memory: FeatureMemory):
    pipeline = StageFeatures(kind="deltas")
    return through(static, lambda _u, x: pipeline.apply(x), memory)


def train_all(root, transcripts, static_lazy: CutFeatures, memory: FeatureMemory):
    """mono → LDA+MLLT → SAT on the toy corpus, features held or streamed as ``memory`` says."""
    mono = train_mono(toy_hmm.topology(), toy_hmm.lexicon_fst(), [], transcripts, deltas_of(static_lazy, memory),
                      toy_hmm.DIM * 3, root / "mono",
                      MonoConfig(num_iters=4, max_iter_inc=3, tot_gauss=30, realign_iters=(1, 2, 3), init_subset=40,
                                 num_jobs=2), streaming=not memory.in_memory)
    lang = toy_lang(root / "lang")
    common = dict(num_leaves=14, min_leaf_count=20.0, num_iters=6, max_iter_inc=4, realign_iters=(3, 5), num_jobs=2)
    lda = train_lda_mllt(lang, toy_hmm.lexicon_fst(), transcripts, memory.hold(static_lazy), mono.model,
                         mono.alignments, root / "tri2",
                         LdaMlltConfig(**common, lda_dim=5, splice=3, tot_gauss=50, mllt_iters=(2, 4), mllt_sweeps=20),
                         memory=memory)
    base = through(static_lazy, lambda _u, x: lda.pipeline.apply(x), memory)
    utt2spk = {u: static_lazy.speaker(static_lazy.cut(u)) for u in static_lazy}
    sat, transforms = train_sat(lang, toy_hmm.lexicon_fst(), transcripts, base, utt2spk, lda.model, lda.alignments,
                                root / "tri3", SatConfig(**common, tot_gauss=50, fmllr_iters=(2, 4),
                                                         fmllr_min_count=100.0), memory)
    return mono, lda, sat, transforms


def test_streaming_gives_the_models_of_the_in_memory_run(tmp_path):
    transcripts, static = correlated_corpus(40, seed=4)
    cuts = stored_cuts(static, tmp_path / "storage")
    lazy = CutFeatures(cuts, compute_cmvn_stats(cuts))
    assert isinstance(deltas_of(lazy, FeatureMemory(False)), MappedFeatures)
    assert isinstance(deltas_of(lazy, FeatureMemory(True)), dict)
    held = train_all(tmp_path / "mem", transcripts, lazy, FeatureMemory(in_memory=True))
    streamed = train_all(tmp_path / "stream", transcripts, lazy, FeatureMemory(in_memory=False))
    for stage in ("mono", "tri2", "tri3"):
        assert (tmp_path / "mem" / stage / "final.mdl").read_text() == \
            (tmp_path / "stream" / stage / "final.mdl").read_text(), stage
    for a, b in zip(held[:3], streamed[:3]):
        assert a.alignments.keys() == b.alignments.keys()
        for utt in a.alignments:
            np.testing.assert_array_equal(a.alignments[utt], b.alignments[utt])
    assert held[3].keys() == streamed[3].keys()
    for spk in held[3]:
        np.testing.assert_array_equal(held[3][spk], streamed[3][spk])


def test_memory_budget_decides_per_stage(tmp_path):
    transcripts, static = correlated_corpus(6, seed=2)
    lazy = CutFeatures(stored_cuts(static, tmp_path / "s"), compute_cmvn_stats(stored_cuts(static, tmp_path / "t")))
    frames = sum(len(x) for x in static.values())
    assert lazy.total_frames() == frames and lazy.static_dim == toy_hmm.DIM
    assert all(num_frames(lazy, u) == len(static[u]) for u in static)
    exact_gb = frames * 12 * 4 / 2**30
    assert FeatureMemory.for_stage(lazy, 12, exact_gb).in_memory
    assert not FeatureMemory.for_stage(lazy, 12, exact_gb * 0.99).in_memory
    assert not FeatureMemory.for_stage(lazy, 12, 0.0).in_memory
    assert FeatureMemory.for_stage(lazy, 12, None).in_memory  # default budget: a toy corpus fits
    with pytest.raises(SenoneError, match="max_feature_memory_gb"):
        FeatureMemory.for_stage(lazy, 12, -1.0)
    # the lazy source reads what was stored, CMVN applied per speaker, and is re-iterable
    first = {u: x.copy() for u, x in lazy.items()}
    assert list(lazy.keys()) == sorted(static) and list(first) == list(lazy.keys())
    for u, x in lazy.items():
        np.testing.assert_array_equal(x, first[u])


def streamed_peak(model, tmp_path, num_utts: int) -> tuple[int, int, int]:
    """Peak traced bytes of GMM accumulation + fMLLR statistics over ``num_utts`` stored utterances
    streamed from storage, the peak of holding their features instead, and their size."""
    rng = np.random.default_rng(num_utts)
    big = {f"u{i:04d}": rng.normal(size=(1000, toy_hmm.DIM)).astype(np.float32) for i in range(num_utts)}
    cuts = stored_cuts(big, tmp_path / f"big{num_utts}", speakers=4)
    lazy = CutFeatures(cuts, compute_cmvn_stats(cuts))
    feats = deltas_of(lazy, FeatureMemory(in_memory=False))
    tids = np.arange(1, model.trans_model.num_transition_ids + 1, dtype=np.int32)
    alignments = {u: rng.choice(tids, size=1000).astype(np.int32) for u in big}
    utt2spk = {u: lazy.speaker(lazy.cut(u)) for u in big}
    tracemalloc.start()
    try:
        stats = accumulate(model, feats, alignments, batch_frames=5_000)
        estimate_transforms(model, feats, alignments, utt2spk, {1}, min_count=10.0, num_iters=1, batch_frames=5_000)
        _, streamed = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        held = FeatureMemory(in_memory=True).hold(feats)
        _, held_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert stats.num_frames == num_utts * 1000 and len(held) == num_utts
    return streamed, held_peak, num_utts * 1000 * toy_hmm.DIM * 3 * 4


def test_streamed_statistics_keep_peak_memory_bounded(tmp_path):
    """Three times the corpus: holding the features costs three times as much, streaming them does not."""
    transcripts, small = correlated_corpus(30, seed=5)
    mono = train_mono(toy_hmm.topology(), toy_hmm.lexicon_fst(), [], transcripts,
                      deltas_of(small, FeatureMemory(True)), toy_hmm.DIM * 3, tmp_path / "mono",
                      MonoConfig(num_iters=2, max_iter_inc=1, tot_gauss=20, realign_iters=(1,), init_subset=30))
    small_peak, small_held, small_size = streamed_peak(mono.model, tmp_path, 40)
    big_peak, big_held, big_size = streamed_peak(mono.model, tmp_path, 120)
    assert small_held > small_size and big_held > big_size > 2.9 * small_size
    assert big_peak < 1.25 * small_peak, (small_peak, big_peak)
    assert big_peak < 0.5 * big_size, (big_peak, big_size)


def _read_shard(utts: list[str]) -> list[str]:
    from senone.parallel import shared

    s = shared()
    bad = []
    for _ in range(3):
        for u in utts:
            try:
                if not np.array_equal(s["feats"][u], s["expected"][u]):
                    bad.append(u)
            except Exception:  # a read that lands mid-object fails in Kaldi's reader
                bad.append(u)
    return bad


def test_forked_workers_read_storage_through_their_own_handles(tmp_path):
    """The parent's open feats.ark reader shares its file offset with forked children; reading
    through it from several processes at once returns other utterances' bytes."""
    from senone.parallel import map_shards

    rng = np.random.default_rng(1)
    static = {f"u{i:03d}": rng.normal(size=(240, 16)).astype(np.float32) for i in range(400)}
    cuts = stored_cuts(static, tmp_path / "s")
    lazy = CutFeatures(cuts, compute_cmvn_stats(cuts))
    expected = {u: lazy[u] for u in lazy}  # the parent has its reader open now
    bad = map_shards(_read_shard, sorted(static), 2, feats=lazy, expected=expected)
    assert bad == [[], []]
