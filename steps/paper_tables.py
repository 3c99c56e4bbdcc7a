#!/usr/bin/env python3
"""Paper tables stage: Tables 1–5 of the reference paper rebuilt from this recipe's trained networks.

For every row (network ``t<table>r<row>`` under exp/<recipe>/nn/) the table gives the paper's
#Params next to ours at the paper's dimensions (93 inputs, 5529 senones), the size actually trained
(widths scaled by ``nn.tables.width_scale``), our dev and test CER or WER, the recipe's metric (and tonal syllable error rate),
and the paper's CER on HKUST. Writes ``table<N>.md`` / ``table<N>.csv`` per table, ``tables.md``
(all five, plus how well our ordering of the rows agrees with the paper's: Spearman's rank
correlation per table and over all rows) and ``tables.png`` (bars in the paper's row order).
"""

from __future__ import annotations

import csv
import io
import json
import logging
from pathlib import Path

import numpy as np

from senone import SenoneError
from senone.cli import base_parser, run
from senone.io import require_file, write_text
from senone.nn.model import count_params
from senone.nn.paper import PAPER_LAYOUT, PAPER_NUM_PDFS, PAPER_TABLES
from senone.score.report import plot_paper_tables

log = logging.getLogger("senone.steps.paper_tables")

def columns(metric: str) -> list[str]:
    """Table columns; ours are named by the recipe's metric (cer for Mandarin, wer for English recipes)."""
    return ["network", "params_paper_M", "params_ours_paper_dims_M", "params_trained_M", f"dev_{metric}",
            f"test_{metric}", "test_syl_tonal", "paper_cer"]


def spearman(a: list[float], b: list[float]) -> float:
    """Spearman's rank correlation (average ranks for ties); NaN for fewer than 3 pairs."""
    if len(a) < 3:
        return float("nan")

    def ranks(v: list[float]) -> np.ndarray:
        v = np.asarray(v, dtype=float)
        order = v.argsort(kind="stable")
        r = np.empty(len(v))
        r[order] = np.arange(len(v))
        for val in np.unique(v):  # ties share their average rank
            r[v == val] = r[v == val].mean()
        return r

    ra, rb = ranks(a), ranks(b)
    if ra.std() == 0 or rb.std() == 0:
        return float("nan")
    return float(np.corrcoef(ra, rb)[0, 1])


def row_result(nn_dir: Path, name: str) -> tuple[str, dict]:
    """(metric, columns of one row) from a network's model.json and its dev/test scores."""
    info = json.loads(require_file(nn_dir / name / "model.json", "nn_train").read_text())
    out = {"params_trained_M": info["num_params"] / 1e6}
    for split in ("dev", "test"):
        scores = json.loads(require_file(nn_dir / name / f"decode_{split}" / "scores.json", f"nn_decode_{split}").read_text())
        metric = str(scores.get("metric", "cer")).lower()
        out[f"{split}_{metric}"] = scores[metric]["rate"]
        if split == "test" and scores.get("syllables"):
            out["test_syl_tonal"] = scores["syllables"]["tonal"]["rate"]
    return metric, out


def fmt(v) -> str:
    if v is None:
        return ""
    return f"{v:.2f}" if isinstance(v, float) else str(v)


def main(args) -> None:
    nn_dir, out = Path(args.nn_dir), Path(args.out)
    wanted = sorted(set(args.tables or [t.number for t in PAPER_TABLES]))
    unknown = [n for n in wanted if n not in {t.number for t in PAPER_TABLES}]
    if unknown:
        raise SenoneError(f"--tables {unknown}: the paper has Tables 1-5 (nn.tables.numbers)")
    chosen = [t for t in PAPER_TABLES if t.number in wanted]
    results = {f"t{r.table}r{r.index}": row_result(nn_dir, f"t{r.table}r{r.index}")
               for table in chosen for r in table.rows}
    metrics = {m for m, _ in results.values()}
    if len(metrics) != 1:
        raise SenoneError(f"{nn_dir}: the rows were scored with different metrics {sorted(metrics)}; "
                          "re-run `snakemake tables` so that all rows come from the same recipe")
    metric = metrics.pop()
    cols, label = columns(metric), metric.upper()
    tables = []
    names = "Tables 1–5" if len(chosen) == len(PAPER_TABLES) else "Table" + "s" * (len(chosen) > 1) + " " + ", ".join(
        str(t.number) for t in chosen)
    lines = [f"# The reference paper's {names} on {args.corpus} (widths x{args.width_scale:g})", "",
             f"Ours: {label} % on this corpus (LM weight chosen on dev); paper: CER % on HKUST dev. #Params in millions: "
             "the paper's, ours at the paper's dimensions (93 inputs, 5529 senones, full width), and what was trained "
             "here.", ""]
    all_ours, all_paper = [], []
    for table in chosen:
        rows = []
        for r in table.rows:
            res = results[f"t{r.table}r{r.index}"][1]
            full = count_params(r.spec, PAPER_LAYOUT, PAPER_NUM_PDFS) / 1e6  # the network as named, full width
            rows.append({"network": r.spec, "params_paper_M": r.params_m, "params_ours_paper_dims_M": full, **res,
                         "paper_cer": r.cer})
        ours, paper = [row[f"test_{metric}"] for row in rows], [row["paper_cer"] for row in rows]
        all_ours += ours
        all_paper += paper
        rho = spearman(ours, paper)
        tables.append((table, rows, rho))
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
        write_text(out / f"table{table.number}.csv", buf.getvalue())
        md = [f"## Table {table.number}: {table.title}", "", "| " + " | ".join(cols) + " |",
              "|---|" + "---:|" * (len(cols) - 1)]
        md += ["| " + " | ".join(fmt(row.get(c)) for c in cols) + " |" for row in rows]
        md += ["", f"Spearman rank correlation of our test {label} with the paper's CER: {rho:.2f}" if np.isfinite(rho)
               else "Spearman rank correlation: n/a (fewer than 3 rows or all equal)", ""]
        write_text(out / f"table{table.number}.md", "\n".join(md))
        lines += md
    overall = spearman(all_ours, all_paper)
    lines += [f"Over all {len(all_ours)} rows: Spearman rank correlation {overall:.2f}.", ""]
    write_text(out / "tables.md", "\n".join(lines))
    plot_paper_tables([(t.number, t.title, rows) for t, rows, _ in tables], out / "tables.png", metric=metric,
                      title=f"{args.corpus}: paper tables (widths x{args.width_scale:g})")
    print((out / "tables.md").read_text())


if __name__ == "__main__":
    p = base_parser(__doc__)
    p.add_argument("--nn-dir", required=True, help="exp/<recipe>/nn")
    p.add_argument("--out", required=True, help="exp/<recipe>/tables")
    p.add_argument("--corpus", default="this corpus")
    p.add_argument("--width-scale", type=float, default=1.0)
    p.add_argument("--tables", type=int, nargs="*", help="which tables (default: all five)")
    run(main, p)
