"""Helpers of the end-to-end recipe tests: run the Snakefile, and decode with the acoustics switched off."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def snakemake(workdir: Path, *args: str, cores: int = 2) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "--directory", str(workdir),
                           "--cores", str(cores), *args], capture_output=True, text=True, timeout=900)


def error_rate(path: Path) -> float:
    """The rate of a ``cer.txt``/``wer.txt`` (Kaldi's ``%WER 12.34 [ ...`` line)."""
    return float(path.read_text().splitlines()[0].split()[1])


def decode_without_acoustics(run_dir: Path, recipe: str, cfg: dict, system: str = "mono", split: str = "test") -> Path:
    """Decode ``split`` with LM weight 1000 (acoustic scale 0.001): what a system that heard nothing scores.

    The control that justifies an end-to-end bound. Returns the decode directory.
    """
    cfg = {**cfg, "decode": {**cfg["decode"], "lm_weights": [1000]}}
    data, exp = run_dir / "data" / recipe, run_dir / "exp" / recipe
    out = run_dir / f"control_{system}_{split}"
    proc = subprocess.run(
        [sys.executable, "-m", "steps.decode", "--conf", json.dumps(cfg), "--model-dir", str(exp / system),
         "--graph", str(exp / system / "graph"), "--cuts", str(data / "manifests" / f"{recipe}_cuts_{split}.jsonl.gz"),
         "--feats", str(data / "feats" / "gmm" / f"cuts_{split}.jsonl.gz"),
         "--cmvn", str(data / "feats" / "gmm" / f"cmvn_{split}.npz"), "--sweep", "--out", str(out)],
        capture_output=True, text=True, cwd=run_dir, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr[-2000:]
    return out
