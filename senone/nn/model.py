"""Hybrid acoustic models of the reference paper, built from its notation.

``build_model("CLstm384P256+Pooling+Lstm2000P750+3xReLU2000", layout, num_pdfs)`` returns a module
mapping feature frames ``(B, T + left + right, F)`` to pre-softmax senone scores ``(B, T, num_pdfs)``.
One data path serves every family: an FFNN (no recurrent layer) splices ±5 frames inside the model
(a valid convolution over time, so it eats 5 frames of context on either side), recurrent models see
one frame at a time and eat none. The caller supplies that context (neighbouring frames of the chunk,
or, at utterance edges, e.g. the first/last frame repeated).

Geometry, derived from the paper's #Params column (every row of Tables 1-5 within 3% of the paper,
see ``senone/nn/paper.py`` and ``steps/nn_params.py --paper``):

* Input frame: ``[num_bands static | num_bands Δ | num_bands ΔΔ | extra_dim others]``; the paper has
  31 log-mel bands (30 + energy) × 3 = 93 values, 5529 senones.
* First patch layer (Conv or CLstm): patches 8 bands wide, stride 1 (31 bands → 24 patches); a patch
  carries its bands' static, Δ and ΔΔ values (24 inputs), times the 11 spliced frames for an FFNN
  (264 inputs). ``Conv`` has 256 filters and ReLU; ``CLstm`` runs one LSTM(P) along time per patch.
* ``Pooling``: max over 3 adjacent positions, stride 3 (24 → 8 positions).
* A second patch layer reads patches 3 positions wide, stride 1 (8 → 6 positions; ``Pooling`` → 2),
  with all channels of the layer below. Width 3 is what the counts say: with it,
  2×(CLstm384P256+Pooling)+3×ReLU2000 has 22.30M parameters (paper 22.3M),
  2×(Conv+Pooling)+2×ReLU2000+Lstm2000P750 32.90M (32.9M), 2×(Conv+Pooling)+3×ReLU2000 20.36M (20.3M)
  and 2×(CLstm256+Pooling)+3×ReLU2000 21.43M (21.2M, +1.1%). Width 2 (8 → 7 → 2 positions) fits the
  last one better (21.17M) but misses the first by 1.8%; width 4 (→ 5 → 1 position) misses by up to 3%.
* Features in ``extra_dim`` (pitch) are not spectral: they bypass the patch layers and are appended
  to the input of the first frame layer (Lstm/ReLU/Maxout, or the output layer if there is none),
  for all 11 spliced frames of an FFNN. In a model without patch layers they are simply part of the
  frame vector.
* Output layer: linear to ``num_pdfs`` (softmax belongs to the loss and to decoding).

``width_scale`` multiplies every width (cells, projections, units, filters) and rounds (≥ 1), giving
CPU-sized versions of the paper's models with the same shape; patch geometry and the output stay.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import nn

from senone import SenoneError
from senone.nn.layers import MaxoutLayer, PatchConv, PatchLstm, PatchMaxPool, ReLULayer, init_linear
from senone.nn.lstm import LstmState, PeepholeLstm, lstm_num_params
from senone.nn.spec import (CLstmSpec, ConvSpec, LayerSpec, LstmSpec, MaxoutSpec, PoolingSpec, ReLUSpec,
                            parse_spec)

FFNN_CONTEXT = 5  # "concatenating the current frame with 5 frames in its left and right contexts"
FIRST_PATCH_WIDTH = 8  # bands per patch of the first patch layer (31 bands → 24 patches)
NEXT_PATCH_WIDTH = 3  # positions per patch of any later patch layer (derivation in the module docstring)

#: A recurrent model's state between chunks: one (h, c) per LSTM/CLSTM layer, bottom up (see AcousticModel).
ModelState = list[LstmState]


@dataclass(frozen=True)
class InputLayout:
    """How one input frame is laid out: ``num_streams`` blocks of ``num_bands`` (static, Δ, ΔΔ...),
    then ``extra_dim`` non-spectral values (e.g. 3 pitch features)."""

    num_bands: int = 31
    num_streams: int = 3
    extra_dim: int = 0

    def __post_init__(self) -> None:
        if self.num_bands < 1 or self.num_streams < 1 or self.extra_dim < 0:
            raise SenoneError(f"bad input layout {self}: need num_bands >= 1, num_streams >= 1, extra_dim >= 0")

    @property
    def spectral_dim(self) -> int:
        return self.num_bands * self.num_streams

    @property
    def feat_dim(self) -> int:
        """F, the number of values per input frame."""
        return self.spectral_dim + self.extra_dim


@dataclass(frozen=True)
class LayerPlan:
    """Shape of one layer: what it reads and writes (per patch/position for patch layers) and its size."""

    spec: LayerSpec | None  # None: the output layer
    input_dim: int  # per patch for patch layers
    output_dim: int  # per position for patch layers
    num_params: int
    positions: tuple[int, int] | None = None  # (in, out) positions of a patch layer
    patch_width: int | None = None

    def describe(self) -> str:
        name = "Output" if self.spec is None else str(self.spec)
        if self.positions is None:
            return f"{name}: {self.input_dim} -> {self.output_dim}, {self.num_params:,} params"
        p_in, p_out = self.positions
        patch = ""
        if self.patch_width:
            patch = f"patches of {self.patch_width} × {self.input_dim // self.patch_width} values -> "
        return (f"{name}: {p_in} -> {p_out} positions, {patch}{self.output_dim} per position, "
                f"{self.num_params:,} params")


@dataclass(frozen=True)
class ModelPlan:
    """Every layer's geometry for a spec at given input dimensions: count parameters without tensors."""

    spec: str
    layout: InputLayout
    num_pdfs: int
    width_scale: float
    layers: tuple[LayerPlan, ...]  # the last one is the output layer
    is_recurrent: bool

    @property
    def context(self) -> int:
        return 0 if self.is_recurrent else FFNN_CONTEXT

    @property
    def frames(self) -> int:
        """Input frames one output frame sees at the input (11 for an FFNN, 1 for recurrent models)."""
        return 2 * self.context + 1

    @property
    def num_params(self) -> int:
        return sum(layer.num_params for layer in self.layers)

    @property
    def num_patch_layers(self) -> int:
        return sum(1 for layer in self.layers if layer.positions is not None)


def plan_model(spec: str, layout: InputLayout, num_pdfs: int, width_scale: float = 1.0) -> ModelPlan:
    """Walk the spec, tracking positions and widths, and size every layer (no tensors are made)."""
    if num_pdfs < 1:
        raise SenoneError(f"num_pdfs must be >= 1, got {num_pdfs}")
    layers = [layer.scaled(width_scale) for layer in parse_spec(spec)]
    recurrent = any(layer.recurrent for layer in layers)
    frames = 1 if recurrent else 2 * FFNN_CONTEXT + 1
    positions, channels = layout.num_bands, layout.num_streams * frames
    width = FIRST_PATCH_WIDTH
    dim: int | None = None  # flat frame dimension once past the patch layers
    plans: list[LayerPlan] = []
    for k, layer in enumerate(layers):
        if layer.patch_layer:
            if isinstance(layer, PoolingSpec):
                out_pos = positions // layer.size
                if out_pos < 1:
                    raise SenoneError(f"network spec {spec!r}: layer {k + 1} (Pooling) gets {positions} "
                                      f"position(s), fewer than its size {layer.size}")
                plans.append(LayerPlan(layer, channels, channels, 0, (positions, out_pos)))
                positions = out_pos
                continue
            if positions < width:
                raise SenoneError(f"network spec {spec!r}: layer {k + 1} ({layer}) needs patches {width} "
                                  f"positions wide but gets {positions} position(s) "
                                  f"(input: {layout.num_bands} bands)")
            in_dim, out_pos = width * channels, positions - width + 1
            if isinstance(layer, ConvSpec):
                out, n = layer.filters, in_dim * layer.filters + layer.filters
            else:
                out = layer.proj if layer.proj is not None else layer.cells
                n = lstm_num_params(in_dim, layer.cells, layer.proj)
            plans.append(LayerPlan(layer, in_dim, out, n, (positions, out_pos), width))
            positions, channels, width = out_pos, out, NEXT_PATCH_WIDTH
            continue
        if dim is None:
            dim = _first_frame_dim(plans, layout, frames, positions, channels)
        if isinstance(layer, LstmSpec):
            out = layer.proj if layer.proj is not None else layer.cells
            plans.append(LayerPlan(layer, dim, out, lstm_num_params(dim, layer.cells, layer.proj)))
        elif isinstance(layer, ReLUSpec):
            out = layer.units
            plans.append(LayerPlan(layer, dim, out, dim * out + out))
        elif isinstance(layer, MaxoutSpec):
            out, pieces = layer.units, layer.units * layer.group
            plans.append(LayerPlan(layer, dim, out, dim * pieces + pieces))
        else:  # pragma: no cover - parse_spec only returns the kinds above
            raise TypeError(layer)
        dim = out
    if dim is None:
        dim = _first_frame_dim(plans, layout, frames, positions, channels)
    plans.append(LayerPlan(None, dim, num_pdfs, dim * num_pdfs + num_pdfs))
    return ModelPlan(spec, layout, num_pdfs, width_scale, tuple(plans), recurrent)


def _first_frame_dim(plans: list[LayerPlan], layout: InputLayout, frames: int, positions: int,
                     channels: int) -> int:
    """Input size of the first frame layer: the flattened map plus the bypassing extra features,
    or the whole (spliced) input frame when there are no patch layers."""
    if not plans:
        return frames * layout.feat_dim
    return positions * channels + frames * layout.extra_dim


class AcousticModel(nn.Module):
    """(B, T + left + right, F) features → (B, T, num_pdfs) pre-softmax scores, for one spec.

    Attributes the trainer and decoder use: ``spec``, ``left_context``/``right_context`` (input
    frames consumed on either side: 5/5 for FFNNs, 0/0 for recurrent models), ``is_recurrent``,
    ``layout``, ``num_pdfs``, ``plan`` (per-layer geometry).
    """

    def __init__(self, plan: ModelPlan):
        super().__init__()
        self.plan = plan
        self.spec = plan.spec
        self.layout = plan.layout
        self.num_pdfs = plan.num_pdfs
        self.width_scale = plan.width_scale
        self.is_recurrent = plan.is_recurrent
        self.left_context = self.right_context = plan.context
        self.patch_layers = nn.ModuleList()
        self.frame_layers = nn.ModuleList()
        for lp in plan.layers[:-1]:
            s = lp.spec
            if isinstance(s, ConvSpec):
                self.patch_layers.append(PatchConv(lp.patch_width, lp.input_dim // lp.patch_width, s.filters))
            elif isinstance(s, CLstmSpec):
                self.patch_layers.append(PatchLstm(lp.patch_width, lp.input_dim // lp.patch_width, s.cells, s.proj))
            elif isinstance(s, PoolingSpec):
                self.patch_layers.append(PatchMaxPool(s.size))
            elif isinstance(s, LstmSpec):
                self.frame_layers.append(PeepholeLstm(lp.input_dim, s.cells, s.proj))
            elif isinstance(s, ReLUSpec):
                self.frame_layers.append(ReLULayer(lp.input_dim, s.units))
            elif isinstance(s, MaxoutSpec):
                self.frame_layers.append(MaxoutLayer(lp.input_dim, s.units, s.group))
        out = plan.layers[-1]
        self.output = init_linear(nn.Linear(out.input_dim, out.output_dim), relu=False)

    @property
    def config(self) -> dict:
        """What rebuilds this network (JSON-able; store it next to the state_dict):
        ``build_model(**config)``."""
        return {"spec": self.spec, "layout": dataclasses.asdict(self.layout), "num_pdfs": self.num_pdfs,
                "width_scale": self.width_scale}

    @property
    def takes_state(self) -> bool:
        """Whether ``forward`` takes and hands back a recurrent state (training with ``carry_state``)."""
        return self.is_recurrent

    @property
    def num_recurrent_layers(self) -> int:
        """How many (h, c) pairs a state of this model holds: one per LSTM or CLSTM layer."""
        layers = [*self.patch_layers, *self.frame_layers]
        return sum(1 for layer in layers if isinstance(layer, (PatchLstm, PeepholeLstm)))

    def forward(self, x: torch.Tensor, state: ModelState | None = None,
                carry_at: int | None = None) -> torch.Tensor | tuple[torch.Tensor, ModelState]:
        """Scores (B, T, num_pdfs) of the input (B, T + left + right, F), every recurrent layer from a
        zero state.

        Truncated BPTT with a carried state (recurrent models): ``state`` is a list with one
        ``(h, c)`` per recurrent layer, bottom up (a CLSTM's as (B, P', ·), an LSTM's as (B, ·); None
        = zeros), the rows being the batch's rows; with ``carry_at=s`` the call returns
        ``(scores, new_state)``, ``new_state`` being every layer's state after the first s frames
        (non-differentiable: BPTT is truncated there). The plain call is unchanged by all this.
        """
        layout = self.layout
        if x.dim() != 3 or x.size(-1) != layout.feat_dim:
            raise SenoneError(f"model {self.spec!r} expects input (batch, frames, {layout.feat_dim}) "
                              f"for {layout}, got {tuple(x.shape)}")
        context = self.left_context + self.right_context
        if x.size(1) <= context:
            raise SenoneError(f"model {self.spec!r} consumes {self.left_context}+{self.right_context} "
                              f"context frames; input has only {x.size(1)} frame(s)")
        if state is not None and len(state) != self.num_recurrent_layers:
            raise SenoneError(f"model {self.spec!r} has {self.num_recurrent_layers} recurrent layer(s) but the state "
                              f"given holds {len(state)}")
        b = x.size(0)
        new_state: ModelState = []
        if self.is_recurrent:
            frames = x.unsqueeze(2)  # (B, T, 1, F)
        else:
            frames = x.unfold(1, context + 1, 1).transpose(2, 3)  # (B, T, 11, F): frame t-5 .. t+5
        t, n = frames.size(1), frames.size(2)
        if len(self.patch_layers):
            s = layout.spectral_dim
            # (B, T, n, streams, bands) → (B, T, bands, n·streams): per band, its values over frames and streams
            h = frames[..., :s].reshape(b, t, n, layout.num_streams, layout.num_bands)
            h = h.permute(0, 1, 4, 2, 3).reshape(b, t, layout.num_bands, n * layout.num_streams)
            for layer in self.patch_layers:
                h = self._run(layer, h, state, carry_at, new_state)
            h = h.reshape(b, t, -1)
            if layout.extra_dim:
                h = torch.cat([h, frames[..., s:].reshape(b, t, n * layout.extra_dim)], dim=-1)
        else:
            h = frames.reshape(b, t, n * layout.feat_dim)
        for layer in self.frame_layers:
            h = self._run(layer, h, state, carry_at, new_state)
        y = self.output(h)
        return y if carry_at is None else (y, new_state)

    @staticmethod
    def _run(layer: nn.Module, h: torch.Tensor, state: ModelState | None, carry_at: int | None,
             new_state: ModelState) -> torch.Tensor:
        """One layer; a recurrent one takes the next state of ``state`` and appends its carried state."""
        if not isinstance(layer, (PatchLstm, PeepholeLstm)) or (state is None and carry_at is None):
            return layer(h)
        layer_state = state[len(new_state)] if state is not None else None
        if carry_at is None:
            new_state.append(layer_state)  # counts the layers (nothing is carried)
            return layer(h, layer_state)
        h, carried = layer(h, layer_state, carry_at)
        new_state.append(carried)
        return h


def build_model(spec: str, layout: InputLayout | dict, num_pdfs: int, width_scale: float = 1.0) -> AcousticModel:
    """The network ``spec`` (the paper's notation) for input ``layout`` and ``num_pdfs`` senones,
    initialised from torch's global generator (seed it for a reproducible network).
    ``layout`` may be a dict (as in :attr:`AcousticModel.config`)."""
    if isinstance(layout, dict):
        layout = InputLayout(**layout)
    return AcousticModel(plan_model(spec, layout, num_pdfs, width_scale))


def count_params(spec: str, layout: InputLayout, num_pdfs: int, width_scale: float = 1.0) -> int:
    """Number of trainable parameters of ``build_model(spec, ...)``, computed from shapes alone."""
    return plan_model(spec, layout, num_pdfs, width_scale).num_params
