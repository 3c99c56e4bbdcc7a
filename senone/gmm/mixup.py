"""Mixing up (Kaldi's ``gmm-est --mix-up``), done in numpy so that it is deterministic.

kaldi-hmm-gmm's ``AmDiagGmm.split_by_count`` perturbs the split means with numbers from
``std::random_device``, which no seed controls: two runs of the same recipe would differ. This
module reproduces Kaldi's algorithm — ``GetSplitTargets`` (Gaussians allocated in proportion to
occupancy^power, no Gaussian below ``min_count`` frames) and ``DiagGmm::Split`` (repeatedly halve
the heaviest component and move the two halves ± ``perturb_factor`` standard deviations along a
random direction) — with a seeded generator.
"""

from __future__ import annotations

import heapq

import kaldi_hmm_gmm as khg
import numpy as np


def split_targets(state_occs: np.ndarray, target_components: int, power: float, min_count: float) -> list[int]:
    """Number of Gaussians per pdf after mixing up to ``target_components`` in total (Kaldi's rule)."""
    occs = np.asarray(state_occs, dtype=np.float64)
    # max-heap on occ^power / num_components; ties broken by pdf index so the result is deterministic
    heap = [(-(occ ** power) / (1 + 1e-10), pdf, 1, occ ** power) for pdf, occ in enumerate(occs)]
    heapq.heapify(heap)
    num_gauss = len(occs)
    while num_gauss < target_components and heap:
        if heap[0][3] == 0:
            break  # every pdf is held back by min_count (or has no data)
        _key, pdf, n, powered = heapq.heappop(heap)
        if (n + 1) * min_count >= occs[pdf]:
            powered = 0.0  # splitting again would leave a Gaussian under min_count frames
        else:
            n += 1
            num_gauss += 1
        heapq.heappush(heap, (-powered / (n + 1e-10), pdf, n, powered))
    targets = [1] * len(occs)
    for _key, pdf, n, _p in heap:
        targets[pdf] = n
    return targets


def split_gmm(gmm: khg.DiagGmm, target: int, perturb_factor: float, rng: np.random.Generator) -> None:
    """Kaldi's ``DiagGmm::Split``: halve the heaviest component until there are ``target``."""
    weights = np.asarray(gmm.weights, dtype=np.float64).copy()
    inv_vars = np.asarray(gmm.inv_vars, dtype=np.float64).copy()
    means_invvars = np.asarray(gmm.means_invvars, dtype=np.float64).copy()
    current = weights.shape[0]
    if target <= current:
        return
    weights = np.concatenate([weights, np.zeros(target - current)])
    inv_vars = np.concatenate([inv_vars, np.zeros((target - current, inv_vars.shape[1]))])
    means_invvars = np.concatenate([means_invvars, np.zeros((target - current, inv_vars.shape[1]))])
    for i in range(current, target):
        j = int(np.argmax(weights[:i]))
        weights[j] /= 2.0
        weights[i] = weights[j]
        direction = rng.standard_normal(inv_vars.shape[1]) * np.sqrt(inv_vars[j])
        inv_vars[i] = inv_vars[j]
        means_invvars[i] = means_invvars[j] + perturb_factor * direction
        means_invvars[j] = means_invvars[j] - perturb_factor * direction
    gmm.resize(target, inv_vars.shape[1])
    gmm.set_weights(weights.astype(np.float32))
    gmm.set_invvars(inv_vars.astype(np.float32))
    gmm.set_means((means_invvars / inv_vars).astype(np.float32))
    gmm.compute_gconsts()


def split_by_count(am: khg.AmDiagGmm, state_occs: np.ndarray, target_components: int, *, perturb_factor: float,
                   power: float, min_count: float, seed: int) -> None:
    """``AmDiagGmm::SplitByCount`` with a seeded generator; modifies ``am`` in place."""
    rng = np.random.default_rng(seed)
    targets = split_targets(state_occs, target_components, power, min_count)
    for pdf, target in enumerate(targets):
        gmm = am.get_pdf(pdf)  # a reference into the model: splitting it updates ``am``
        if gmm.num_gauss < target:
            split_gmm(gmm, target, perturb_factor, rng)
