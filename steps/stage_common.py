"""What the GMM training steps share: their arguments, transcripts as word ids, and the stage's settings."""

from __future__ import annotations

import argparse
from dataclasses import fields
from typing import Any

from senone import SenoneError
from senone.lang.prepare import Lang
from senone.lang.transcripts import load_transcripts, to_word_ids, transcript_units

WORKFLOW_KEYS = ("kind", "prev")  # tell the Snakefile which step and inputs; not trainer settings


def add_stage_args(p: argparse.ArgumentParser, default_stage: str, prev_help: str) -> argparse.ArgumentParser:
    p.add_argument("--stage", default=default_stage, help=f"configuration section under gmm: ({default_stage})")
    p.add_argument("--lang", required=True)
    p.add_argument("--train-cuts", required=True, help="manifest cuts of the training split (transcripts)")
    p.add_argument("--feats", required=True, help="feature cuts of the training split")
    p.add_argument("--cmvn", required=True)
    p.add_argument("--prev", required=True, help=prev_help)
    p.add_argument("--out", required=True)
    return p


def training_transcripts(lang: Lang, conf: dict, train_cuts: str) -> dict[str, list[int]]:
    """Training transcripts as word-id sequences in the lang's units (OOVs → the OOV word)."""
    units = transcript_units(load_transcripts(train_cuts), lang.info.get("unit") or conf["lang"]["unit"])
    return to_word_ids(units, lang.words, lang.oov_word, train_cuts)[0]


def stage_config(conf: dict, stage: str, config_cls: type, threads: int) -> Any:
    """``gmm.<stage>`` as a trainer config: lists → tuples, ``num_jobs`` from the threads, clear errors."""
    try:
        section = dict(conf["gmm"][stage])
    except KeyError:
        raise SenoneError(f"the configuration has no gmm.{stage} section; add it to conf/gmm.yaml") from None
    tuple_fields = {f.name for f in fields(config_cls) if "tuple" in str(f.type)}
    values = {k: (tuple(v) if k in tuple_fields else v) for k, v in section.items() if k not in WORKFLOW_KEYS}
    values.setdefault("num_jobs", threads)
    try:
        return config_cls(**values)
    except TypeError as exc:
        raise SenoneError(f"gmm.{stage} in the configuration: {exc}") from None
