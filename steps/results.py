#!/usr/bin/env python3
"""Results stage: a RESULTS-style table of every decoded system (markdown, CSV and a bar plot)."""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

from senone.cli import base_parser, run
from senone.hmm.model import GmmHmm
from senone.io import require_file
from senone.score.report import plot_results, write_results_table

log = logging.getLogger("senone.steps.results")


def train_seconds(bench: Path) -> float | None:
    if not bench.is_file():
        return None
    with open(bench) as f:
        return round(float(next(csv.DictReader(f, delimiter="\t"))["s"]), 1)


def main(args) -> None:
    exp = Path(args.exp)
    rows = []
    metric = "CER"
    for system in args.systems:
        if system.startswith("nn/"):  # a hybrid network: its senones are its alignment stage's leaves
            info = json.loads(require_file(exp / system / "model.json", "nn_train").read_text())
            row: dict = {"system": system, "leaves": info["num_pdfs"], "gaussians": None,
                         "params_M": round(info["num_params"] / 1e6, 2)}
            bench = exp / "benchmarks" / f"nn_{system[3:]}.tsv"
        else:
            model = GmmHmm.load(exp / system)
            row = {"system": system, "leaves": model.num_pdfs, "gaussians": model.num_gauss, "params_M": None}
            bench = exp / "benchmarks" / f"{system}.tsv"
        for split in ("dev", "test"):
            scores = json.loads(require_file(exp / system / f"decode_{split}" / "scores.json", f"decode_{split}").read_text())
            metric = scores.get("metric", "CER")  # CER (Mandarin) or WER (English), as decode scored it
            row[f"{split}_{metric.lower()}"] = scores[metric.lower()]["rate"]
            if scores.get("syllables"):
                row[f"{split}_syl_tonal"] = scores["syllables"]["tonal"]["rate"]
                row[f"{split}_syl_toneless"] = scores["syllables"]["toneless"]["rate"]
        lm = json.loads(require_file(exp / system / "decode_dev" / "best_lm_weight.json", "decode_dev").read_text())
        row["lm_weight"] = lm["lm_weight"]
        row["train_seconds"] = train_seconds(bench)
        rows.append(row)
    if all(r["params_M"] is None for r in rows):  # GMM systems only: no network sizes to show
        for r in rows:
            del r["params_M"]
    write_results_table(rows, exp / "RESULTS.md", exp / "RESULTS.csv",
                        title=f"{exp.name}: {metric} % (LM weight chosen on dev)"
                              + (", syllable error rates %" if metric == "CER" else ""))
    plot_results(rows, exp / "RESULTS.png", title=f"{exp.name}: error rates per system")
    print((exp / "RESULTS.md").read_text())


if __name__ == "__main__":
    p = base_parser(__doc__)
    p.add_argument("--exp", required=True)
    p.add_argument("systems", nargs="+")
    run(main, p)
