"""senone.nn: the paper's network notation, model geometry (#Params vs the paper), LSTM equations,
CLSTM weight sharing, causality, context, pitch bypass, determinism, width_scale."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from senone import SenoneError
from senone.nn.spec import (CLstmSpec, ConvSpec, LstmSpec, MaxoutSpec, PoolingSpec, ReLUSpec, format_spec,
                            parse_spec)

C, P, R = ConvSpec, PoolingSpec(), ReLUSpec


# -- notation ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("spec, expected", [
    ("4xReLU2000", [R(2000)] * 4),
    ("4xMaxout800G3", [MaxoutSpec(800, 3)] * 4),
    ("2x(Conv+Pooling)+3xReLU2000", [C(), P, C(), P] + [R(2000)] * 3),
    ("Lstm750", [LstmSpec(750)]),
    ("Lstm2000P750", [LstmSpec(2000, 750)]),
    ("Lstm750+3xReLU2000", [LstmSpec(750)] + [R(2000)] * 3),
    ("3xLstm2000P750", [LstmSpec(2000, 750)] * 3),
    ("2x(Conv+Pooling)+2xReLU2000+Lstm2000P750", [C(), P, C(), P, R(2000), R(2000), LstmSpec(2000, 750)]),
    ("Conv+Pooling+Lstm2000P750+3xReLU2000", [C(), P, LstmSpec(2000, 750)] + [R(2000)] * 3),
    ("CLstm128+3xReLU2000", [CLstmSpec(128)] + [R(2000)] * 3),
    ("CLstm128+Pooling+3xReLU2000", [CLstmSpec(128), P] + [R(2000)] * 3),
    ("CLstm256P128+Pooling+3xReLU2000", [CLstmSpec(256, 128), P] + [R(2000)] * 3),
    ("2x(CLstm256+Pooling)+3xReLU2000", [CLstmSpec(256), P] * 2 + [R(2000)] * 3),
    ("2x(CLstm384P256+Pooling)+3xReLU2000", [CLstmSpec(384, 256), P] * 2 + [R(2000)] * 3),
    ("CLstm384P256+Pooling+Lstm2000P750+3xReLU2000",
     [CLstmSpec(384, 256), P, LstmSpec(2000, 750)] + [R(2000)] * 3),
    ("Conv128+Pooling+ReLU10", [C(128), P, R(10)]),
    ("2x(2x(Conv+Conv)+Pooling)", ([C(), C()] * 2 + [P]) * 2),
])
def test_parses_the_papers_notation(spec, expected):
    assert parse_spec(spec) == expected
    assert parse_spec(spec.replace("x", "×").replace("Ma×out", "Maxout")) == expected
    assert ConvSpec() == ConvSpec(256)  # bare "Conv" is the paper's 256 filters


@pytest.mark.parametrize("spaced", [
    "2 × (Conv + Pooling) + 3×ReLU2000",
    " 2x( Conv+ Pooling )+3 x ReLU 2000 ",
    "2\t×(Conv\n+Pooling)+3×Re LU2000",
])
def test_spaces_anywhere(spaced):
    assert parse_spec(spaced) == parse_spec("2x(Conv+Pooling)+3xReLU2000")


def test_format_round_trips():
    layers = parse_spec("2x(CLstm384P256+Pooling)+Conv64+Lstm750+Maxout800G3")
    assert parse_spec(format_spec(layers)) == layers
    assert format_spec(parse_spec("2x(Conv+Pooling)")) == "Conv+Pooling+Conv+Pooling"


@pytest.mark.parametrize("spec, column, words", [
    ("4xReLU", 7, ["number of units after 'ReLU'", "end of the spec"]),
    ("Lstm2000P", 10, ["projection size after 'P'"]),
    ("2x(Conv+Pooling", 16, ["expected ')'", "character 3"]),
    ("CLstm256+Pooling+Relu2000", 18, ["unknown layer 'Relu2000'", "did you mean 'ReLU'"]),
    ("Pooling+3xReLU2000", 1, ["Pooling must directly follow a Conv or CLstm"]),
    ("ReLU2000+Pooling", 10, ["Pooling after ReLU2000"]),
    ("Lstm750+CLstm128", 9, ["must come before any Lstm, ReLU or Maxout"]),
    ("Maxout800", 10, ["expected 'G'"]),
    ("3ReLU2000", 2, ["'x' or '×' after the repeat count 3"]),
    ("0xReLU2000", 1, ["repeat count must be at least 1"]),
    ("ReLU0", 5, ["at least 1"]),
    ("ReLU2000)", 9, ["unexpected ')'"]),
    ("ReLU2000++ReLU2000", 10, ["unexpected '+'"]),
    ("", 1, ["empty spec"]),
    ("4 x ReLU", 9, ["number of units"]),  # the column is the original string's, spaces included
])
def test_malformed_spec_points_at_the_token(spec, column, words):
    with pytest.raises(SenoneError) as err:
        parse_spec(spec)
    msg = str(err.value)
    assert f"bad network spec {spec!r} at character {column}:" in msg
    for w in words:
        assert w in msg
    # the caret line sits under the offending character of the quoted spec
    quoted, caret = msg.splitlines()[-2:]
    assert quoted == f"  {spec}" and caret == "  " + " " * (column - 1) + "^"
    if spec:
        assert "expected" in msg or "must" in msg


# -- parameter counts against the paper ---------------------------------------------------------------

from senone.nn import lstm as lstm_mod  # noqa: E402
from senone.nn.layers import PatchLstm  # noqa: E402
from senone.nn.lstm import PeepholeLstm  # noqa: E402
from senone.nn.model import InputLayout, build_model, count_params, plan_model  # noqa: E402
from senone.nn.paper import PAPER_LAYOUT, PAPER_NUM_PDFS, PAPER_TABLES, PARAMS_TOLERANCE, paper_rows  # noqa: E402

ROWS = list(paper_rows())


def test_paper_tables_as_printed():
    assert [t.number for t in PAPER_TABLES] == [1, 2, 3, 4, 5]
    assert [len(t.rows) for t in PAPER_TABLES] == [3, 8, 4, 3, 4]
    assert PAPER_LAYOUT.feat_dim == 93 and PAPER_NUM_PDFS == 5529
    best = min(ROWS, key=lambda r: r.cer)
    assert (best.key, best.spec, best.cer) == ("T5.4", "CLstm384P256+Pooling+Lstm2000P750+3xReLU2000", 31.43)
    for row in ROWS:
        parse_spec(row.spec)  # every printed name is valid notation


@pytest.mark.parametrize("row", ROWS, ids=[f"{r.key}:{r.spec}" for r in ROWS])
def test_params_match_the_paper(row):
    ours = count_params(row.count_spec, PAPER_LAYOUT, PAPER_NUM_PDFS)
    assert abs(ours / (row.params_m * 1e6) - 1) <= PARAMS_TOLERANCE


def test_the_row_whose_printed_count_does_not_add_up():
    """T2.6 as printed is one ReLU layer (4.0M) larger than its count; the other rows pin every part."""
    (row,) = [r for r in ROWS if r.params_spec]
    assert row.key == "T2.6"
    printed = count_params(row.spec, PAPER_LAYOUT, PAPER_NUM_PDFS)
    assert printed - count_params(row.params_spec, PAPER_LAYOUT, PAPER_NUM_PDFS) == 2000 * 2000 + 2000
    assert abs(printed / 42.34e6 - 1) < 1e-3


@pytest.mark.parametrize("spec", [
    "4xReLU2000", "4xMaxout800G3", "2x(Conv+Pooling)+3xReLU2000", "Lstm2000P750+3xReLU2000",
    "2x(CLstm384P256+Pooling)+3xReLU2000", "CLstm256P128+Pooling+Lstm2000P750+3xReLU2000", "CLstm128+Lstm750",
])
@pytest.mark.parametrize("extra", [0, 3])
def test_count_params_equals_the_built_model(spec, extra):
    layout = InputLayout(31, 3, extra)
    model = build_model(spec, layout, num_pdfs=40, width_scale=0.05)
    assert count_params(spec, layout, 40, 0.05) == sum(p.numel() for p in model.parameters())


def test_geometry_of_second_level_patch_layers():
    plan = plan_model("2x(CLstm384P256+Pooling)+3xReLU2000", PAPER_LAYOUT, PAPER_NUM_PDFS)
    assert [lp.positions for lp in plan.layers[:4]] == [(31, 24), (24, 8), (8, 6), (6, 2)]
    assert [lp.input_dim for lp in plan.layers[:5]] == [24, 256, 3 * 256, 256, 2 * 256]
    ffnn = plan_model("2x(Conv+Pooling)+3xReLU2000", InputLayout(31, 3, 3), PAPER_NUM_PDFS)
    assert ffnn.layers[0].input_dim == 8 * 3 * 11  # 8 bands × 3 streams × 11 spliced frames
    assert ffnn.layers[4].input_dim == 2 * 256 + 11 * 3  # pooled map + the 11 frames' pitch values


def test_too_many_patch_layers_for_the_bands():
    with pytest.raises(SenoneError, match=r"layer 5 \(CLstm8\) needs patches 3 positions wide but gets 2"):
        plan_model("3x(CLstm8+Pooling)", PAPER_LAYOUT, 10)
    with pytest.raises(SenoneError, match="needs patches 8 positions wide but gets 6"):
        count_params("Conv+ReLU10", InputLayout(6, 3, 0), 10)


# -- forward: shapes, context, causality ---------------------------------------------------------------

FAMILIES = ["3xReLU64", "2xMaxout16G3", "2x(Conv16+Pooling)+ReLU32", "Lstm24", "Lstm32P12+ReLU32",
            "2x(Conv16+Pooling)+ReLU32+Lstm24P8", "CLstm8+ReLU32", "2x(CLstm12P6+Pooling)+ReLU32",
            "CLstm8P4+Pooling+Lstm24P8+2xReLU32"]


@pytest.mark.parametrize("spec", FAMILIES)
def test_output_shapes_and_context(spec):
    torch.manual_seed(0)
    layout = InputLayout(31, 3, 3)
    model = build_model(spec, layout, num_pdfs=11)
    recurrent = "Lstm" in spec
    assert model.is_recurrent == recurrent and model.spec == spec
    assert (model.left_context, model.right_context) == ((0, 0) if recurrent else (5, 5))
    x = torch.randn(4, 9 + model.left_context + model.right_context, layout.feat_dim, requires_grad=True)
    y = model(x)
    assert y.shape == (4, 9, 11)
    y.square().mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
    # a whole utterance at test time
    assert model(torch.randn(1, 57 + 2 * model.left_context, layout.feat_dim)).shape == (1, 57, 11)


@pytest.mark.parametrize("spec", ["3xReLU64", "2x(Conv16+Pooling)+ReLU32"])
def test_ffnn_sees_exactly_plus_minus_five_frames(spec):
    torch.manual_seed(0)
    model = build_model(spec, InputLayout(31, 3, 0), num_pdfs=7)
    x = torch.randn(1, 30, 93)
    y = model(x)  # output t sees input frames t .. t+10 (input t+5 is its centre)
    for k in (0, 12, 29):
        x2 = x.clone()
        x2[0, k] += 1.0
        changed = (model(x2) - y).abs().amax(dim=-1)[0] > 1e-6
        assert changed.nonzero().flatten().tolist() == [t for t in range(20) if t <= k <= t + 10]


@pytest.mark.parametrize("spec", ["Lstm16P8", "CLstm8+ReLU16", "Conv8+Pooling+Lstm16", "CLstm6P4+Pooling+Lstm12P6"])
def test_recurrent_models_are_causal(spec):
    torch.manual_seed(0)
    model = build_model(spec, InputLayout(31, 3, 3), num_pdfs=7)
    x = torch.randn(2, 20, 96)
    y = model(x)
    x2 = x.clone()
    x2[:, 12:] = torch.randn(2, 8, 96)
    y2 = model(x2)
    assert torch.equal(y[:, :12], y2[:, :12])  # the past is untouched by the future
    assert (y[:, 12:] - y2[:, 12:]).abs().amax() > 1e-4  # and the present does see its input


def test_bad_input_shape_is_a_clear_error():
    model = build_model("3xReLU16", InputLayout(31, 3, 3), num_pdfs=7)
    with pytest.raises(SenoneError, match=r"expects input \(batch, frames, 96\)"):
        model(torch.randn(2, 20, 93))
    with pytest.raises(SenoneError, match="consumes 5\\+5 context frames; input has only 10"):
        model(torch.randn(2, 10, 96))


# -- the LSTM equations ------------------------------------------------------------------------------------

def _sigmoid(v):
    return 1.0 / (1.0 + np.exp(-v))


def reference_lstm(x, w_x, w_h, b, w_ci, w_cf, w_co, w_p):
    """Eqs. 3-8 one step at a time, one gate at a time, in float64 numpy (gate order i, f, a, o)."""
    cells = w_ci.shape[0]
    wxi, wxf, wxc, wxo = np.split(w_x, 4)
    whi, whf, whc, who = np.split(w_h, 4)
    bi, bf, bc, bo = np.split(b, 4)
    h = np.zeros(w_h.shape[1])
    c = np.zeros(cells)
    out = []
    for x_t in x:
        i = _sigmoid(wxi @ x_t + whi @ h + w_ci * c + bi)  # (3)
        f = _sigmoid(wxf @ x_t + whf @ h + w_cf * c + bf)  # (4)
        a = np.tanh(wxc @ x_t + whc @ h + bc)  # (5)
        c = f * c + i * a  # (6)
        o = _sigmoid(wxo @ x_t + who @ h + w_co * c + bo)  # (7): peeks at c_t
        m = o * np.tanh(c)  # (8)
        h = m if w_p is None else w_p @ m
        out.append(h)
    return np.stack(out)


@pytest.mark.parametrize("proj", [None, 3])
@pytest.mark.parametrize("impl", ["bptt", "jit", "loop"])
def test_lstm_equals_equations_3_to_8(proj, impl, monkeypatch):
    monkeypatch.setattr(lstm_mod, "SCAN_IMPL", impl)
    torch.manual_seed(3)
    layer = PeepholeLstm(4, 5, proj).double()
    with torch.no_grad():  # non-trivial peepholes and biases, so every term of the equations matters
        layer.peep.uniform_(-1.5, 1.5)
        layer.bias.uniform_(-0.5, 0.5)
    x = torch.randn(2, 6, 4, dtype=torch.float64)
    y = layer(x).detach().numpy()
    p = {k: v.detach().numpy() for k, v in layer.named_parameters()}
    for n in range(2):
        ref = reference_lstm(x[n].numpy(), p["w_x"], p["w_h"], p["bias"], *p["peep"], p.get("w_p"))
        np.testing.assert_allclose(y[n], ref, rtol=1e-12, atol=1e-12)
    # the peepholes do change the result (the check above is not blind to them)
    no_peep = reference_lstm(x[0].numpy(), p["w_x"], p["w_h"], p["bias"], *np.zeros_like(p["peep"]), p.get("w_p"))
    assert np.abs(no_peep - y[0]).max() > 1e-3


@pytest.mark.parametrize("proj", [None, 3])
def test_hand_written_bptt_equals_autograd(proj):
    torch.manual_seed(1)
    cells, rec = 6, proj or 6
    args = [torch.randn(5, 4, 4 * cells, dtype=torch.float64, requires_grad=True),
            torch.randn(4 * cells, rec, dtype=torch.float64, requires_grad=True),
            torch.randn(3, cells, dtype=torch.float64, requires_grad=True),
            torch.randn(rec, cells, dtype=torch.float64, requires_grad=True) if proj else None]
    assert torch.autograd.gradcheck(lstm_mod.lstm_scan_bptt, args)
    present = [a for a in args if a is not None]
    grad_out = torch.randn(5, 4, rec, dtype=torch.float64)
    ours = torch.autograd.grad(lstm_mod.lstm_scan_bptt(*args), present, grad_out)
    ref = torch.autograd.grad(lstm_mod.lstm_scan(*args), present, grad_out)
    for a, b in zip(ours, ref):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    with torch.no_grad():  # inference path (keeps no states) gives the same outputs, up to the last bit: once
        # TorchScript's profiling executor has optimised the graph (after earlier calls in the same process)
        # its fused element-wise ops may round differently
        torch.testing.assert_close(lstm_mod.lstm_scan_bptt(*args), lstm_mod.lstm_scan(*args), rtol=1e-12, atol=1e-14)


def test_lstm_initialisation():
    torch.manual_seed(0)
    layer = PeepholeLstm(10, 6, 4)
    assert torch.equal(layer.bias[6:12], torch.ones(6))  # forget gate starts open
    assert torch.equal(layer.bias[:6], torch.zeros(6)) and torch.equal(layer.bias[12:], torch.zeros(12))
    assert torch.equal(layer.peep, torch.zeros(3, 6))
    assert layer.w_x.abs().max() <= (6 / (10 + 6)) ** 0.5  # Glorot bound of one gate block
    assert layer.w_p.shape == (4, 6) and layer.w_h.shape == (24, 4)


# -- CLSTM: one LSTM shared by every patch -------------------------------------------------------------

def test_clstm_identical_patches_give_identical_outputs():
    torch.manual_seed(0)
    layer = PatchLstm(width=8, in_channels=3, cells=5, proj=None)
    band = torch.randn(2, 7, 1, 3)
    y = layer(band.expand(2, 7, 31, 3).contiguous())  # every band the same → every patch the same
    assert y.shape == (2, 7, 24, 5)
    assert torch.allclose(y, y[:, :, :1].expand_as(y), atol=1e-6, rtol=0)
    assert y[:, 1:].abs().amax() > 1e-3  # not trivially zero


def test_clstm_shifting_bands_shifts_patch_outputs():
    torch.manual_seed(0)
    layer = PatchLstm(width=8, in_channels=3, cells=5, proj=4)
    x = torch.randn(2, 7, 32, 3)
    y_lo, y_hi = layer(x[:, :, :31]), layer(x[:, :, 1:])
    assert torch.allclose(y_lo[:, :, 1:], y_hi[:, :, :-1], atol=1e-6, rtol=0)


def test_clstm_params_do_not_depend_on_the_number_of_patches():
    counts = {bands: plan_model("CLstm64P32+Pooling+ReLU10", InputLayout(bands, 3, 0), 10).layers[0].num_params
              for bands in (10, 20, 31, 40)}
    assert len(set(counts.values())) == 1
    assert counts[31] == 4 * 64 * (24 + 32) + 7 * 64 + 64 * 32


# -- input layout: patches of static/Δ/ΔΔ, pitch bypass --------------------------------------------------

def _patch_output(model, x):
    captured = {}
    handle = model.patch_layers[0].register_forward_hook(lambda m, i, o: captured.update(y=o))
    model(x)
    handle.remove()
    return captured["y"]


@pytest.mark.parametrize("spec", ["Conv4+ReLU8", "CLstm4+ReLU8"])
def test_patches_hold_all_streams_of_eight_bands_and_pitch_bypasses_them(spec):
    torch.manual_seed(0)
    layout = InputLayout(31, 3, 3)
    model = build_model(spec, layout, num_pdfs=5)
    ctx = model.left_context
    x = torch.randn(1, 3 + 2 * ctx, layout.feat_dim)
    y = _patch_output(model, x)
    for stream in range(3):
        x2 = x.clone()
        x2[:, :, stream * 31 + 10] += 1.0  # band 10 of the static, Δ or ΔΔ block
        changed = (_patch_output(model, x2) - y).abs().amax(dim=(0, 1, 3)) > 1e-7
        assert changed.nonzero().flatten().tolist() == list(range(3, 11))  # patches 3..10 contain band 10
    x3 = x.clone()
    x3[:, :, 93:] += 1.0  # pitch
    assert torch.equal(_patch_output(model, x3), y)  # never seen by the patch layer...
    assert (model(x3) - model(x)).abs().amax() > 1e-5  # ...but by the first frame layer
    first = model.frame_layers[0].linear
    assert first.in_features == 24 * 4 + (11 if ctx else 1) * 3
    with torch.no_grad():
        first.weight[:, 24 * 4:] = 0
    assert torch.allclose(model(x3), model(x), atol=1e-6, rtol=0)  # those columns are the only way in


# -- determinism, width_scale ------------------------------------------------------------------------------

def test_same_seed_same_network_and_outputs():
    x = torch.randn(3, 10, 93)
    nets = []
    for seed in (5, 5, 6):
        torch.manual_seed(seed)
        nets.append(build_model("CLstm8P4+Pooling+Lstm16P8+ReLU16", PAPER_LAYOUT, 9))
    a, b, c = (dict(n.state_dict()) for n in nets)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)
    assert torch.equal(nets[0](x), nets[1](x))
    assert torch.equal(nets[0](x), nets[0](x))  # no state carried from one call to the next
    for net in nets[:2]:  # training steps are reproducible too (the hand-written BPTT included)
        net(x).square().mean().backward()
    assert all(torch.equal(p.grad, q.grad) for p, q in zip(nets[0].parameters(), nets[1].parameters()))


def test_width_scale():
    plan = plan_model("CLstm384P256+Pooling+Lstm2000P750+Maxout800G3", PAPER_LAYOUT, 5529, width_scale=0.25)
    assert [str(lp.spec) for lp in plan.layers[:-1]] == ["CLstm96P64", "Pooling", "Lstm500P188", "Maxout200G3"]
    assert plan.layers[-1].output_dim == 5529  # the output layer is not scaled
    assert str(plan_model("Conv+ReLU2000", PAPER_LAYOUT, 10, 0.125).layers[0].spec) == "Conv32"
    assert str(plan_model("Lstm3P2", PAPER_LAYOUT, 10, 0.01).layers[0].spec) == "Lstm1P1"  # never below 1
    assert count_params("4xReLU2000", PAPER_LAYOUT, 5529, 1.0) == 25_117_529
    assert count_params("4xReLU2000", PAPER_LAYOUT, 5529, 0.5) == 1023 * 1000 + 1000 + 3 * 1001000 + 1000 * 5529 + 5529
    with pytest.raises(SenoneError, match="width_scale must be > 0"):
        count_params("4xReLU2000", PAPER_LAYOUT, 5529, 0)


def test_nn_params_cli():
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    run = lambda *a: subprocess.run([sys.executable, "-m", "steps.nn_params", *a], cwd=root,  # noqa: E731
                                    capture_output=True, text=True)
    out = run("Lstm2000P750", "--detail", "--paper")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "Lstm2000P750\t12410279\t12.41M" and "93 -> 750" in lines[1]
    table = lines[lines.index("row\tspec\tours\tpaper\trel_diff") + 1:]
    assert len(table) == len(ROWS)
    assert table[0].split("\t") == ["T1.1", "4xReLU2000", "25.12M", "25.1M", "+0.1%"]
    bad = run("4xReLU")
    assert bad.returncode == 2 and "bad network spec '4xReLU' at character 7" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_config_rebuilds_the_network(tmp_path):
    import json

    torch.manual_seed(0)
    model = build_model("CLstm8P4+Pooling+ReLU16", InputLayout(31, 3, 3), 9, width_scale=0.5)
    torch.save(model.state_dict(), tmp_path / "model.pt")
    config = json.loads(json.dumps(model.config))
    again = build_model(**config)
    again.load_state_dict(torch.load(tmp_path / "model.pt"))
    x = torch.randn(2, 6, 96)
    assert torch.equal(model(x), again(x)) and again.spec == model.spec and again.width_scale == 0.5
