"""Vectorised Viterbi E-step for diagonal GMMs, feeding Kaldi's own M-step.

Kaldi's ``gmm-acc-stats-ali`` walks the frames one by one; from Python a per-frame call into
kaldi-hmm-gmm costs microseconds, so instead the frames of a batch are grouped by the pdf-id of
their alignment and each pdf's Gaussian posteriors are computed as one matrix product. The
resulting sufficient statistics (occupancy, Σγx, Σγx²) are handed to Kaldi's accumulator through
two pseudo-frames per Gaussian (mean ± standard deviation, half the occupancy each), which reproduce
exactly those statistics; Kaldi's ``MleAmDiagGmmUpdate`` then applies its own floors and
low-count removal, so the update is Kaldi's, not a re-implementation.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import kaldi_hmm_gmm as khg
import numpy as np


@dataclass
class GmmParams:
    """The parameters of one pdf's GMM in the form the log-likelihood needs (G × D)."""

    gconsts: np.ndarray
    means_invvars: np.ndarray
    inv_vars: np.ndarray

    @classmethod
    def from_am(cls, am: khg.AmDiagGmm) -> list["GmmParams"]:
        out = []
        for p in range(am.num_pdfs):
            g = am.get_pdf(p)
            out.append(cls(np.asarray(g.gconsts, dtype=np.float64),
                           np.asarray(g.means_invvars, dtype=np.float64),
                           np.asarray(g.inv_vars, dtype=np.float64)))
        return out

    def component_loglikes(self, x: np.ndarray, x2: np.ndarray | None = None) -> np.ndarray:
        """Per-component log-likelihoods (weights included, as Kaldi's gconsts hold them): N × G."""
        if x2 is None:
            x2 = x * x
        return self.gconsts + x @ self.means_invvars.T - 0.5 * (x2 @ self.inv_vars.T)


@dataclass
class GaussStats:
    """Per-pdf, per-Gaussian zeroth/first/second-order statistics plus transition counts."""

    occ: list[np.ndarray]
    x: list[np.ndarray]
    x2: list[np.ndarray]
    trans_counts: np.ndarray
    tot_loglike: float = 0.0
    num_frames: int = 0
    num_utts: int = 0
    _params: list[GmmParams] = field(default_factory=list, repr=False)

    @classmethod
    def zeros(cls, am: khg.AmDiagGmm, num_transition_ids: int) -> "GaussStats":
        params = GmmParams.from_am(am)
        dim = am.dim
        return cls(
            occ=[np.zeros(len(p.gconsts)) for p in params],
            x=[np.zeros((len(p.gconsts), dim)) for p in params],
            x2=[np.zeros((len(p.gconsts), dim)) for p in params],
            trans_counts=np.zeros(num_transition_ids + 1),
            _params=params,
        )

    def accumulate(self, feats: np.ndarray, pdf_ids: np.ndarray, transition_ids: np.ndarray | None = None) -> float:
        """Add the statistics of frames ``feats`` (N × D) aligned to ``pdf_ids`` (N).

        Several utterances can be concatenated into one call: the work is one matrix product per
        pdf present in the batch. Returns the total log-likelihood of the batch.
        """
        feats = np.asarray(feats, dtype=np.float64)
        pdf_ids = np.asarray(pdf_ids)
        if feats.shape[0] != pdf_ids.shape[0]:
            raise ValueError(f"{feats.shape[0]} frames but {pdf_ids.shape[0]} pdf-ids")
        order = np.argsort(pdf_ids, kind="stable")
        sorted_pdfs = pdf_ids[order]
        uniq, starts, counts = np.unique(sorted_pdfs, return_index=True, return_counts=True)
        total = 0.0
        for pdf, start, count in zip(uniq.tolist(), starts.tolist(), counts.tolist()):
            x = feats[order[start:start + count]]
            x2 = x * x
            ll = self._params[pdf].component_loglikes(x, x2)
            mx = ll.max(axis=1, keepdims=True)
            post = np.exp(ll - mx)
            norm = post.sum(axis=1, keepdims=True)
            post /= norm
            total += float((np.log(norm) + mx).sum())
            self.occ[pdf] += post.sum(axis=0)
            self.x[pdf] += post.T @ x
            self.x2[pdf] += post.T @ x2
        if transition_ids is not None:
            self.trans_counts += np.bincount(np.asarray(transition_ids), minlength=self.trans_counts.shape[0])
        self.tot_loglike += total
        self.num_frames += int(feats.shape[0])
        return total

    def add(self, other: "GaussStats") -> None:
        """Sum another shard's statistics into these (same model, so same shapes)."""
        for mine, theirs in ((self.occ, other.occ), (self.x, other.x), (self.x2, other.x2)):
            for a, b in zip(mine, theirs):
                a += b
        self.trans_counts += other.trans_counts
        self.tot_loglike += other.tot_loglike
        self.num_frames += other.num_frames
        self.num_utts += other.num_utts

    def pdf_occupancies(self) -> np.ndarray:
        return np.array([o.sum() for o in self.occ], dtype=np.float32)

    def to_kaldi(self, am: khg.AmDiagGmm, flags: int) -> khg.AccumAmDiagGmm:
        """Transfer the statistics into a Kaldi ``AccumAmDiagGmm`` (two pseudo-frames per Gaussian).

        The pseudo-frames of all Gaussians are computed in one vectorised step; only the Kaldi calls
        remain per Gaussian (the per-Gaussian arithmetic in Python cost more than the calls).
        """
        acc = khg.AccumAmDiagGmm()
        acc.init(am, flags)
        occ = np.concatenate(self.occ)
        if not len(occ):
            return acc
        pdf_of = np.repeat(np.arange(len(self.occ)), [len(o) for o in self.occ])
        gauss_of = np.concatenate([np.arange(len(o)) for o in self.occ])
        used = occ > 0.0
        n = occ[used][:, None]
        mean = np.concatenate(self.x)[used] / n
        std = np.sqrt(np.maximum(np.concatenate(self.x2)[used] / n - mean * mean, 0.0))
        plus = (mean + std).astype(np.float32)
        minus = (mean - std).astype(np.float32)
        half = occ[used] / 2.0
        for i, (pdf, g) in enumerate(zip(pdf_of[used].tolist(), gauss_of[used].tolist())):
            acc.accumulate_for_gaussian(am, plus[i], pdf, g, half[i])
            acc.accumulate_for_gaussian(am, minus[i], pdf, g, half[i])
        return acc
