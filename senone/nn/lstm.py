"""LSTM(P) layer with peephole connections, exactly the paper's eqs. 3-8 (plus the LSTMP projection).

    i_t = σ(W_xi x_t + W_hi h_{t-1} + w_ci ⊙ c_{t-1} + b_i)
    f_t = σ(W_xf x_t + W_hf h_{t-1} + w_cf ⊙ c_{t-1} + b_f)
    a_t = tanh(W_xc x_t + W_hc h_{t-1} + b_c)
    c_t = f_t ⊙ c_{t-1} + i_t ⊙ a_t
    o_t = σ(W_xo x_t + W_ho h_{t-1} + w_co ⊙ c_t + b_o)        (the output gate peeks at the new cell)
    m_t = o_t ⊙ tanh(c_t);   h_t = W_p m_t (LSTMP) or m_t (plain LSTM)

``torch.nn.LSTM`` has no peepholes, hence this layer. It is written for speed on a CPU: the input
contributions of all time steps are one matrix product (``W_x x`` for the whole sequence), and only
the recurrent product and the element-wise gate arithmetic stay in the time loop. By default
(``SCAN_IMPL = "bptt"``) the loop runs in TorchScript and backpropagation through time is written
by hand: autograd would record T × ~15 small operations and compute the weight gradients as T
small products, where the hand-written pass makes one large product per weight matrix after its
loop. On this project's 2-core CPU that is about twice as fast as autograd through the same loop,
plain or TorchScript (``bench/bench_nn_models.py``, BENCHMARKS.md); the tests check it against
autograd (gradcheck) and the forward pass against eqs. 3-8 written out step by step.

Every call starts from a zero state (h_0 = 0, c_0 = 0): the trainer feeds independent chunks and
the decoder whole utterances, so there is no state to carry between calls.
"""

from __future__ import annotations

import warnings
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


def _bptt_forward(gx: torch.Tensor, w_h: torch.Tensor, peep: torch.Tensor, w_p: Optional[torch.Tensor],
                  save: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The recurrence of :func:`lstm_scan`, keeping what backpropagation needs.

    Returns hs (T + 1, N, R) with hs[0] = h_0 = 0, cs (T + 1, N, H) with cs[0] = 0 (only when
    ``save``), and the gate activations i, f, a, o of every step (T, N, 4H) (only when ``save``).
    """
    num_steps, n = gx.size(0), gx.size(1)
    cells = peep.size(1)
    w_ci, w_cf, w_co = peep[0], peep[1], peep[2]
    w_h_t = w_h.t()
    hs = gx.new_zeros(num_steps + 1, n, w_h.size(1))
    cs = gx.new_zeros(num_steps + 1 if save else 1, n, cells)
    acts = gx.new_empty(num_steps if save else 0, n, 4 * cells)
    c = cs[0]
    for t in range(num_steps):
        gates = torch.addmm(gx[t], hs[t], w_h_t)
        gi, gf, ga, go = gates.chunk(4, 1)
        i = torch.sigmoid(gi + w_ci * c)
        f = torch.sigmoid(gf + w_cf * c)
        a = torch.tanh(ga)
        c = f * c + i * a
        o = torch.sigmoid(go + w_co * c)
        m = o * torch.tanh(c)
        if w_p is not None:
            torch.mm(m, w_p.t(), out=hs[t + 1])
        else:
            hs[t + 1] = m
        if save:
            cs[t + 1] = c
            torch.cat([i, f, a, o], 1, out=acts[t])
    return hs, cs, acts


def _bptt_backward(grad_h: torch.Tensor, hs: torch.Tensor, cs: torch.Tensor, acts: torch.Tensor,
                   w_h: torch.Tensor, peep: torch.Tensor, w_p: Optional[torch.Tensor]
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, Optional[torch.Tensor]]:
    """Backpropagation through time of eqs. 3-8 by hand: only the recurrent products stay in the loop.

    The weight gradients are sums over time of outer products, so they are computed after the loop
    as one large matrix product each (dW_h from all gate gradients and h_{t-1}, dW_p from all dh_t
    and m_t) instead of T small ones, as autograd would.
    """
    num_steps, n = grad_h.size(0), grad_h.size(1)
    cells = peep.size(1)
    w_ci, w_cf, w_co = peep[0], peep[1], peep[2]
    tanh_c = torch.tanh(cs[1:])
    i_all, f_all, a_all, o_all = acts.chunk(4, 2)
    d_gates = torch.empty_like(acts)
    d_hs = torch.empty_like(grad_h) if w_p is not None else grad_h  # dL/dh_t, total (for dW_p)
    d_h_rec = grad_h.new_zeros(n, grad_h.size(2))
    d_c_next = grad_h.new_zeros(n, cells)
    for t in range(num_steps - 1, -1, -1):
        d_h = grad_h[t] + d_h_rec
        if w_p is not None:
            d_hs[t] = d_h
            d_m = torch.mm(d_h, w_p)
        else:
            d_m = d_h
        i, f, a, o, tc = i_all[t], f_all[t], a_all[t], o_all[t], tanh_c[t]
        d_go = d_m * tc * o * (1 - o)
        d_c = d_c_next + d_m * o * (1 - tc * tc) + d_go * w_co  # (8), and (7) peeks at c_t
        c_prev = cs[t]
        d_gi = d_c * a * i * (1 - i)
        d_gf = d_c * c_prev * f * (1 - f)
        d_ga = d_c * i * (1 - a * a)
        d_c_next = d_c * f + d_gi * w_ci + d_gf * w_cf  # c_{t-1} feeds (6), (3) and (4)
        torch.cat([d_gi, d_gf, d_ga, d_go], 1, out=d_gates[t])
        d_h_rec = torch.mm(d_gates[t], w_h)
    flat = d_gates.reshape(num_steps * n, 4 * cells)
    d_w_h = torch.mm(flat.t(), hs[:-1].reshape(num_steps * n, -1))
    dg_i, dg_f, _, dg_o = d_gates.chunk(4, 2)
    d_peep = torch.stack([(dg_i * cs[:-1]).sum((0, 1)), (dg_f * cs[:-1]).sum((0, 1)),
                          (dg_o * cs[1:]).sum((0, 1))])
    d_w_p: Optional[torch.Tensor] = None
    if w_p is not None:
        m = o_all * tanh_c
        d_w_p = torch.mm(d_hs.reshape(num_steps * n, -1).t(), m.reshape(num_steps * n, cells))
    return d_gates, d_w_h, d_peep, d_w_p


# TorchScript is deprecated in favour of torch.compile, but torch.compile specialises the unrolled
# loops on the sequence length (a recompilation per utterance length when decoding), TorchScript
# runs any length. Compiled once at import: no per-step interpreter overhead, same operations.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    lstm_scan_jit = torch.jit.script(lstm_scan)
    _bptt_forward = torch.jit.script(_bptt_forward)
    _bptt_backward = torch.jit.script(_bptt_backward)


class _BpttScan(torch.autograd.Function):
    """:func:`lstm_scan` with the hand-written backward pass :func:`_bptt_backward`."""

    @staticmethod
    def forward(ctx, gx, w_h, peep, w_p):
        hs, cs, acts = _bptt_forward(gx, w_h, peep, w_p, True)
        ctx.save_for_backward(hs, cs, acts, w_h, peep, w_p)
        return hs[1:]

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_h):
        hs, cs, acts, w_h, peep, w_p = ctx.saved_tensors
        d_gx, d_w_h, d_peep, d_w_p = _bptt_backward(grad_h.contiguous(), hs, cs, acts, w_h, peep, w_p)
        return d_gx, d_w_h, d_peep, d_w_p


def lstm_scan_bptt(gx: torch.Tensor, w_h: torch.Tensor, peep: torch.Tensor,
                   w_p: Optional[torch.Tensor]) -> torch.Tensor:
    """Same result as :func:`lstm_scan`; forward and backward are TorchScript loops, the backward
    written by hand (no autograd graph of T × ~15 small operations)."""
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (gx, w_h, peep, w_p)):
        return _BpttScan.apply(gx, w_h, peep, w_p)
    return _bptt_forward(gx, w_h, peep, w_p, False)[0][1:]  # inference: keep no cell states or gates


# Which implementation PeepholeLstm uses: "loop" (autograd through Python), "jit" (autograd through
# TorchScript) or "bptt" (TorchScript loops, hand-written backward); chosen by bench/bench_nn_models.py.
SCAN_IMPL = "bptt"
SCANS = {"loop": lstm_scan, "jit": lstm_scan_jit, "bptt": lstm_scan_bptt}


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
        return SCANS[SCAN_IMPL](gx, self.w_h, self.peep, self.w_p).transpose(0, 1)

    def extra_repr(self) -> str:
        proj = f", proj={self.proj}" if self.proj is not None else ""
        return f"input_dim={self.input_dim}, cells={self.cells}{proj}, peepholes=True"

