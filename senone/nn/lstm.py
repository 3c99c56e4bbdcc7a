"""LSTM(P) layer with peephole connections, exactly the paper's eqs. 3-8 (plus the LSTMP projection).

    i_t = σ(W_xi x_t + W_hi h_{t-1} + w_ci ⊙ c_{t-1} + b_i)
    f_t = σ(W_xf x_t + W_hf h_{t-1} + w_cf ⊙ c_{t-1} + b_f)
    a_t = tanh(W_xc x_t + W_hc h_{t-1} + b_c)
    c_t = f_t ⊙ c_{t-1} + i_t ⊙ a_t
    o_t = σ(W_xo x_t + W_ho h_{t-1} + w_co ⊙ c_t + b_o)        (the output gate peeks at the new cell)
    m_t = o_t ⊙ tanh(c_t);   h_t = W_p m_t (LSTMP) or m_t (plain LSTM)

``torch.nn.LSTM`` has no peepholes, hence this layer. It is written for speed on a CPU: the input
contributions of all time steps are one matrix product (``W_x x`` for the whole sequence), and only
the recurrent product and the element-wise gate arithmetic stay in the time loop, which is compiled
with TorchScript (``torch.jit.script``) to take the Python interpreter out of the loop — see
``bench/bench_nn_models.py`` and BENCHMARKS.md for the plain-loop vs TorchScript measurement.

Every call starts from a zero state (h_0 = 0, c_0 = 0): the trainer feeds independent chunks and
the decoder whole utterances, so there is no state to carry between calls.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn


def lstm_scan(gx: torch.Tensor, w_h: torch.Tensor, peep: torch.Tensor, w_p: Optional[torch.Tensor]) -> torch.Tensor:
    """Run the recurrence over time.

    gx: (T, N, 4H) input contributions plus bias, gate blocks in the order i, f, a (cell input), o;
    w_h: (4H, R) recurrent weights; peep: (3, H) diagonal peepholes w_ci, w_cf, w_co;
    w_p: (R, H) projection or None (then R = H). Returns h: (T, N, R).
    """
    num_steps = gx.size(0)
    n = gx.size(1)
    cells = peep.size(1)
    w_ci, w_cf, w_co = peep[0], peep[1], peep[2]
    w_h_t = w_h.t()
    c = gx.new_zeros(n, cells)
    h = gx.new_zeros(n, w_h.size(1))
    outputs: list[torch.Tensor] = []
    for t in range(num_steps):
        gates = torch.addmm(gx[t], h, w_h_t)
        gi, gf, ga, go = gates.chunk(4, 1)
        i = torch.sigmoid(gi + w_ci * c)
        f = torch.sigmoid(gf + w_cf * c)
        c = f * c + i * torch.tanh(ga)
        o = torch.sigmoid(go + w_co * c)
        m = o * torch.tanh(c)
        if w_p is not None:
            h = torch.mm(m, w_p.t())
        else:
            h = m
        outputs.append(h)
    return torch.stack(outputs, 0)


# Compiled once at import: removes per-step interpreter overhead; numerically the same operations.
lstm_scan_jit = torch.jit.script(lstm_scan)

# Which implementation PeepholeLstm uses ("jit" or "loop"); chosen by bench/bench_nn_models.py.
SCAN_IMPL = "jit"


def lstm_num_params(input_dim: int, cells: int, proj: int | None) -> int:
    """Parameters of one LSTM(P) layer: W_x, W_h, one bias per gate, 3 peepholes, projection."""
    rec = proj if proj is not None else cells
    return 4 * cells * (input_dim + rec) + 4 * cells + 3 * cells + (rec * cells if proj is not None else 0)


class PeepholeLstm(nn.Module):
    """One unidirectional LSTM(P) layer with peepholes. Input (N, T, I) → output (N, T, R).

    R is the projection size for LSTMP, else the number of cells. Initialisation (torch's global
    seed): Glorot-uniform W_x and W_h per gate block (each gate is its own fan-in/fan-out map),
    Glorot-uniform projection, zero biases except the forget gate's, which starts at 1 so that
    early training remembers rather than forgets (Gers et al.), and zero peepholes, so an untrained
    cell is a plain LSTM and the peepholes learn from the first update.
    """

    def __init__(self, input_dim: int, cells: int, proj: int | None = None):
        super().__init__()
        self.input_dim, self.cells, self.proj = input_dim, cells, proj
        rec = proj if proj is not None else cells
        self.w_x = nn.Parameter(torch.empty(4 * cells, input_dim))
        self.w_h = nn.Parameter(torch.empty(4 * cells, rec))
        self.bias = nn.Parameter(torch.empty(4 * cells))
        self.peep = nn.Parameter(torch.empty(3, cells))
        self.w_p = nn.Parameter(torch.empty(proj, cells)) if proj is not None else None
        self.reset_parameters()

    @property
    def output_dim(self) -> int:
        return self.proj if self.proj is not None else self.cells

    def reset_parameters(self) -> None:
        with torch.no_grad():
            for w in (self.w_x, self.w_h):
                for block in w.chunk(4, 0):
                    nn.init.xavier_uniform_(block)
            self.bias.zero_()
            self.bias[self.cells:2 * self.cells].fill_(1.0)
            self.peep.zero_()
            if self.w_p is not None:
                nn.init.xavier_uniform_(self.w_p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # One GEMM for every time step's input contribution, time-major so each step reads a contiguous slab.
        gx = torch.nn.functional.linear(x.transpose(0, 1), self.w_x, self.bias)
        scan = lstm_scan_jit if SCAN_IMPL == "jit" else lstm_scan
        return scan(gx, self.w_h, self.peep, self.w_p).transpose(0, 1)

    def extra_repr(self) -> str:
        proj = f", proj={self.proj}" if self.proj is not None else ""
        return f"input_dim={self.input_dim}, cells={self.cells}{proj}, peepholes=True"

