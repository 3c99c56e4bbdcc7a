#!/usr/bin/env python3
"""Prepare stage: run the recipe's corpus preparation (a Lhotse recipe in ``local/``) into data/<recipe>."""

from __future__ import annotations

import importlib
import logging
from pathlib import Path

from senone import SenoneError
from senone.cli import base_parser, parse_conf, run

log = logging.getLogger("senone.steps.prepare_corpus")


def main(args) -> None:
    conf = dict(parse_conf(args.conf))
    name = conf.pop("prepare")
    conf.pop("name", None)
    expect = conf.pop("expect_files", [])  # what the workflow needs besides the manifests (nn.valid_from, LM text)
    try:
        module = importlib.import_module(f"local.{name}.prepare")
    except ModuleNotFoundError as exc:
        raise SenoneError(f"corpus.prepare = {name!r}: no preparation module local/{name}/prepare.py") from exc
    prepare = getattr(module, f"prepare_{name}")
    if "num_jobs" in prepare.__code__.co_varnames:
        conf.setdefault("num_jobs", args.threads)
    if "language" in prepare.__code__.co_varnames:  # corpora of either language normalise text by it
        conf.setdefault("language", args.language)
    try:
        splits = prepare(args.out, **conf)
    except TypeError as exc:
        raise SenoneError(f"corpus settings do not fit local/{name}/prepare.py ({exc}); check the recipe's corpus section") from exc
    for split, cuts in splits.items():
        log.info("%s: %d cuts, %.2f h", split, len(cuts), sum(c.duration for c in cuts) / 3600)
    for path in expect:
        if not Path(path).is_file():
            raise SenoneError(f"{path} (nn.valid_from or lm.extra_text) lies in the manifests folder, which corpus "
                              f"preparation writes, but local/{name}/prepare.py writes no such file; point the setting "
                              "at a file of your own, or remove it")


if __name__ == "__main__":
    p = base_parser(__doc__)
    p.add_argument("--out", required=True)
    p.add_argument("--language", default="zh", help="the recipe's language (zh, en)")
    run(main, p)
