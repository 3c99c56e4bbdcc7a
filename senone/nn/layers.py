"""The building blocks of the paper's networks, other than the LSTM itself.

Patch layers work on a feature map ``(B, T, P, C)``: P positions along the frequency axis (bands
at the input, patches or pooled patches further up), C values per position (at the input: the
static, Δ and ΔΔ value of a band, times the spliced frames for an FFNN). A patch layer cuts the
positions into overlapping patches (``width`` positions, stride 1), applies one function with
weights shared by all patches (a linear filter bank for ``Conv``, an LSTM along time for ``CLstm``)
and returns a new map ``(B, T, P - width + 1, K)``. ``Pooling`` takes the max over groups of 3
positions. Frame layers (ReLU, Maxout, Lstm) work on flat ``(B, T, D)`` frames.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from senone.nn.lstm import LstmState, PeepholeLstm


def init_linear(layer: nn.Linear, relu: bool) -> nn.Linear:
    """He-uniform before a ReLU (keeps activation variance through deep ReLU stacks), Glorot otherwise;
    zero bias. Draws from torch's global generator, so a seeded run builds the same network."""
    if relu:
        nn.init.kaiming_uniform_(layer.weight, nonlinearity="relu")
    else:
        nn.init.xavier_uniform_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


def patches(x: torch.Tensor, width: int) -> torch.Tensor:
    """(B, T, P, C) → (B, T, P - width + 1, width·C): every run of ``width`` positions, stride 1,
    flattened position-major (a patch of the input holds band j's static, Δ, ΔΔ, then band j+1's...)."""
    b, t, p, c = x.shape
    return x.unfold(2, width, 1).transpose(3, 4).reshape(b, t, p - width + 1, width * c)


class PatchConv(nn.Module):
    """Convolution along frequency: one filter bank (linear map + ReLU) applied to every patch."""

    def __init__(self, width: int, in_channels: int, filters: int):
        super().__init__()
        self.width = width
        self.linear = init_linear(nn.Linear(width * in_channels, filters), relu=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.linear(patches(x, self.width)))

    def extra_repr(self) -> str:
        return f"patch_width={self.width}"


class PatchLstm(nn.Module):
    """CLSTM (paper, section 3): one LSTM(P), weights shared across patches, run along time on each patch.

    The patches are moved into the batch dimension, so all B·P' sequences go through one LSTM in one
    call: sharing the weights is structural, not a convention.
    """

    def __init__(self, width: int, in_channels: int, cells: int, proj: int | None):
        super().__init__()
        self.width = width
        self.lstm = PeepholeLstm(width * in_channels, cells, proj)

    def forward(self, x: torch.Tensor, state: Optional[LstmState] = None,
                carry_at: Optional[int] = None) -> torch.Tensor | tuple[torch.Tensor, LstmState]:
        """(B, T, P, C) → (B, T, P', K). With ``state``/``carry_at`` as :class:`PeepholeLstm`'s, the
        state is kept per utterance and patch, (B, P', R) and (B, P', H): sequence b·P' + j of the
        folded batch is row b, patch j, so a trainer can pick a stream's state by its row alone."""
        x = patches(x, self.width)  # (B, T, P', I)
        b, t, p, i = x.shape
        seqs = x.permute(0, 2, 1, 3).reshape(b * p, t, i)
        if state is None and carry_at is None:
            out = self.lstm(seqs)  # (B·P', T, R)
            return out.reshape(b, p, t, -1).permute(0, 2, 1, 3)
        flat = None if state is None else (state[0].reshape(b * p, -1), state[1].reshape(b * p, -1))
        res = self.lstm(seqs, flat, carry_at)
        out = res[0] if carry_at is not None else res
        y = out.reshape(b, p, t, -1).permute(0, 2, 1, 3)
        if carry_at is None:
            return y
        h, c = res[1]
        return y, (h.reshape(b, p, -1), c.reshape(b, p, -1))

    def extra_repr(self) -> str:
        return f"patch_width={self.width}"


class PatchMaxPool(nn.Module):
    """Max over non-overlapping groups of ``size`` positions; a last incomplete group is dropped."""

    def __init__(self, size: int):
        super().__init__()
        self.size = size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, p, c = x.shape
        keep = p // self.size
        return x[:, :, :keep * self.size].reshape(b, t, keep, self.size, c).amax(dim=3)

    def extra_repr(self) -> str:
        return f"size={self.size}"


class ReLULayer(nn.Module):
    """Fully connected layer of rectified linear units."""

    def __init__(self, input_dim: int, units: int):
        super().__init__()
        self.linear = init_linear(nn.Linear(input_dim, units), relu=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.linear(x))


class MaxoutLayer(nn.Module):
    """Fully connected maxout layer: ``units·group`` linear pieces, each unit the max of its group."""

    def __init__(self, input_dim: int, units: int, group: int):
        super().__init__()
        self.units, self.group = units, group
        self.linear = init_linear(nn.Linear(input_dim, units * group), relu=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.linear(x)
        return y.reshape(*y.shape[:-1], self.units, self.group).amax(dim=-1)

    def extra_repr(self) -> str:
        return f"units={self.units}, group={self.group}"
