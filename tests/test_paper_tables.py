"""The paper-tables stage: every row in the paper's order, our numbers beside the paper's, rank agreement."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from senone.nn.paper import PAPER_TABLES, paper_rows
from steps.paper_tables import spearman

ROOT = Path(__file__).resolve().parent.parent


def test_spearman_known_values():
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert spearman([1, 2, 2, 3], [1, 2, 3, 4]) == pytest.approx(0.9486833, rel=1e-6)  # ties share ranks
    assert spearman([1, 2], [2, 1]) != spearman([1, 2], [2, 1])  # NaN below 3 rows


def fake_results(nn_dir: Path, reverse_table: int, metric: str = "cer") -> None:
    """Result files as nn_train/decode write them; our error rate follows the paper's except in one table."""
    for r in paper_rows():
        d = nn_dir / f"t{r.table}r{r.index}"
        (d / "decode_dev").mkdir(parents=True)
        (d / "decode_test").mkdir()
        (d / "model.json").write_text(json.dumps({"num_params": 123456, "num_params_paper_dims": r.params_m * 1e6}))
        cer = (100 - r.cer) if r.table == reverse_table else r.cer / 3
        for split in ("dev", "test"):
            (d / f"decode_{split}" / "scores.json").write_text(json.dumps({
                "metric": metric, metric: {"rate": cer + (1 if split == "dev" else 0)},
                "syllables": {"tonal": {"rate": cer / 2}, "toneless": {"rate": 1.0}}}))


def run_tables(nn_dir: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    """The tables step as the workflow runs it."""
    return subprocess.run([sys.executable, "-m", "steps.paper_tables", "--nn-dir", str(nn_dir), "--out", str(out),
                           *extra], capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)},
                          cwd=ROOT)


def test_tables_in_paper_order_with_rank_agreement(tmp_path):
    nn_dir, out = tmp_path / "nn", tmp_path / "tables"
    fake_results(nn_dir, reverse_table=2)
    proc = run_tables(nn_dir, out, "--corpus", "toy", "--width-scale", "0.125")
    assert proc.returncode == 0, proc.stderr[-2000:]
    for table in PAPER_TABLES:
        with open(out / f"table{table.number}.csv") as f:
            rows = list(csv.DictReader(f))
        assert [r["network"] for r in rows] == [r.spec for r in table.rows]
        assert [float(r["paper_cer"]) for r in rows] == [r.cer for r in table.rows]
        assert all(float(r["test_cer"]) > 0 for r in rows)
        for r, paper in zip(rows, table.rows):  # our count at the paper's dimensions and width, as named
            if paper.params_spec is None:
                assert float(r["params_ours_paper_dims_M"]) == pytest.approx(paper.params_m, rel=0.03)
    md = (out / "tables.md").read_text()
    assert "Table 1" in md and "Table 5" in md
    t1 = (out / "table1.md").read_text()
    assert "rank correlation of our test CER with the paper's CER: 1.00" in t1
    assert "-1.00" in (out / "table2.md").read_text()  # the reversed table shows up as disagreement
    assert (out / "tables.png").stat().st_size > 0


def test_missing_row_is_a_clear_error(tmp_path):
    nn_dir = tmp_path / "nn"
    fake_results(nn_dir, reverse_table=0)
    (nn_dir / "t3r2" / "decode_test" / "scores.json").unlink()
    proc = run_tables(nn_dir, tmp_path / "t")
    assert proc.returncode == 2
    assert "t3r2/decode_test/scores.json: missing" in proc.stderr and "Traceback" not in proc.stderr


def test_english_recipe_tables_report_wer(tmp_path):
    """An English recipe (FSDD) scores words: the tables name their columns and rank the rows by WER."""
    nn_dir, out = tmp_path / "nn", tmp_path / "tables"
    fake_results(nn_dir, reverse_table=0, metric="wer")
    proc = run_tables(nn_dir, out)
    assert proc.returncode == 0, proc.stderr[-2000:]
    with open(out / "table1.csv") as f:
        header = next(csv.reader(f))
    assert "test_wer" in header and "dev_wer" in header and "test_cer" not in header
    assert "rank correlation of our test WER with the paper's CER: 1.00" in (out / "table1.md").read_text()


def test_rows_scored_with_different_metrics_are_refused(tmp_path):
    nn_dir = tmp_path / "nn"
    fake_results(nn_dir, reverse_table=0)
    (nn_dir / "t2r1" / "decode_dev" / "scores.json").write_text(json.dumps({"metric": "wer", "wer": {"rate": 5.0}}))
    (nn_dir / "t2r1" / "decode_test" / "scores.json").write_text(json.dumps({"metric": "wer", "wer": {"rate": 5.0}}))
    proc = run_tables(nn_dir, tmp_path / "t")
    assert proc.returncode == 2
    assert "different metrics" in proc.stderr and "Traceback" not in proc.stderr


def test_chosen_tables_only(tmp_path):
    """nn.tables.numbers: a CPU run may build Tables 1 and 5 only; the other rows need not exist."""
    nn_dir, out = tmp_path / "nn", tmp_path / "tables"
    fake_results(nn_dir, reverse_table=0)
    for d in nn_dir.iterdir():
        if d.name[1] not in "15":
            shutil.rmtree(d)
    proc = run_tables(nn_dir, out, "--tables", "5", "1")
    assert proc.returncode == 0, proc.stderr[-2000:]
    md = (out / "tables.md").read_text()
    assert "Tables 1, 5" in md and "## Table 1:" in md and "## Table 5:" in md and "## Table 2:" not in md
    assert not (out / "table2.csv").exists() and "Over all 7 rows" in md
    bad = run_tables(nn_dir, out, "--tables", "6")
    assert bad.returncode == 2 and "Tables 1-5" in bad.stderr
