"""The configuration's schema (senone/schema.py): every key known, every value checked at start-up, one line
per problem naming the key; every recipe passes; the library's dataclasses agree with conf/ on defaults."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import pytest
import yaml

from senone import SenoneError
from senone.config import PROJECT_ROOT, available_recipes, load_config
from senone.schema import ConfigError, corpus_checks

from tests.e2e import snakemake

RECIPES = ["aishell1", "custom", "cv_zh", "fsdd", "hkust", "synth_zh"]


def problems(recipe: str = "synth_zh", **overrides) -> list[str]:
    with pytest.raises(ConfigError) as err:
        load_config(recipe, overrides)
    return err.value.problems


def test_every_recipe_is_accepted():
    assert sorted(available_recipes()) == RECIPES  # a new recipe must be added here (and pass)
    for recipe in RECIPES:
        load_config(recipe)


@pytest.mark.parametrize("overrides, line", [
    ({"langauge": "en"}, "unknown configuration key 'langauge'; did you mean 'language'?"),
    ({"features": {"gmm": {"numceps": 10}}},
     "unknown configuration key 'features.gmm.numceps'; did you mean 'features.gmm.num_ceps'?"),
    ({"gmm": {"mono": {"totgauss": 10}}}, "unknown configuration key 'gmm.mono.totgauss'; did you mean 'gmm.mono.tot_gauss'?"),
    ({"nn": {"models": {"clstm": {"train": {"lr_inital": 0.1}}}}},
     "unknown configuration key 'nn.models.clstm.train.lr_inital'; did you mean 'nn.models.clstm.train.lr_initial'?"),
    ({"corpus": {"dev_minute": 3}}, "unknown configuration key 'corpus.dev_minute'; did you mean 'corpus.dev_minutes'?"),
])
def test_a_misspelled_key_is_one_line_with_the_nearest_name(overrides, line):
    assert problems(**overrides) == [line]


def test_a_key_of_another_stage_kind_is_unknown_there():
    # lda_dim is an LDA+MLLT setting; on the Δ+ΔΔ stage tri1 it would be ignored silently
    (line,) = problems(gmm={"tri1": {"lda_dim": 30}})
    assert line.startswith("unknown configuration key 'gmm.tri1.lda_dim'")


@pytest.mark.parametrize("overrides, line", [
    ({"gmm": {"tri1": {"num_leaves": -5}}}, "configuration key 'gmm.tri1.num_leaves' = -5: expected an integer >= 1"),
    ({"gmm": {"tri2": {"tot_gauss": 0}}}, "configuration key 'gmm.tri2.tot_gauss' = 0: expected an integer >= 1"),
    ({"gmm": {"mono": {"realign_iters": [1, "x"]}}},
     "configuration key 'gmm.mono.realign_iters' = [1, 'x']: expected a list of integers >= 0"),
    ({"features": {"gmm": {"pitch": "yes"}}}, "configuration key 'features.gmm.pitch' = 'yes': expected true or false"),
    ({"decode": {"lm_weights": []}}, "configuration key 'decode.lm_weights' = []: expected a non-empty list of numbers > 0"),
    ({"nn": {"train": {"batching": "shuffled"}}},
     "configuration key 'nn.train.batching' = 'shuffled': expected one of streams, frames"),
    ({"nn": {"valid_fraction": 1.5}}, "configuration key 'nn.valid_fraction' = 1.5: expected a number from 0 to 1"),
])
def test_a_value_of_the_wrong_type_or_range_is_one_line(overrides, line):
    assert problems(**overrides) == [line]


def test_the_sampling_rate_shortcut_names_itself_and_its_keys():
    (line,) = problems("fsdd", sampling_rate="8k")
    assert line.startswith("configuration key 'sampling_rate' = '8k' (sets corpus.sampling_rate, "
                           "features.gmm.sampling_rate): expected an integer sample rate in Hz")


def test_every_problem_is_reported_at_once():
    lines = problems(langauge="en", gmm={"tri1": {"num_leaves": -5}})
    assert sorted(line.split("'")[1] for line in lines) == ["gmm.tri1.num_leaves", "langauge"]


def test_cross_references_are_checked():
    assert problems(systems=["mono", "tri9"])[0].startswith("configuration key 'systems' lists 'tri9'")
    assert problems(nn={"alignments_from": "tri7"})[0].startswith("configuration key 'nn.alignments_from' = 'tri7'")
    assert "did you mean 'clstm'?" in problems(nn={"default": "clstmm"})[0]
    assert problems(gmm={"tri4": {"num_leaves": 10}})[0].startswith("configuration key 'gmm.tri4' has no kind")


def test_keys_added_today_are_known():
    load_config("cv_zh", {"decode": {"decoder": "lattice-faster", "lm_weight_search": "grid", "lm_weight_start": 11},
                          "lang": {"open_vocab_chars": 0}, "lm": {"open_vocab_weight": 0.1},
                          "nn": {"train": {"carry_state": True, "batching": "frames", "frames_per_batch": 128},
                                 "decode": {"chunked": True, "chunk_len": 15, "left_context": 5}},
                          "corpus": {"locale": "zh-CN"}})
    # and every key the defaults and recipes set, at every depth, is known (the walk above found no problem)


def test_corpus_keys_come_from_the_recipe_preparation():
    keys = set(corpus_checks("custom", PROJECT_ROOT))
    assert {"corpus_dir", "split_file", "speaker_pattern", "dev_speakers"} <= keys
    assert "locale" in corpus_checks("cv_zh", PROJECT_ROOT) and "locale" not in keys
    load_config("custom", {"corpus": {"dev_speakers": ["a", "b"]}})  # names ...
    load_config("custom", {"corpus": {"dev_speakers": 2}})  # ... or a number of speakers
    assert problems("custom", corpus={"dev_speakers": 1.5})[0].startswith("configuration key 'corpus.dev_speakers'")


def test_english_has_no_pitch_unless_asked():
    assert load_config("custom", {"language": "en"})["features"]["gmm"]["pitch"] is False
    assert load_config("custom", {"language": "zh"})["features"]["gmm"]["pitch"] is True
    on = load_config("custom", {"language": "en", "features": {"gmm": {"pitch": True}}})
    assert on["features"]["gmm"]["pitch"] is True


def test_dataclass_defaults_agree_with_conf():
    """One source of defaults: where conf/ sets a trainer's key, the library's dataclass has the same default."""
    from senone.decode.decoder import DEFAULT_DECODER
    from senone.decode.sweep import DEFAULT_LM_WEIGHT_SEARCH, DEFAULT_LM_WEIGHT_START
    from senone.feats.extract import MfccPitchConfig
    from senone.feats.nn import NnFeatureConfig
    from senone.gmm.lda_mllt import LdaMlltConfig
    from senone.gmm.mono import MonoConfig
    from senone.gmm.sat import SatConfig
    from senone.gmm.triphone import TriConfig
    from senone.lang.common_chars import DEFAULT_NUM_CHARS
    from senone.lm.open_vocab import DEFAULT_WEIGHT
    from senone.nn.infer import DecodeChunking

    conf: dict = {}
    for path in sorted((PROJECT_ROOT / "conf").glob("*.yaml")):
        conf.update(yaml.safe_load(path.read_text()))
    classes = {None: MonoConfig, "deltas": TriConfig, "lda_mllt": LdaMlltConfig, "sat": SatConfig}
    for name, stage in conf["gmm"].items():
        if not isinstance(stage, dict):
            continue
        lib = classes[stage.get("kind")]()
        for key, value in stage.items():
            if key not in ("kind", "prev"):
                got = getattr(lib, key)
                assert (list(got) if isinstance(got, tuple) else got) == value, f"gmm.{name}.{key}"
    nn_feats = NnFeatureConfig()
    for f in fields(NnFeatureConfig):
        assert conf["features"]["nn"][f.name] == getattr(nn_feats, f.name), f"features.nn.{f.name}"
    mfcc = MfccPitchConfig()
    assert (conf["features"]["gmm"]["num_ceps"], conf["features"]["gmm"]["pitch"]) == (mfcc.num_ceps, mfcc.pitch)
    for key in DecodeChunking.KEYS:
        assert conf["nn"]["decode"][key] == getattr(DecodeChunking(), key)
    assert conf["decode"]["decoder"] == DEFAULT_DECODER
    assert conf["decode"]["lm_weight_search"] == DEFAULT_LM_WEIGHT_SEARCH
    assert conf["decode"]["lm_weight_start"] == DEFAULT_LM_WEIGHT_START
    assert conf["lang"]["open_vocab_chars"] == DEFAULT_NUM_CHARS and conf["lm"]["open_vocab_weight"] == DEFAULT_WEIGHT


def test_the_workflow_stops_at_start_up_with_one_line(tmp_path):
    """Through Snakemake: a typo at the third level and a bad shortcut value, one line each, no traceback, no job."""
    proc = snakemake(tmp_path, "decode", "--dry-run", "--config", "recipe=fsdd", "sampling_rate=8k",
                     "gmm={tri1: {numleaves: 10}}", cores=1)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    errors = [line for line in out.splitlines() if line.startswith("error: ")]
    assert errors == [
        "error: configuration key 'sampling_rate' = '8k' (sets corpus.sampling_rate, features.gmm.sampling_rate): "
        "expected an integer sample rate in Hz >= 1000, e.g. 8000 or 16000",
        "error: unknown configuration key 'gmm.tri1.numleaves'; did you mean 'gmm.tri1.num_leaves'?"]
    assert "Traceback" not in out and not (tmp_path / "exp").exists()
