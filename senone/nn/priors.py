"""Senone priors and the hybrid model's scaled likelihoods.

A network trained with cross-entropy estimates the posterior p(s | x_t) of senone s. An HMM needs
a likelihood p(x_t | s), which by Bayes is proportional to p(s | x_t) / p(s): the hybrid approach
divides by the senone prior. In the log domain the decoder gets

    log p(x_t | s) + const = log p(s | x_t) − prior_scale · log p(s),

with p(s) the relative frequency of senone s in the training alignments (Kaldi nnet1's
``--class-frame-counts``) and ``prior_scale`` 1 by default.

A senone that never occurs in the alignments has a zero prior, and dividing by it would make its
(untrained, tiny) posterior look infinitely likely. Counts are therefore floored at one frame: an
unseen senone gets the prior of a senone seen once — the smallest any seen senone has — so it is
neither boosted by its missing data nor made impossible for the decoder.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np

from senone import SenoneError


def pdf_counts(alignments: Iterable[np.ndarray], num_pdfs: int) -> np.ndarray:
    """Frames per pdf-id over per-utterance pdf alignments."""
    counts = np.zeros(num_pdfs, dtype=np.int64)
    for ali in alignments:
        ali = np.asarray(ali)
        if len(ali) and (ali.min() < 0 or ali.max() >= num_pdfs):
            raise SenoneError(f"alignment holds pdf-id {int(ali.max())} outside [0, {num_pdfs}); the alignments and "
                              "the network come from different trees")
        counts += np.bincount(ali, minlength=num_pdfs)
    return counts


def log_priors(counts: np.ndarray, floor_count: float = 1.0) -> np.ndarray:
    """log p(s) from frame counts, each count floored at ``floor_count`` (see the module docstring)."""
    counts = np.maximum(np.asarray(counts, dtype=np.float64), floor_count)
    if counts.sum() <= 0:
        raise SenoneError("senone counts are all zero; the training alignments are empty")
    return np.log(counts / counts.sum()).astype(np.float32)


def pseudo_loglikes(log_posteriors: np.ndarray, log_prior: np.ndarray, prior_scale: float = 1.0) -> np.ndarray:
    """Scaled log-likelihoods for the decoder: log-posterior − prior_scale × log-prior (T × num_pdfs)."""
    log_posteriors = np.asarray(log_posteriors, dtype=np.float32)
    if log_posteriors.ndim != 2 or log_posteriors.shape[1] != len(log_prior):
        raise SenoneError(f"network output has shape {log_posteriors.shape} but there are {len(log_prior)} priors; "
                          "use the priors written with this network")
    return log_posteriors - np.float32(prior_scale) * log_prior[None, :]
