"""The configuration's schema: every key known, every value checked, before any job runs.

Why: a misspelled key (``langauge=en``) used to be ignored silently, a bad value (``num_leaves: -5``)
meant something else, and ``sampling_rate=8k`` failed deep inside a stage without naming the key. The
merged configuration is now checked once, when it is loaded (the Snakefile loads it at start-up), and
every problem is one line naming the key and the fix: ``unknown configuration key
'features.gmm.numceps'; did you mean 'features.gmm.num_ceps'?``, ``configuration key
'gmm.tri1.num_leaves' = -5: expected an integer >= 1``.

Where the known keys come from (one place each, so that a new setting is known where it is made):

* ``conf/*.yaml``: every key of the defaults is known, and its default's type is its type (an int
  stays an int, a float also takes an int, a list takes its elements' type);
* the trainers' dataclasses, with their annotated types: a GMM stage's keys are the fields of its
  kind's config (``MonoConfig``; ``TriConfig``, ``LdaMlltConfig``, ``SatConfig`` for ``kind:
  deltas | lda_mllt | sat``) plus ``kind`` and ``prev``; ``nn.train`` (and a model's or the tables'
  ``train``) are ``TrainConfig``'s fields; ``features.nn`` is ``NnFeatureConfig``;
* ``corpus``: the keyword arguments of the recipe's preparation function ``prepare_<name>`` in
  ``local/<name>/prepare.py`` (read from its source, not imported), with their annotated types;
* :data:`RULES` below: ranges and choices, and the keys only recipes or the code have
  (``lang.lexicon``, ``lm.grammar``, ``features.gmm.sampling_rate``, ``nn.valid_from``...).

Keys that only a recipe file sets are not known merely because a recipe sets them: a typo in a recipe
is caught as well (``tests/test_config_schema.py`` checks that every recipe passes).
"""

from __future__ import annotations

import ast
import difflib
import math
import re
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Mapping, Sequence

from senone import SenoneError


class ConfigError(SenoneError):
    """Every problem of a configuration, one line each (``str()`` joins them with newlines)."""

    def __init__(self, problems: Sequence[str]):
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


# --------------------------------------------------------------------------------------------
# Value checks
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Check:
    """What one value may be: a kind (``int``, ``number``, ``bool``, ``str``, ``list``, ``any``), a range
    or choices, ``None`` allowed or not, the item check of a list; ``what`` overrides the description."""

    kind: str
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    choices: tuple | None = None
    optional: bool = False
    item: "Check | None" = None
    nonempty: bool = False
    either: "Check | None" = None  # another accepted form (e.g. a number of speakers or a list of names)
    what: str | None = None

    def ok(self, value: Any) -> bool:
        if value is None:
            return self.optional or (self.choices is not None and None in self.choices)
        if self.either is not None and self.either.ok(value):
            return True
        if self.choices is not None:
            return value in self.choices
        if self.kind == "any":
            return True
        if self.kind == "bool":
            return isinstance(value, bool)
        if self.kind == "str":
            return isinstance(value, str)
        if self.kind == "list":
            if not isinstance(value, (list, tuple)) or (self.nonempty and not value):
                return False
            return self.item is None or all(self.item.ok(v) for v in value)
        if isinstance(value, bool):
            return False
        if self.kind == "int" and not isinstance(value, int):
            return False
        if self.kind == "number" and not (isinstance(value, (int, float)) and math.isfinite(value)):
            return False
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return self.high is None or value <= self.high

    def describe(self) -> str:
        if self.what:
            text = self.what
        elif self.choices is not None:
            text = "one of " + ", ".join("null" if c is None else str(c) for c in self.choices)
        elif self.kind == "list":
            text = ("a non-empty list" if self.nonempty else "a list") + (
                f" of {_plural(self.item.describe())}" if self.item is not None and self.item.kind != "any" else "")
        else:
            text = {"int": "an integer", "number": "a number", "bool": "true or false", "str": "a string",
                    "any": "any value"}[self.kind]
            if self.low is not None and self.high is not None:
                text += f" from {_num(self.low)}{' (exclusive)' if self.low_open else ''} to {_num(self.high)}"
            elif self.low is not None:
                text += f" {'>' if self.low_open else '>='} {_num(self.low)}"
            elif self.high is not None:
                text += f" <= {_num(self.high)}"
        if self.either is not None:
            text += f", or {self.either.describe()}"
        return text + (", or null" if self.optional and self.choices is None else "")


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def _plural(text: str) -> str:
    for article in ("an ", "a "):
        if text.startswith(article):
            head, _, rest = text[len(article):].partition(" ")
            return f"{head}s {rest}".strip() if head not in ("number",) else f"numbers {rest}".strip()
    return text


def Int(low: float | None = None, high: float | None = None, **kw: Any) -> Check:
    return Check("int", low=low, high=high, **kw)


def Num(low: float | None = None, high: float | None = None, **kw: Any) -> Check:
    return Check("number", low=low, high=high, **kw)


def Pos(**kw: Any) -> Check:
    """A number > 0."""
    return Check("number", low=0, low_open=True, **kw)


def Bool(**kw: Any) -> Check:
    return Check("bool", **kw)


def Str(**kw: Any) -> Check:
    return Check("str", **kw)


def Choice(*choices: Any, **kw: Any) -> Check:
    return Check("str", choices=tuple(choices), **kw)


def List(item: Check | None = None, **kw: Any) -> Check:
    return Check("list", item=item, **kw)


ANY = Check("any")

#: Ranges, choices, and the keys only recipes or the code have. ``*`` matches one key (a GMM stage, a
#: network's name). A rule overrides the type inferred from a default; a rule's key is known.
RULES: dict[str, Check] = {
    "recipe": Str(),
    "language": Choice("zh", "en"),
    "systems": List(Str(), nonempty=True),
    # corpus (its other keys come from the recipe's prepare function)
    "corpus.name": Str(),
    "corpus.prepare": Str(),
    "corpus.sampling_rate": Int(1000, what="an integer sample rate in Hz >= 1000, e.g. 8000 or 16000"),
    "corpus.seed": Int(),
    # lexicon and LM
    "lang.unit": Choice("char", "word"),
    "lang.sil_prob": Num(0, 1),
    "lang.oov_word": Str(),
    "lang.open_vocab_chars": Int(0),
    "lang.lexicon": Str(optional=True, what="the path of a Kaldi lexicon.txt"),
    "lang.stress": Choice("keep", "strip"),
    "lang.builtin_lexicon": Bool(),
    "lm.order": Int(1, 9),
    "lm.extra_text": List(Str()),
    "lm.open_vocab_weight": Num(0, 1),
    "lm.grammar": Choice(None, "ngram", "null", "word_loop"),
    "lm.stop_prob": Num(0, 1, low_open=True, optional=True),
    # features
    "features.gmm.sampling_rate": Int(1000, what="an integer sample rate in Hz >= 1000, e.g. 8000 or 16000"),
    "features.gmm.num_ceps": Int(1, 40),
    "features.gmm.num_filters": Int(2, 128),
    "features.gmm.low_freq": Num(0),
    "features.gmm.high_freq": Num(),
    "features.gmm.delta_order": Int(0, 4),
    "features.nn.sampling_rate": Int(1000, what="an integer sample rate in Hz >= 1000, e.g. 8000 or 16000"),
    # GMM stages (any name; the keys of a stage are its kind's dataclass fields)
    "gmm.max_feature_memory_gb": Num(0),
    "gmm.*.kind": Choice("deltas", "lda_mllt", "sat"),
    "gmm.*.prev": Str(),
    "gmm.*.num_iters": Int(1),
    "gmm.*.max_iter_inc": Int(0),
    "gmm.*.tot_gauss": Int(1),
    "gmm.*.num_leaves": Int(1),
    "gmm.*.realign_iters": List(Int(0)),
    "gmm.*.power": Num(0, 1, low_open=True),
    "gmm.*.perturb_factor": Num(0),
    "gmm.*.mixup_min_count": Num(0),
    "gmm.*.first_beam": Pos(),
    "gmm.*.beam": Pos(),
    "gmm.*.retry_beam_factor": Num(1),
    "gmm.*.acoustic_scale": Pos(),
    "gmm.*.transition_scale": Pos(),
    "gmm.*.self_loop_scale": Pos(),
    "gmm.*.batch_frames": Int(1),
    "gmm.*.seed": Int(),
    "gmm.*.num_jobs": Int(1),
    "gmm.*.first_min_gaussian_occupancy": Num(0),
    "gmm.*.init_subset": Int(1),
    "gmm.*.min_leaf_count": Num(0),
    "gmm.*.cluster_thresh": Num(),
    "gmm.*.lda_dim": Int(1),
    "gmm.*.splice": Int(0, 10),
    "gmm.*.mllt_iters": List(Int(1)),
    "gmm.*.silence_weight": Num(0, 1),
    "gmm.*.mllt_sweeps": Int(1),
    "gmm.*.fmllr_iters": List(Int(1)),
    "gmm.*.fmllr_min_count": Num(0),
    "gmm.*.fmllr_num_iters": Int(1),
    # graph and decoding
    "graph.self_loop_scale": Pos(),
    "graph.transition_scale": Pos(),
    "decode.decoder": Choice("faster", "lattice-faster"),
    "decode.beam": Pos(),
    "decode.lattice_beam": Pos(),
    "decode.max_active": Int(1),
    "decode.lm_weights": List(Pos(), nonempty=True),
    "decode.lm_weight_extend": Int(0),
    "decode.lm_weight_search": Choice("bracket", "grid"),
    "decode.lm_weight_start": Pos(),
    "decode.lm_weight_search_hours": Pos(optional=True),
    # networks
    "nn.alignments_from": Str(optional=True, what="the name of a GMM stage (gmm.<name>)"),
    "nn.default": Str(optional=True, what="the name of a network of nn.models (or a paper row t<table>r<row>)"),
    "nn.valid_from": Str(optional=True, what="the path of a list of training utterance ids"),
    "nn.valid_fraction": Num(0, 1),
    "nn.valid_by": Choice("utterance", "speaker"),
    "nn.fmllr_features": Bool(),
    "nn.prior_scale": Num(0),
    "nn.processes": Int(1),
    "nn.threads": Int(1),
    "nn.max_feature_memory_gb": Num(0),
    "nn.max_loglike_memory_gb": Num(0),
    "nn.decode.chunked": Bool(),
    "nn.decode.chunk_len": Int(1),
    "nn.decode.left_context": Int(0),
    "nn.train.num_epochs": Int(1),
    "nn.train.optimizer": Choice("sgd", "adam"),
    "nn.train.lr_initial": Pos(),
    "nn.train.lr_final": Pos(),
    "nn.train.momentum": Num(0, 1),
    "nn.train.weight_decay": Num(0),
    "nn.train.max_grad_norm": Num(0),
    "nn.train.num_streams": Int(1),
    "nn.train.chunk_len": Int(1),
    "nn.train.overlap": Int(0),
    "nn.train.label_delay": Int(0),
    "nn.train.seed": Int(),
    "nn.train.log_every": Int(0),
    "nn.train.valid_batch_frames": Int(1),
    "nn.train.carry_state": Bool(),
    "nn.train.batching": Choice("streams", "frames"),
    "nn.train.frames_per_batch": Int(1),
    "nn.models.*.spec": Str(what="a network spec in the paper's notation, e.g. 'CLstm256P128+Pooling+3xReLU2000'"),
    "nn.models.*.width_scale": Pos(),
    "nn.models.*.description": Str(),
    "nn.tables.numbers": List(Int(1, 5)),
    "nn.tables.width_scale": Pos(),
}

#: Where a section has the keys of another one: a network's and the tables' ``train`` are ``nn.train``;
#: ``nn.decode`` and ``nn.tables.decode`` are ``decode`` plus the networks' chunking keys.
ALIASES = {"nn.models.*.train": "nn.train", "nn.tables.train": "nn.train", "nn.tables.decode": "nn.decode"}


# --------------------------------------------------------------------------------------------
# Where the keys come from
# --------------------------------------------------------------------------------------------

def _dataclass_checks(cls: type) -> dict[str, Check]:
    """A dataclass's fields as checks from their annotations (``int``, ``float``, ``bool``, ``str``,
    ``tuple[int, ...]``); private fields (``_X``) are left out."""
    out = {}
    for f in fields(cls):
        if f.name.startswith("_"):
            continue
        out[f.name] = _annotation_check(str(f.type))
    return out


def _annotation_check(text: str) -> Check:
    """A check from a type annotation's text (``int | None``, ``Sequence[str] | int``, ``str | Path``...)."""
    parts = [p.strip() for p in _split_top(text, "|")]
    optional = "None" in parts
    checks = [_single(p) for p in parts if p != "None"]
    if not checks:
        return Check("any", optional=True)
    first = checks[0]
    for other in checks[1:]:
        if other.kind != first.kind:
            first = Check(first.kind, item=first.item, either=other)
    return Check(first.kind, item=first.item, either=first.either, optional=optional)


def _single(text: str) -> Check:
    base, _, inner = text.partition("[")
    base = base.strip().split(".")[-1]
    if base in ("int",):
        return Int()
    if base in ("float",):
        return Num()
    if base in ("bool",):
        return Bool()
    if base in ("str", "Path", "PathLike"):
        return Str()
    if base in ("Sequence", "list", "tuple", "List", "Tuple"):
        items = [p.strip() for p in _split_top(inner.rstrip("]"), ",") if p.strip() not in ("...", "")]
        return List(_annotation_check(items[0]) if items else None)
    return ANY


def _split_top(text: str, sep: str) -> list[str]:
    """``text`` split at ``sep`` outside brackets."""
    out, depth, cur = [], 0, ""
    for ch in text:
        depth += ch == "["
        depth -= ch == "]"
        if ch == sep and depth == 0:
            out.append(cur)
            cur = ""
        else:
            cur += ch
    return out + [cur]


def corpus_checks(prepare: str, root: Path) -> dict[str, Check] | None:
    """The keys of ``corpus`` for preparation ``prepare``: the keyword arguments of ``prepare_<prepare>``
    in ``local/<prepare>/prepare.py`` with their annotated types (read from the source: importing the
    recipe would pull in Lhotse and its corpus readers at every start-up). None when there is no such
    function."""
    path = root / "local" / prepare / "prepare.py"
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", prepare or "") or not path.is_file():
        return None
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == f"prepare_{prepare}":
            args = node.args.args[1:] + node.args.kwonlyargs  # the first is the output folder
            return {a.arg: (_annotation_check(ast.unparse(a.annotation)) if a.annotation is not None else ANY)
                    for a in args}
    return None


def _stage_classes() -> dict[str | None, type]:
    from senone.gmm.lda_mllt import LdaMlltConfig
    from senone.gmm.mono import MonoConfig
    from senone.gmm.sat import SatConfig
    from senone.gmm.triphone import TriConfig

    return {None: MonoConfig, "deltas": TriConfig, "lda_mllt": LdaMlltConfig, "sat": SatConfig}


def _train_checks() -> dict[str, Check]:
    from senone.nn.train import TrainConfig

    return _dataclass_checks(TrainConfig)


def _nn_feature_checks() -> dict[str, Check]:
    from senone.feats.nn import CMVN_MODES, NnFeatureConfig

    checks = _dataclass_checks(NnFeatureConfig)
    for name, (low, high) in NnFeatureConfig._RANGES.items():
        checks[name] = Int(low, high)
    checks["cmvn"] = Choice(*CMVN_MODES)
    return checks


def _decode_chunk_keys() -> tuple[str, ...]:
    from senone.nn.infer import DecodeChunking

    return DecodeChunking.KEYS


def _paper_models() -> set[str]:
    from senone.nn.paper import paper_rows

    return {f"t{r.table}r{r.index}" for r in paper_rows()}


# --------------------------------------------------------------------------------------------
# The walk
# --------------------------------------------------------------------------------------------

def _match(pattern: str, path: str) -> bool:
    p, q = pattern.split("."), path.split(".")
    return len(p) == len(q) and all(a in ("*", b) for a, b in zip(p, q))


def _rule(path: str) -> Check | None:
    if path in RULES:
        return RULES[path]
    for pattern, check in RULES.items():
        if "*" in pattern and _match(pattern, path):
            return check
    return None


def _rule_keys(path: str) -> set[str]:
    """The keys the rules declare directly under section ``path``."""
    depth = path.count(".") + 1 if path else 0
    out = set()
    for pattern in RULES:
        parts = pattern.split(".")
        if len(parts) == depth + 1 and (not path or _match(".".join(parts[:-1]), path)):
            out.add(parts[-1])
    return out


def _inferred(default: Any) -> Check:
    """The check a default's value implies (a float also takes an int, a list its elements' kind)."""
    if isinstance(default, bool):
        return Bool()
    if isinstance(default, int):
        return Int()
    if isinstance(default, float):
        return Num()
    if isinstance(default, str):
        return Str()
    if isinstance(default, list):
        kinds = {_inferred(v).kind for v in default}
        if kinds == {"int"}:
            return List(Int())
        if kinds <= {"int", "number"} and kinds:
            return List(Num())
        return List(Str()) if kinds == {"str"} else List()
    return ANY


class _Validator:
    def __init__(self, cfg: Mapping[str, Any], defaults: Mapping[str, Any], root: Path,
                 origins: Mapping[str, str]):
        self.cfg, self.defaults, self.root, self.origins = cfg, defaults, root, origins
        self.problems: list[str] = []

    # -- reporting
    def bad_value(self, path: str, value: Any, check: Check) -> None:
        origin = self.origins.get(path)
        self.problems.append(f"configuration key '{path}' = {value!r}{f' (from {origin})' if origin else ''}: "
                             f"expected {check.describe()}")

    def unknown(self, path: str, known: set[str]) -> None:
        parent, _, key = path.rpartition(".")
        close = difflib.get_close_matches(key, sorted(known), n=1, cutoff=0.6)
        if close:
            hint = f"did you mean '{parent + '.' if parent else ''}{close[0]}'?"
        else:
            hint = f"known {'under ' + repr(parent) if parent else 'at the top level'}: {', '.join(sorted(known))}"
        self.problems.append(f"unknown configuration key '{path}'; {hint}")

    # -- sections
    def section(self, path: str, value: Any, known: Mapping[str, Check | str | None]) -> None:
        """Check mapping ``value`` at ``path`` whose keys are ``known`` (a key's check, or the path of a
        sub-section to walk, or None for a section walked by its own rule)."""
        if not isinstance(value, Mapping):
            self.problems.append(f"configuration key '{path}' = {value!r}: expected a mapping of settings "
                                 f"({', '.join(sorted(known)[:8])}...)")
            return
        for key, sub in value.items():
            where = f"{path}.{key}" if path else str(key)
            if key not in known:
                self.unknown(where, set(known))
                continue
            self.value(where, sub, known[key])

    def value(self, path: str, value: Any, spec: Check | str | None) -> None:
        if isinstance(spec, Check):
            if not spec.ok(value):
                self.bad_value(path, value, spec)
        elif isinstance(spec, str):
            self.walk(spec, value, path)

    def keys_of(self, schema_path: str) -> dict[str, Check | str]:
        """The known keys of a generic section: its defaults' keys (with their inferred types, sections
        as paths) and its rules' keys; a rule's check wins."""
        node: Any = self.defaults
        for part in schema_path.split(".") if schema_path else []:
            node = node.get(part, {}) if isinstance(node, Mapping) else {}
        out: dict[str, Check | str] = {}
        for key, default in (node.items() if isinstance(node, Mapping) else []):
            sub = f"{schema_path}.{key}" if schema_path else key
            out[key] = sub if isinstance(default, Mapping) else (_rule(sub) or _inferred(default))
        for key in _rule_keys(schema_path):
            sub = f"{schema_path}.{key}" if schema_path else key
            if key not in out or isinstance(out[key], Check):
                out[key] = _rule(sub) or ANY
        return out

    def walk(self, schema_path: str, value: Any, path: str | None = None) -> None:
        """Check ``value`` (at ``path``) against the section ``schema_path`` of the schema."""
        path = schema_path if path is None else path
        special = getattr(self, "_" + schema_path.replace(".", "_").replace("*", "x"), None)
        if special is not None:
            special(path, value)
            return
        if schema_path in ALIASES:
            self.walk(ALIASES[schema_path], value, path)
            return
        self.section(path, value, self.keys_of(schema_path))

    # -- sections with keys from elsewhere
    def _(self, path: str, value: Any) -> None:  # the top level
        known = self.keys_of("")
        known.update({"corpus": "corpus", "recipe": RULES["recipe"], "language": RULES["language"]})
        self.section("", value, known)

    def _corpus(self, path: str, value: Any) -> None:
        if not isinstance(value, Mapping):
            self.problems.append(f"configuration key 'corpus' = {value!r}: expected a mapping of settings")
            return
        prepare = value.get("prepare")
        checks = corpus_checks(str(prepare), self.root) if prepare else None
        if checks is None:
            self.problems.append(f"configuration key 'corpus.prepare' = {prepare!r}: expected the name of a corpus "
                                 f"preparation local/<name>/prepare.py defining prepare_<name> "
                                 f"(there are: {', '.join(sorted(p.parent.name for p in (self.root / 'local').glob('*/prepare.py')))})")
            return
        known: dict[str, Check | str] = {"name": RULES["corpus.name"], "prepare": RULES["corpus.prepare"]}
        for key, check in checks.items():
            known[key] = _rule(f"corpus.{key}") or check
        self.section(path, value, known)

    def _gmm(self, path: str, value: Any) -> None:
        if not isinstance(value, Mapping):
            self.problems.append(f"configuration key 'gmm' = {value!r}: expected a mapping of GMM stages")
            return
        classes = _stage_classes()
        for name, stage in value.items():
            where = f"gmm.{name}"
            if name == "max_feature_memory_gb":
                self.value(where, stage, RULES["gmm.max_feature_memory_gb"])
                continue
            if not isinstance(stage, Mapping):
                self.problems.append(f"configuration key '{where}' = {stage!r}: expected a GMM stage's settings "
                                     "(or gmm.max_feature_memory_gb)")
                continue
            kind = stage.get("kind")
            if name != "mono" and kind is None:
                self.problems.append(f"configuration key '{where}' has no kind: a stage other than mono needs "
                                     "kind (deltas, lda_mllt or sat) and prev (the stage it starts from)")
                continue
            if kind is not None and kind not in classes:
                self.bad_value(f"{where}.kind", kind, RULES["gmm.*.kind"])
                continue
            known: dict[str, Check | str] = {k: _rule(f"gmm.*.{k}") or c
                                             for k, c in _dataclass_checks(classes[kind]).items()}
            if name != "mono" or kind is not None:
                known.update(kind=RULES["gmm.*.kind"], prev=RULES["gmm.*.prev"])
            self.section(where, stage, known)
            prev = stage.get("prev")
            if isinstance(prev, str) and prev not in value:
                self.problems.append(f"configuration key '{where}.prev' = {prev!r}: no such GMM stage; use one of "
                                     f"{', '.join(k for k in value if k != 'max_feature_memory_gb')}")

    def _features_nn(self, path: str, value: Any) -> None:
        known: dict[str, Check | str] = dict(_nn_feature_checks())
        known["sampling_rate"] = RULES["features.nn.sampling_rate"]
        self.section(path, value, known)

    def _nn_train(self, path: str, value: Any) -> None:
        self.section(path, value, {k: _rule(f"nn.train.{k}") or c for k, c in _train_checks().items()})

    def _nn_decode(self, path: str, value: Any) -> None:
        known = self.keys_of("decode")
        for key in _decode_chunk_keys():
            known[key] = _rule(f"nn.decode.{key}") or ANY
        self.section(path, value, known)

    def _nn_models(self, path: str, value: Any) -> None:
        if not isinstance(value, Mapping):
            self.problems.append(f"configuration key '{path}' = {value!r}: expected networks by name, each "
                                 "{spec: ..., width_scale: ..., train: {...}}")
            return
        for name, entry in value.items():
            where = f"{path}.{name}"
            if not isinstance(entry, Mapping):
                self.problems.append(f"configuration key '{where}' = {entry!r}: expected a network's settings "
                                     "{spec: ..., width_scale: ..., train: {...}}")
                continue
            if not entry.get("spec"):
                self.problems.append(f"configuration key '{where}.spec' is missing: a network needs a spec in the "
                                     "paper's notation, e.g. 'CLstm256P128+Pooling+3xReLU2000'")
            self.section(where, entry, {"spec": RULES["nn.models.*.spec"], "width_scale": RULES["nn.models.*.width_scale"],
                                        "description": RULES["nn.models.*.description"], "train": "nn.train"})

    # -- across sections
    def cross_checks(self) -> None:
        cfg = self.cfg
        gmm = cfg.get("gmm") if isinstance(cfg.get("gmm"), Mapping) else {}
        stages = [k for k in gmm if k != "max_feature_memory_gb"]
        systems = cfg.get("systems")
        if isinstance(systems, list):
            for s in systems:
                if isinstance(s, str) and s not in gmm:
                    self.problems.append(f"configuration key 'systems' lists {s!r}, which has no gmm.{s} section; "
                                         f"the GMM stages are {', '.join(stages)}")
        nn = cfg.get("nn") if isinstance(cfg.get("nn"), Mapping) else {}
        ali = nn.get("alignments_from")
        if isinstance(ali, str) and ali not in gmm:
            self.problems.append(f"configuration key 'nn.alignments_from' = {ali!r}: no such GMM stage; use one of "
                                 f"{', '.join(stages)} (or null: the last of systems)")
        default = nn.get("default")
        models = nn.get("models") if isinstance(nn.get("models"), Mapping) else {}
        if isinstance(default, str) and default not in models and default not in _paper_models():
            close = difflib.get_close_matches(default, sorted(models), n=1)
            self.problems.append(f"configuration key 'nn.default' = {default!r}: no such network under nn.models"
                                 f"{f'; did you mean {close[0]!r}?' if close else ''} (networks: {', '.join(sorted(models))})")


def validate_config(cfg: Mapping[str, Any], defaults: Mapping[str, Any], root: Path,
                    origins: Mapping[str, str] | None = None) -> None:
    """Raise :class:`ConfigError` listing every problem of the merged ``cfg`` (unknown keys with their
    nearest valid name, values of the wrong type or range); ``defaults`` is the merge of ``conf/*.yaml``.
    ``origins`` maps a dotted key to where its value came from (a command-line shortcut), for the message."""
    v = _Validator(cfg, defaults, Path(root), origins or {})
    v.walk("", cfg)
    if not v.problems:
        v.cross_checks()
    if v.problems:
        raise ConfigError(v.problems)


def shortcut_problem(name: str, value: Any, targets: Sequence[str]) -> str | None:
    """One line when a command-line shortcut's value does not fit its first target (``sampling_rate=8k``
    names the shortcut and the keys it sets, instead of one error per key)."""
    check = _rule(targets[0])
    if check is not None and not check.ok(value):
        return (f"configuration key '{name}' = {value!r} (sets {', '.join(targets)}): expected {check.describe()}")
    return None
