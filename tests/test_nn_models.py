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
