"""Acoustic scorers: turn one utterance's input into a Kaldi decodable over transition-ids.

The decoder walks HCLG, whose input labels are transition-ids, and asks a *decodable* for the
acoustic score of (frame, transition-id). GMM and NN systems differ only in where those scores come
from, so both plug into the same decoder through :class:`AcousticScorer`:

* :class:`GmmScorer` — features in, ``DecodableAmDiagGmmScaled`` evaluates the GMM of each
  transition-id's pdf on demand (Kaldi's ``gmm-latgen-faster``).
* :class:`NnScorer` — a network's T×num_pdfs matrix of *pseudo log-likelihoods* in (log-posterior
  minus log-prior, as Kaldi's nnet decoders expect), already computed outside the decoder.
  kaldi-hmm-gmm has no ``DecodableMatrixScaledMapped``, so we build the equivalent: expand the
  columns to transition-ids through ``transition_id_to_pdf_array()`` and wrap the result in
  ``DecodableCtc``, which returns column ``transition_id - 1`` verbatim. ``DecodableCtc`` applies no
  scale, so the acoustic scale is multiplied in here — exactly what Kaldi's
  ``DecodableMatrixScaledMapped`` does, so the same ``acoustic_scale`` means the same thing for both.

The decodables copy their input matrix, but hold the acoustic model and transition model by
reference: a scorer therefore keeps both alive for as long as it exists.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import kaldi_hmm_gmm as khg
import numpy as np

from senone import SenoneError


@runtime_checkable
class AcousticScorer(Protocol):
    """Anything that maps one utterance's matrix to a decodable over transition-ids."""

    def decodable(self, x: np.ndarray, acoustic_scale: float) -> khg.DecodableInterface:
        """Return a decodable whose ``log_likelihood(t, tid)`` is ``acoustic_scale`` × log p(x_t | pdf(tid))."""
        ...


class GmmScorer:
    """Scores feature frames with a diagonal-covariance GMM acoustic model (one GMM per pdf)."""

    def __init__(self, am_gmm: khg.AmDiagGmm, trans_model: khg.TransitionModel) -> None:
        if am_gmm.num_pdfs != trans_model.num_pdfs:
            raise SenoneError(
                f"acoustic model has {am_gmm.num_pdfs} pdfs but the transition model {trans_model.num_pdfs}; "
                "they come from different training stages — load both from the same final.mdl"
            )
        self.am_gmm = am_gmm
        self.trans_model = trans_model
        self.dim = int(am_gmm.dim)

    def decodable(self, x: np.ndarray, acoustic_scale: float) -> khg.DecodableAmDiagGmmScaled:
        feats = np.ascontiguousarray(x, dtype=np.float32)
        if feats.ndim != 2 or feats.shape[1] != self.dim:
            raise SenoneError(
                f"features have shape {feats.shape}, the GMM expects (frames, {self.dim}); "
                "decode with the same feature pipeline (deltas, CMVN, splicing) as training"
            )
        return khg.DecodableAmDiagGmmScaled(self.am_gmm, self.trans_model, feats, float(acoustic_scale))


class NnScorer:
    """Scores frames from a precomputed T×num_pdfs matrix of NN pseudo log-likelihoods."""

    def __init__(self, trans_model: khg.TransitionModel) -> None:
        self.trans_model = trans_model
        self.num_pdfs = int(trans_model.num_pdfs)
        # Column t-1 of the expanded matrix belongs to transition-id t (ids start at 1).
        self.tid2pdf = np.asarray(trans_model.transition_id_to_pdf_array()[1:], dtype=np.int64)

    def expand(self, loglikes: np.ndarray, acoustic_scale: float) -> np.ndarray:
        """The T×num_transition_ids matrix that the decodable reads (scale applied)."""
        ll = np.asarray(loglikes, dtype=np.float32)
        if ll.ndim != 2 or ll.shape[1] != self.num_pdfs:
            raise SenoneError(
                f"NN output has shape {ll.shape}, the transition model has {self.num_pdfs} pdfs; "
                "use the network trained on this tree's alignments"
            )
        if not np.isfinite(ll).all():
            raise SenoneError("NN log-likelihoods contain NaN/inf; check the network output and priors")
        # Scale the narrow pdf matrix first, then gather: fewer multiplies than after the gather.
        scaled = ll * np.float32(acoustic_scale)
        return np.ascontiguousarray(np.take(scaled, self.tid2pdf, axis=1))

    def decodable(self, x: np.ndarray, acoustic_scale: float) -> khg.DecodableCtc:
        return khg.DecodableCtc(self.expand(x, acoustic_scale))


def gmm_loglikes(am_gmm: khg.AmDiagGmm, feats: np.ndarray) -> np.ndarray:
    """T×num_pdfs matrix of GMM log-likelihoods (log-sum-exp over each pdf's Gaussians).

    The matrix that, fed to :class:`NnScorer`, reproduces :class:`GmmScorer`; useful for tests
    and for comparing GMM and NN scores on the same frames.
    """
    feats = np.ascontiguousarray(feats, dtype=np.float32)
    out = np.empty((feats.shape[0], am_gmm.num_pdfs), dtype=np.float32)
    for pdf in range(am_gmm.num_pdfs):
        comp = np.asarray(am_gmm.get_pdf(pdf).log_likelihoods_matrix(feats), dtype=np.float64)
        mx = comp.max(axis=1, keepdims=True)
        out[:, pdf] = (mx[:, 0] + np.log(np.exp(comp - mx).sum(axis=1))).astype(np.float32)
    return out
