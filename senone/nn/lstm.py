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

**State.** A plain call (``layer(x)``) starts from a zero state (h_0 = 0, c_0 = 0): the decoder runs
whole utterances, and the trainer with ``nn.train.carry_state: false`` feeds independent chunks.
With ``carry_state: true`` the trainer runs truncated BPTT with the state carried across chunks
(Kaldi nnet1's multi-stream training): ``layer(x, state=(h0, c0), carry_at=s)`` starts from the given
state and also returns the state (h_s, c_s) reached after the first ``s`` steps, where the next chunk
of the same utterance begins (``s = chunk_len − overlap``, see :mod:`senone.nn.chunks`). With the
hand-written pass that state is a *non-differentiable* output — the truncation of BPTT made explicit:
the next chunk's loss never reaches back into this chunk (under the autograd scans the trainer
detaches it). The initial state, on the other hand, does get its gradient (dL/dh_0 and dL/dc_0 fall
out of the hand-written backward loop at no cost), so the scan is exact as a function of all its
inputs and gradcheck can test it; the trainer passes detached states. The plain call runs the same
operations as before the state existed (bit-identical results, same speed); carrying a state added
about 1% to a training step of the default CLSTM (the copies of the states).
"""

from __future__ import annotations

import warnings
from typing import Optional

import torch
from torch import nn

from senone import SenoneError


#: The state of one LSTM(P) layer between two calls: ``(h, c)``, one row per sequence of the batch,
#: h (N, R) and c (N, H). A layer over frequency patches (the CLSTM) keeps (B, P', R) and (B, P', H).
LstmState = tuple[torch.Tensor, torch.Tensor]


def lstm_scan_from(gx: torch.Tensor, w_h: torch.Tensor, peep: torch.Tensor, w_p: Optional[torch.Tensor],
                   h0: Optional[torch.Tensor], c0: Optional[torch.Tensor],
                   carry_at: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Run the recurrence over time from the state (h0, c0) (zeros where None).

    gx: (T, N, 4H) input contributions plus bias, gate blocks in the order i, f, a (cell input), o;
    w_h: (4H, R) recurrent weights; peep: (3, H) diagonal peepholes w_ci, w_cf, w_co;
    w_p: (R, H) projection or None (then R = H); h0: (N, R), c0: (N, H).
    Returns h: (T, N, R) and the state (h_s, c_s) after the first ``s = carry_at`` steps (s = 0: the
    initial state; s < 0: two empty tensors, nothing is carried). Under autograd the carried state
    is part of the graph: a caller that truncates BPTT detaches it.
    """
    num_steps = gx.size(0)
    n = gx.size(1)
    cells = peep.size(1)
    w_ci, w_cf, w_co = peep[0], peep[1], peep[2]
    w_h_t = w_h.t()
    if c0 is None:
        c = gx.new_zeros(n, cells)
    else:
        c = c0
    if h0 is None:
        h = gx.new_zeros(n, w_h.size(1))
    else:
        h = h0
    h_carry, c_carry = gx.new_empty(0), gx.new_empty(0)
    if carry_at == 0:
        h_carry, c_carry = h, c
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
        if t + 1 == carry_at:
            h_carry, c_carry = h, c
    return torch.stack(outputs, 0), h_carry, c_carry


def lstm_scan(gx: torch.Tensor, w_h: torch.Tensor, peep: torch.Tensor, w_p: Optional[torch.Tensor]) -> torch.Tensor:
    """Run the recurrence over time from a zero state: :func:`lstm_scan_from` without a state.
    Returns h: (T, N, R)."""
    return lstm_scan_from(gx, w_h, peep, w_p, None, None, -1)[0]


def _bptt_forward(gx: torch.Tensor, w_h: torch.Tensor, peep: torch.Tensor, w_p: Optional[torch.Tensor],
                  h0: Optional[torch.Tensor], c0: Optional[torch.Tensor], save: bool,
                  carry_at: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The recurrence of :func:`lstm_scan_from`, keeping what backpropagation needs.

    Returns hs (T + 1, N, R) with hs[0] = h_0 (h0, or 0), cs (T + 1, N, H) with cs[0] = c_0 (only
    when ``save``; else cs[0] alone), the gate activations i, f, a, o of every step (T, N, 4H) (only
    when ``save``), and c_s, the cell state after ``carry_at`` steps (empty when ``carry_at`` < 0;
    h_s is ``hs[carry_at]``).
    """
    num_steps, n = gx.size(0), gx.size(1)
    cells = peep.size(1)
    w_ci, w_cf, w_co = peep[0], peep[1], peep[2]
    w_h_t = w_h.t()
    if h0 is None:
        hs = gx.new_zeros(num_steps + 1, n, w_h.size(1))
    else:
        hs = gx.new_empty(num_steps + 1, n, w_h.size(1))
        hs[0] = h0
    cs = gx.new_zeros(num_steps + 1 if save else 1, n, cells)
    if c0 is not None:
        cs[0] = c0
    acts = gx.new_empty(num_steps if save else 0, n, 4 * cells)
    c = cs[0]
    c_carry = gx.new_empty(0)
    if carry_at == 0:
        c_carry = c
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
        if t + 1 == carry_at:
            c_carry = c
    return hs, cs, acts, c_carry


def _bptt_backward(grad_h: torch.Tensor, hs: torch.Tensor, cs: torch.Tensor, acts: torch.Tensor,
                   w_h: torch.Tensor, peep: torch.Tensor, w_p: Optional[torch.Tensor]
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, Optional[torch.Tensor], torch.Tensor,
                              torch.Tensor]:
    """Backpropagation through time of eqs. 3-8 by hand: only the recurrent products stay in the loop.

    The weight gradients are sums over time of outer products, so they are computed after the loop
    as one large matrix product each (dW_h from all gate gradients and h_{t-1}, dW_p from all dh_t
    and m_t) instead of T small ones, as autograd would. hs[0] and cs[0] are the initial state; its
    gradients dL/dh_0 and dL/dc_0 are what the loop has left after its last (t = 0) step, so they
    are returned at no extra cost.
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
    return d_gates, d_w_h, d_peep, d_w_p, d_h_rec, d_c_next


# TorchScript is deprecated in favour of torch.compile, but torch.compile specialises the unrolled
# loops on the sequence length (a recompilation per utterance length when decoding), TorchScript
# runs any length. Compiled once at import: no per-step interpreter overhead, same operations.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    lstm_scan_jit = torch.jit.script(lstm_scan)
    lstm_scan_from_jit = torch.jit.script(lstm_scan_from)
    _bptt_forward = torch.jit.script(_bptt_forward)
    _bptt_backward = torch.jit.script(_bptt_backward)


class _BpttScan(torch.autograd.Function):
    """:func:`lstm_scan_from` with the hand-written backward pass :func:`_bptt_backward`.

    Outputs: h (T, N, R) and the carried state (h_s, c_s) (empty when ``carry_at`` < 0), which is
    marked non-differentiable: the truncation point of truncated BPTT. Gradients flow into
    gx, the weights and, when they require it, the initial state h0, c0.
    """

    @staticmethod
    def forward(ctx, gx, w_h, peep, w_p, h0, c0, carry_at):
        hs, cs, acts, _ = _bptt_forward(gx, w_h, peep, w_p, h0, c0, True, carry_at)
        ctx.save_for_backward(hs, cs, acts, w_h, peep, w_p)
        if carry_at >= 0:
            h_carry, c_carry = hs[carry_at].clone(), cs[carry_at].clone()
        else:
            h_carry, c_carry = gx.new_empty(0), gx.new_empty(0)
        ctx.mark_non_differentiable(h_carry, c_carry)
        return hs[1:], h_carry, c_carry

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_h, _grad_h_carry, _grad_c_carry):
        hs, cs, acts, w_h, peep, w_p = ctx.saved_tensors
        d_gx, d_w_h, d_peep, d_w_p, d_h0, d_c0 = _bptt_backward(grad_h.contiguous(), hs, cs, acts, w_h, peep, w_p)
        return (d_gx, d_w_h, d_peep, d_w_p, d_h0 if ctx.needs_input_grad[4] else None,
                d_c0 if ctx.needs_input_grad[5] else None, None)


def lstm_scan_bptt_from(gx: torch.Tensor, w_h: torch.Tensor, peep: torch.Tensor, w_p: Optional[torch.Tensor],
                        h0: Optional[torch.Tensor], c0: Optional[torch.Tensor],
                        carry_at: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Same results as :func:`lstm_scan_from`, with the hand-written backward pass; the carried
    state (h_s, c_s) never takes a gradient (truncated BPTT)."""
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (gx, w_h, peep, w_p, h0, c0)):
        return _BpttScan.apply(gx, w_h, peep, w_p, h0, c0, carry_at)
    hs, _, _, c_carry = _bptt_forward(gx, w_h, peep, w_p, h0, c0, False, carry_at)  # keep no cell states or gates
    h_carry = hs[carry_at].clone() if carry_at >= 0 else gx.new_empty(0)
    return hs[1:], h_carry, c_carry


def lstm_scan_bptt(gx: torch.Tensor, w_h: torch.Tensor, peep: torch.Tensor,
                   w_p: Optional[torch.Tensor]) -> torch.Tensor:
    """Same result as :func:`lstm_scan`; forward and backward are TorchScript loops, the backward
    written by hand (no autograd graph of T × ~15 small operations)."""
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (gx, w_h, peep, w_p)):
        return _BpttScan.apply(gx, w_h, peep, w_p, None, None, -1)[0]
    return _bptt_forward(gx, w_h, peep, w_p, None, None, False, -1)[0][1:]  # inference: keep no cell states or gates


# Which implementation PeepholeLstm uses: "loop" (autograd through Python), "jit" (autograd through
# TorchScript) or "bptt" (TorchScript loops, hand-written backward); chosen by bench/bench_nn_models.py.
SCAN_IMPL = "bptt"
SCANS = {"loop": lstm_scan, "jit": lstm_scan_jit, "bptt": lstm_scan_bptt}
#: The same three with an initial state and a carried state (``PeepholeLstm(x, state, carry_at)``).
CARRY_SCANS = {"loop": lstm_scan_from, "jit": lstm_scan_from_jit, "bptt": lstm_scan_bptt_from}


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

    def forward(self, x: torch.Tensor, state: Optional[LstmState] = None,
                carry_at: Optional[int] = None) -> torch.Tensor | tuple[torch.Tensor, LstmState]:
        """``layer(x)``: (N, T, R) from a zero state. ``layer(x, state=(h0, c0))`` starts from h0 (N, R)
        and c0 (N, H) instead; with ``carry_at=s`` (0 ≤ s ≤ T) it returns ``(y, (h_s, c_s))``, the
        state after the first s steps, which takes no gradient (see the module docstring)."""
        # One GEMM for every time step's input contribution, time-major so each step reads a contiguous slab.
        gx = torch.nn.functional.linear(x.transpose(0, 1), self.w_x, self.bias)
        if state is None and carry_at is None:
            return SCANS[SCAN_IMPL](gx, self.w_h, self.peep, self.w_p).transpose(0, 1)
        h0, c0 = state if state is not None else (None, None)
        n, num_steps = x.size(0), x.size(1)
        if h0 is not None and (tuple(h0.shape) != (n, self.output_dim) or tuple(c0.shape) != (n, self.cells)):
            raise SenoneError(f"LSTM state of shapes {tuple(h0.shape)}, {tuple(c0.shape)} for a batch of {n}: "
                              f"expected ({n}, {self.output_dim}) and ({n}, {self.cells})")
        at = -1 if carry_at is None else int(carry_at)
        if carry_at is not None and not 0 <= at <= num_steps:
            raise SenoneError(f"LSTM carry_at={carry_at}: must be a step in [0, {num_steps}]")
        scan = CARRY_SCANS.get(SCAN_IMPL, lstm_scan_from)
        h, h_carry, c_carry = scan(gx, self.w_h, self.peep, self.w_p, h0, c0, at)
        y = h.transpose(0, 1)
        return y if carry_at is None else (y, (h_carry, c_carry))

    def extra_repr(self) -> str:
        proj = f", proj={self.proj}" if self.proj is not None else ""
        return f"input_dim={self.input_dim}, cells={self.cells}{proj}, peepholes=True"

