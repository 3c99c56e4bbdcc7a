"""Recipe configuration: shared defaults in ``conf/*.yaml``, overridden by ``recipes/<name>.yaml``,
overridden by what the user passes (``--config key=value`` or ``--configfile``).

The merged result is what a run used; the workflow writes it to ``exp/<recipe>/config.yaml`` so any
number can be traced back to the settings that made it. It is checked against the schema
(:mod:`senone.schema`) as it is loaded: an unknown key or a value of the wrong type or range is one
error line naming the key, before any stage runs.

Between ``conf/`` and the recipe sit the defaults of the recipe's language (:data:`LANGUAGE_DEFAULTS`:
English has no pitch features), so a recipe or the command line can still set them either way.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Mapping

import yaml

from senone import SenoneError

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Recursively merge ``override`` into a copy of ``base`` (mappings merge, everything else replaces)."""
    out = copy.deepcopy(dict(base))
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise SenoneError(f"{path}: not valid YAML ({exc}); fix the file") from exc
    if not isinstance(data, dict):
        raise SenoneError(f"{path}: expected a mapping at the top level")
    return data


def available_recipes(root: Path = PROJECT_ROOT) -> list[str]:
    return sorted(p.stem for p in (root / "recipes").glob("*.yaml"))


#: Top-level override keys that stand for keys inside sections: ``--config corpus_dir=PATH`` reads
#: better on a command line than ``--config 'corpus={corpus_dir: PATH}'``, and ``sampling_rate`` must
#: reach both the corpus reader and the feature extractor.
SHORTCUTS: dict[str, tuple[tuple[str, ...], ...]] = {
    "corpus_dir": (("corpus", "corpus_dir"),),
    "sampling_rate": (("corpus", "sampling_rate"), ("features", "gmm", "sampling_rate")),
}


#: Defaults that depend on the recipe's ``language``, merged over ``conf/`` and under the recipe: English
#: words carry no lexical tone, so the GMM features have no pitch (as Kaldi's English recipes; README
#: "Language-related choices").
LANGUAGE_DEFAULTS: dict[str, dict[str, Any]] = {"en": {"features": {"gmm": {"pitch": False}}}}


def typed_cli_value(value: Any) -> Any:
    """A ``--config`` value with the scalars inside its mappings and lists read as YAML scalars.

    Why: Snakemake reads a nested ``--config`` value with YAML's BaseLoader, so every scalar inside it
    arrives as a string (``'corpus={dev_hours: 0.5}'`` gives ``"0.5"``, ``'nn={valid_from: null}'`` the
    string ``"null"``). Reading each such string as YAML gives what the same key in a recipe file gives;
    strings that are not numbers, booleans or null stay strings.
    """
    if isinstance(value, Mapping):
        return {k: typed_cli_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [typed_cli_value(v) for v in value]
    if isinstance(value, str):
        try:
            parsed = yaml.safe_load(value)
        except yaml.YAMLError:
            return value
        return parsed if parsed is None or isinstance(parsed, (bool, int, float)) else value
    return value


def _expand_shortcuts(overrides: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(overrides)
    for key, targets in SHORTCUTS.items():
        if key in out:
            value = out.pop(key)
            for path in targets:
                nested: Any = value
                for part in reversed(path):
                    nested = {part: nested}
                out = deep_merge(out, nested)
    return out


def load_config(recipe: str, overrides: Mapping[str, Any] | None = None, root: Path = PROJECT_ROOT) -> dict[str, Any]:
    """Merge ``conf/*.yaml`` (sorted by name), the language's :data:`LANGUAGE_DEFAULTS`,
    ``recipes/<recipe>.yaml`` and ``overrides``, and check the result (:func:`senone.schema.validate_config`:
    a :class:`senone.schema.ConfigError`, one line per problem, when a key is unknown or a value wrong).

    ``overrides`` may use the :data:`SHORTCUTS` (``corpus_dir`` → ``corpus.corpus_dir``, ...).
    """
    from senone.schema import ConfigError, shortcut_problem, validate_config  # only when a configuration is loaded

    root = Path(root)
    recipe_path = root / "recipes" / f"{recipe}.yaml"
    if not recipe_path.is_file():
        raise SenoneError(
            f"recipe '{recipe}' does not exist ({recipe_path} not found); available: {', '.join(available_recipes(root))}")
    defaults: dict[str, Any] = {}
    for path in sorted((root / "conf").glob("*.yaml")):
        defaults = deep_merge(defaults, _read_yaml(path))
    recipe_cfg = _read_yaml(recipe_path)
    given = _expand_shortcuts(overrides or {})
    language = given.get("language", recipe_cfg.get("language", defaults.get("language")))
    cfg = deep_merge(defaults, LANGUAGE_DEFAULTS.get(language, {}) if isinstance(language, str) else {})
    cfg = deep_merge(deep_merge(cfg, recipe_cfg), given)
    cfg["recipe"] = recipe
    # a bad shortcut value is one line naming the shortcut, not one per key it sets
    problems, covered = [], set()
    for name, targets in SHORTCUTS.items():
        if overrides and name in overrides:
            dotted = [".".join(t) for t in targets]
            problem = shortcut_problem(name, overrides[name], dotted)
            if problem:
                problems.append(problem)
                covered.update(dotted)
    try:
        validate_config(cfg, defaults, root)
    except ConfigError as exc:
        problems += [p for p in exc.problems if not any(p.startswith(f"configuration key '{k}' = ") for k in covered)]
    if problems:
        raise ConfigError(problems)
    return cfg


def section(cfg: Mapping[str, Any], dotted: str) -> Any:
    """``section(cfg, "gmm.mono")`` with a clear error naming the missing key."""
    node: Any = cfg
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            raise SenoneError(f"configuration key '{dotted}' is missing; add it to conf/ or recipes/{cfg.get('recipe')}.yaml")
        node = node[part]
    return node
