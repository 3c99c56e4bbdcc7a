"""The paper's network notation, parsed: ``"CLstm384P256+Pooling+Lstm2000P750+3×ReLU2000"`` → layer specs.

The tables of the reference paper name every network by a compact string (``4×ReLU2000``,
``2×(Conv + Pooling) + 3×ReLU2000``, ``Lstm2000P750``...). Keeping exactly that notation as the
configuration language means a recipe names a model the way the paper's table prints it, and a
table row can be trained by copying its first column.

Grammar (spaces are ignored anywhere; ``x`` and ``×`` both mean "repeat")::

    spec  := term ('+' term)*
    term  := [COUNT ('x' | '×')] (layer | '(' spec ')')
    layer := 'Conv' [N]                  convolution over frequency patches, N filters (default 256)
           | 'Pooling'                   max-pooling of size 3 over patch positions
           | 'CLstm' CELLS ['P' PROJ]    LSTM(P) run along time on every frequency patch (weights shared)
           | 'Lstm' CELLS ['P' PROJ]     LSTM(P) with peepholes
           | 'ReLU' UNITS                fully connected rectified linear layer
           | 'Maxout' UNITS 'G' GROUP    fully connected maxout layer (UNITS groups of GROUP pieces)

Layer names are case-sensitive (``Relu2000`` is a typo, not a synonym), so a misspelt spec fails
here, with the offending token marked, instead of silently training another network. Ordering rules
(patch layers before frame layers, ``Pooling`` only after a patch layer) are checked too.
"""

from __future__ import annotations

import difflib
import math
import re
from dataclasses import dataclass, replace

from senone import SenoneError

DEFAULT_CONV_FILTERS = 256  # "the convolutional layers has 256 units" (paper, section 4.2)
POOL_SIZE = 3  # "the pooling size is 3" (sections 4.2 and 4.3)


def scale_width(width: int, width_scale: float) -> int:
    """``width × width_scale`` rounded half up, at least 1 (CPU-sized versions of the paper's models)."""
    if not width_scale > 0:
        raise SenoneError(f"width_scale must be > 0, got {width_scale}")
    return max(1, int(math.floor(width * width_scale + 0.5)))


@dataclass(frozen=True)
class ConvSpec:
    """Convolution over frequency patches: one linear filter bank shared by all patches, then ReLU."""

    filters: int = DEFAULT_CONV_FILTERS
    patch_layer = True
    recurrent = False

    def scaled(self, s: float) -> "ConvSpec":
        return replace(self, filters=scale_width(self.filters, s))

    def __str__(self) -> str:
        return "Conv" if self.filters == DEFAULT_CONV_FILTERS else f"Conv{self.filters}"


@dataclass(frozen=True)
class PoolingSpec:
    """Max-pooling over patch positions (size 3, stride 3)."""

    size: int = POOL_SIZE
    patch_layer = True
    recurrent = False

    def scaled(self, s: float) -> "PoolingSpec":
        return self

    def __str__(self) -> str:
        return "Pooling"


@dataclass(frozen=True)
class _LstmWidths:
    """Cells and optional projection of an LSTM(P), as ``<name><cells>[P<proj>]``."""

    cells: int
    proj: int | None = None
    name = ""

    def scaled(self, s: float):
        return replace(self, cells=scale_width(self.cells, s),
                       proj=None if self.proj is None else scale_width(self.proj, s))

    def __str__(self) -> str:
        return f"{self.name}{self.cells}" + ("" if self.proj is None else f"P{self.proj}")


@dataclass(frozen=True)
class CLstmSpec(_LstmWidths):
    """Convolutional LSTM: one LSTM(P) with weights shared across frequency patches, run along time."""

    name = "CLstm"
    patch_layer = True
    recurrent = True


@dataclass(frozen=True)
class LstmSpec(_LstmWidths):
    """LSTM with peepholes (eqs. 3-8), optionally with a linear recurrent projection (LSTMP)."""

    name = "Lstm"
    patch_layer = False
    recurrent = True


@dataclass(frozen=True)
class ReLUSpec:
    """Fully connected layer of rectified linear units."""

    units: int
    patch_layer = False
    recurrent = False

    def scaled(self, s: float) -> "ReLUSpec":
        return replace(self, units=scale_width(self.units, s))

    def __str__(self) -> str:
        return f"ReLU{self.units}"


@dataclass(frozen=True)
class MaxoutSpec:
    """Fully connected maxout layer: ``units × group`` linear pieces, max over each group."""

    units: int
    group: int
    patch_layer = False
    recurrent = False

    def scaled(self, s: float) -> "MaxoutSpec":  # the group size is not a width
        return replace(self, units=scale_width(self.units, s))

    def __str__(self) -> str:
        return f"Maxout{self.units}G{self.group}"


LayerSpec = ConvSpec | PoolingSpec | CLstmSpec | LstmSpec | ReLUSpec | MaxoutSpec

_EXPECTED_LAYER = ("a layer: Conv[N], Pooling, CLstm<cells>[P<proj>], Lstm<cells>[P<proj>], "
                   "ReLU<units> or Maxout<units>G<group>")
# No name is a prefix of another, so trying them in turn is unambiguous.
_NAMES = ("CLstm", "Lstm", "ReLU", "Maxout", "Conv", "Pooling")
_INT = re.compile(r"\d+")
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_TIMES = ("x", "×")


class _Parser:
    """Recursive-descent parser over the spec with whitespace removed; positions map back to the original."""

    def __init__(self, spec: str):
        self.spec = spec
        kept = [(i, ch) for i, ch in enumerate(spec) if not ch.isspace()]
        self.text = "".join(ch for _, ch in kept)
        self.orig = [i for i, _ in kept] + [len(spec)]
        self.pos = 0

    # -- errors -------------------------------------------------------------------------------------
    def error(self, message: str, at: int | None = None) -> SenoneError:
        at = self.pos if at is None else at
        col = self.orig[min(at, len(self.orig) - 1)]
        return spec_error(self.spec, col, message)

    # -- helpers ------------------------------------------------------------------------------------
    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def integer(self, what: str, example: str) -> int:
        m = _INT.match(self.text, self.pos)
        if not m:
            found = f"'{self.peek()}'" if self.peek() else "the end of the spec"
            raise self.error(f"expected {what} (e.g. {example}), found {found}")
        value = int(m.group())
        if value < 1:
            raise self.error(f"{what} must be at least 1, got {m.group()}")
        self.pos = m.end()
        return value

    # -- grammar ------------------------------------------------------------------------------------
    def parse(self) -> list[tuple[LayerSpec, int]]:
        if not self.text:
            raise self.error(f"empty spec; expected {_EXPECTED_LAYER}")
        layers = self.sequence()
        if self.pos < len(self.text):
            ch = self.peek()
            hint = " (no '(' to close)" if ch == ")" else ""
            raise self.error(f"unexpected '{ch}'{hint}; expected '+' and another layer, or the end of the spec")
        return layers

    def sequence(self) -> list[tuple[LayerSpec, int]]:
        layers = self.term()
        while self.peek() == "+":
            self.pos += 1
            layers += self.term()
        return layers

    def term(self) -> list[tuple[LayerSpec, int]]:
        count = 1
        m = _INT.match(self.text, self.pos)
        if m:
            start = self.pos
            self.pos = m.end()
            if self.peek() not in _TIMES:
                found = f"'{self.peek()}'" if self.peek() else "the end of the spec"
                raise self.error(f"expected 'x' or '×' after the repeat count {m.group()} "
                                 f"(e.g. 3xReLU2000), found {found}")
            count = int(m.group())
            if count < 1:
                raise self.error(f"repeat count must be at least 1, got {m.group()}", at=start)
            self.pos += 1
        if self.peek() == "(":
            open_at = self.pos
            self.pos += 1
            inner = self.sequence()
            if self.peek() != ")":
                found = f"'{self.peek()}'" if self.peek() else "the end of the spec"
                raise self.error(f"expected ')' to close the '(' at character "
                                 f"{self.orig[open_at] + 1}, found {found}")
            self.pos += 1
        else:
            inner = [self.layer()]
        return inner * count

    def layer(self) -> tuple[LayerSpec, int]:
        start = self.pos
        for name in _NAMES:
            if self.text.startswith(name, self.pos):
                self.pos += len(name)
                return self.layer_args(name), start
        raise self.unknown_layer()

    def layer_args(self, name: str) -> LayerSpec:
        if name in ("CLstm", "Lstm"):
            example = "CLstm384P256" if name == "CLstm" else "Lstm2000P750"
            cells = self.integer(f"the number of cells after '{name}'", example)
            proj = None
            if self.peek() == "P":
                self.pos += 1
                proj = self.integer("the projection size after 'P'", example)
            return CLstmSpec(cells, proj) if name == "CLstm" else LstmSpec(cells, proj)
        if name == "ReLU":
            return ReLUSpec(self.integer("the number of units after 'ReLU'", "ReLU2000"))
        if name == "Maxout":
            units = self.integer("the number of units after 'Maxout'", "Maxout800G3")
            if self.peek() != "G":
                found = f"'{self.peek()}'" if self.peek() else "the end of the spec"
                raise self.error(f"expected 'G' and the group size after 'Maxout{units}' "
                                 f"(e.g. Maxout{units}G3), found {found}")
            self.pos += 1
            return MaxoutSpec(units, self.integer("the group size after 'G'", f"Maxout{units}G3"))
        if name == "Conv":
            if _INT.match(self.text, self.pos):
                return ConvSpec(self.integer("the number of filters after 'Conv'", "Conv256"))
            return ConvSpec()
        return PoolingSpec()

    def unknown_layer(self) -> SenoneError:
        if not self.peek():
            return self.error(f"unexpected end of the spec; expected {_EXPECTED_LAYER}")
        m = _WORD.match(self.text, self.pos)
        if not m:
            return self.error(f"unexpected '{self.peek()}'; expected {_EXPECTED_LAYER}")
        word = m.group()
        letters = re.match(r"[A-Za-z_]+", word).group()
        close = difflib.get_close_matches(letters.lower(), [n.lower() for n in _NAMES], n=1, cutoff=0.6)
        hint = ""
        if close:
            hint = f" (did you mean '{_NAMES[[n.lower() for n in _NAMES].index(close[0])]}'?)"
        return self.error(f"unknown layer '{word}'{hint}; expected {_EXPECTED_LAYER}")


def spec_error(spec: str, column: int, message: str) -> SenoneError:
    """A SenoneError quoting ``spec`` with a caret under character ``column`` (0-based)."""
    return SenoneError(f"bad network spec {spec!r} at character {column + 1}: {message}\n"
                       f"  {spec}\n  {' ' * column}^")


def _check_order(spec: str, layers: list[tuple[LayerSpec, int]], orig: list[int]) -> None:
    """Patch layers (Conv, CLstm, Pooling) read frequency patches, so they must come first."""
    seen_frame_layer = False
    prev: LayerSpec | None = None
    for layer, at in layers:
        col = orig[at]
        if isinstance(layer, PoolingSpec):
            if not isinstance(prev, (ConvSpec, CLstmSpec)):
                after = "at the start" if prev is None else f"after {prev}"
                raise spec_error(spec, col, f"Pooling {after}: Pooling must directly follow a Conv or "
                                            "CLstm layer (it pools over their frequency-patch outputs)")
        elif layer.patch_layer and seen_frame_layer:
            raise spec_error(spec, col, f"{layer} after {prev}: Conv and CLstm layers work on frequency "
                                        "patches and must come before any Lstm, ReLU or Maxout layer")
        seen_frame_layer = seen_frame_layer or not layer.patch_layer
        prev = layer


def parse_spec(spec: str) -> list[LayerSpec]:
    """Parse the paper's notation into a flat list of layer specs (repeats expanded, input to output).

    The output layer (linear to the number of pdfs) is implied and not part of the list.
    Raises :class:`senone.SenoneError` quoting the spec, with a caret under the offending token and
    what was expected there.
    """
    if not isinstance(spec, str):
        raise SenoneError(f"network spec must be a string, got {type(spec).__name__}: {spec!r}")
    parser = _Parser(spec)
    layers = parser.parse()
    _check_order(spec, layers, parser.orig)
    return [layer for layer, _ in layers]


def format_spec(layers: list[LayerSpec]) -> str:
    """The flat ``+``-joined notation of a layer list (repeats written out): ``Conv+Pooling+ReLU2000``."""
    return "+".join(str(layer) for layer in layers)
