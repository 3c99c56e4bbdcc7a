"""Global input normalisation, stored with the network (Kaldi nnet1's ``<AddShift>``/``<Rescale>``).

After per-speaker CMVN the static log-mel values have unit variance, but their Δ and ΔΔ do not
(about 0.2 and 0.08 on synth_zh): a network would start out nearly blind to the dynamics, and the
first layer's learning rate would have to suit three different scales at once. Kaldi's nnet1
therefore puts a fixed shift and scale in front of every network, estimated once on the training
inputs; so does senone. The statistics are part of the model (buffers in its ``state_dict``), so a
decoder cannot apply a different normalisation by mistake.
"""

from __future__ import annotations

from typing import Any, Iterable

import numpy as np
import torch
from torch import nn

from senone import SenoneError


def input_stats(inputs: Iterable[np.ndarray], max_frames: int = 2_000_000) -> tuple[np.ndarray, np.ndarray]:
    """Per-dimension mean and standard deviation over (up to ``max_frames``) training frames."""
    total, sq, n = None, None, 0
    for x in inputs:
        x = np.asarray(x, dtype=np.float64)
        total = x.sum(0) if total is None else total + x.sum(0)
        sq = (x * x).sum(0) if sq is None else sq + (x * x).sum(0)
        n += len(x)
        if n >= max_frames:
            break
    if not n:
        raise SenoneError("no training frames to estimate the input normalisation from")
    mean = total / n
    std = np.sqrt(np.maximum(sq / n - mean * mean, 0.0))
    std[std < 1e-5] = 1.0  # a constant input dimension stays as it is
    return mean.astype(np.float32), std.astype(np.float32)


class InputNormalized(nn.Module):
    """``net`` applied to ``(x − mean) / std``; the context and recurrence attributes are ``net``'s."""

    def __init__(self, net: nn.Module, mean: np.ndarray, std: np.ndarray) -> None:
        super().__init__()
        self.net = net
        self.register_buffer("mean", torch.as_tensor(np.asarray(mean, dtype=np.float32)))
        self.register_buffer("inv_std", torch.as_tensor(1.0 / np.asarray(std, dtype=np.float32)))

    @property
    def left_context(self) -> int:
        return int(getattr(self.net, "left_context", 0))

    @property
    def right_context(self) -> int:
        return int(getattr(self.net, "right_context", 0))

    @property
    def is_recurrent(self) -> bool:
        return bool(getattr(self.net, "is_recurrent", False))

    @property
    def takes_state(self) -> bool:
        """Whether ``net`` takes a carried recurrent state (see :meth:`AcousticModel.forward`)."""
        return bool(getattr(self.net, "takes_state", False))

    def forward(self, x: torch.Tensor, state: Any = None, carry_at: int | None = None) -> Any:
        """``net((x − mean) / std)``; ``state`` and ``carry_at`` go to ``net`` when given (truncated BPTT
        with a carried state), so the plain call is exactly ``net``'s plain call."""
        x = (x - self.mean) * self.inv_std
        if state is None and carry_at is None:
            return self.net(x)
        return self.net(x, state=state, carry_at=carry_at)
