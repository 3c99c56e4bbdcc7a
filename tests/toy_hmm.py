"""A tiny synthetic HMM world shared by the GMM and graph tests.

Three phones (SIL=1, a=2, b=3), words A→a, B→b, AB→a b, a Kaldi 3-state topology, and features
drawn from one well-separated Gaussian per (phone, state), so a correct trainer must recover the
state means and align almost perfectly.
"""

from __future__ import annotations

import kaldi_hmm_gmm as khg
import kaldifst
import numpy as np

TOPO = """<Topology>
<TopologyEntry>
<ForPhones>
1 2 3
</ForPhones>
<State> 0 <PdfClass> 0 <Transition> 0 0.75 <Transition> 1 0.25 </State>
<State> 1 <PdfClass> 1 <Transition> 1 0.75 <Transition> 2 0.25 </State>
<State> 2 <PdfClass> 2 <Transition> 2 0.75 <Transition> 3 0.25 </State>
<State> 3 </State>
</TopologyEntry>
</Topology>
"""
WORDS = {"<eps>": 0, "A": 1, "B": 2, "AB": 3}
PRONS = {1: [2], 2: [3], 3: [2, 3]}
DIM = 4


def topology() -> khg.HmmTopology:
    topo = khg.HmmTopology()
    topo.read(TOPO)
    return topo


def lexicon_fst() -> kaldifst.StdVectorFst:
    """A Kaldi-shaped L: optional silence (phone 1) at the start and once after each word.

    State 0 is the start, 1 the loop state (final), 2 the state after a word that must go through
    one silence phone to return to the loop; words leave the loop state.
    """
    half = 0.6931472  # -log(0.5): silence or not, as Kaldi's sil_prob=0.5
    lines = [f"0 1 1 0 {half}", f"0 1 0 0 {half}"]
    nxt = 3
    for word, prons in PRONS.items():
        prev = 1
        for i, ph in enumerate(prons):
            olabel = word if i == 0 else 0
            if i == len(prons) - 1:
                lines.append(f"{prev} 1 {ph} {olabel} {half}")
                lines.append(f"{prev} 2 {ph} {olabel} {half}")
            else:
                lines.append(f"{prev} {nxt} {ph} {olabel}")
                prev = nxt
                nxt += 1
    lines.append("2 1 1 0")
    lines.append("1")
    return kaldifst.compile("\n".join(lines) + "\n")


def state_means(seed: int = 0) -> np.ndarray:
    """Well separated means for the 9 (phone, state) pairs: index (phone-1)*3 + state."""
    rng = np.random.default_rng(seed)
    return rng.normal(scale=6.0, size=(9, DIM))


def make_corpus(num_utts: int, seed: int = 0) -> tuple[dict[str, list[int]], dict[str, np.ndarray], dict[str, list[int]]]:
    """Transcripts (word ids), features, and the true (phone, state) index per frame."""
    rng = np.random.default_rng(seed)
    means = state_means()
    transcripts, feats, truth = {}, {}, {}
    for u in range(num_utts):
        words = rng.integers(1, 4, size=rng.integers(1, 4)).tolist()
        phones = [1] if rng.random() < 0.5 else []
        for w in words:
            phones += PRONS[w]
            if rng.random() < 0.5:
                phones.append(1)
        labels = []
        for ph in phones:
            for s in range(3):
                labels += [(ph - 1) * 3 + s] * int(rng.integers(3, 6))
        x = means[labels] + rng.normal(size=(len(labels), DIM))
        utt = f"utt{u:03d}"
        transcripts[utt], feats[utt], truth[utt] = words, x.astype(np.float32), labels
    return transcripts, feats, truth
