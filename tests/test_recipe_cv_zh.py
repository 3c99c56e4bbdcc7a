"""End-to-end on real Mandarin: the cv_zh recipe on a slice of the shared Common Voice copy, read in place.

The slice is a release folder built in tmp: its TSVs list the first 35 clips of each of the 9 training
speakers (315 clips, about 30 minutes) and 30 clips of each of the first 4 dev speakers in client_id
order, which the recipe's alternate rule splits into dev (1st, 3rd) and test (2nd, 4th); ``clips`` is a
link to the shared copy's, so the MP3s are decoded and resampled from there. A short schedule (mono 20
passes, tri1 300 leaves / 2000 Gaussians, 2 LM weights), no network: about four minutes on 2 cores.

The corpus comes from ``SENONE_CV_ZH_DIR``, else ``<repo>/../shared/corpora/cv_zh``. Under CI
(``SENONE_CI=1``) a missing corpus FAILS the test; elsewhere it is skipped with the path it looked at.

The bound (tri1 test CER below 85 %) is set against the control: the same model with the acoustics
switched off (LM weight 1000) scores 100 % (every character deleted: the empty hypothesis is the LM's
cheapest path), so passing means the MP3s, the resampling, features, lexicon, models and graph carry
the speech through. Measured with this slice: see the test's assertion message and BENCHMARKS.md.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import pytest
import yaml

from tests.e2e import ROOT, decode_without_acoustics, error_rate, snakemake
from tests.test_recipe_fsdd import IN_CI

CV_DIR = Path(os.environ.get("SENONE_CV_ZH_DIR") or ROOT.parent / "shared" / "corpora" / "cv_zh").resolve()
SMALL = {
    "systems": ["mono", "tri1"],
    "gmm": {"mono": {"num_iters": 20, "max_iter_inc": 15, "tot_gauss": 500,
                     "realign_iters": [1, 2, 3, 4, 5, 6, 8, 10, 12, 15, 18]},
            "tri1": {"num_leaves": 300, "tot_gauss": 2000, "num_iters": 12, "max_iter_inc": 8, "realign_iters": [4, 8]}},
    "decode": {"lm_weights": [9, 13]},
}
TRAIN_PER_SPEAKER, DEV_SPEAKERS, DEV_PER_SPEAKER = 35, 4, 30

pytestmark = pytest.mark.slow


def build_slice(src: Path, dst: Path) -> dict[str, int]:
    """The slice's TSVs under ``dst/zh-CN`` (clips linked to ``src``); rows per TSV."""
    lang = dst / "zh-CN"
    lang.mkdir(parents=True)
    (lang / "clips").symlink_to(src / "zh-CN" / "clips", target_is_directory=True)
    counts = {}
    for split in ("train", "dev"):
        with open(src / "zh-CN" / f"{split}.tsv", encoding="utf-8") as f:
            lines = f.read().splitlines()
        rows = list(csv.reader(lines[1:], delimiter="\t", quoting=csv.QUOTE_NONE))
        speakers = sorted({r[0] for r in rows})
        if split == "dev":
            speakers = speakers[:DEV_SPEAKERS]
        per = TRAIN_PER_SPEAKER if split == "train" else DEV_PER_SPEAKER
        kept = [line for spk in speakers for line in [lines[1 + i] for i, r in enumerate(rows) if r[0] == spk][:per]]
        (lang / f"{split}.tsv").write_text("\n".join([lines[0], *kept]) + "\n", encoding="utf-8")
        counts[split] = len(kept)
    return counts


@pytest.fixture(scope="module")
def cv_run(tmp_path_factory) -> Path:
    if not (CV_DIR / "zh-CN" / "train.tsv").is_file():
        why = f"cv_zh not found at {CV_DIR} (set SENONE_CV_ZH_DIR to the folder holding zh-CN/)"
        if IN_CI:
            pytest.fail(f"CI must run the cv_zh recipe: {why}")
        pytest.skip(why)
    work = tmp_path_factory.mktemp("cv_zh")
    counts = build_slice(CV_DIR, work / "cv")
    assert counts == {"train": 9 * TRAIN_PER_SPEAKER, "dev": DEV_SPEAKERS * DEV_PER_SPEAKER}
    (work / "small.yaml").write_text(yaml.safe_dump(SMALL))
    proc = snakemake(work, "exp/cv_zh/tri1/decode_test/cer.txt", "--configfile", str(work / "small.yaml"),
                     "--config", "recipe=cv_zh", f"corpus_dir={work / 'cv'}")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return work


def test_cv_zh_slice_end_to_end(cv_run):
    data, exp = cv_run / "data" / "cv_zh", cv_run / "exp" / "cv_zh"
    report = json.loads((data / "manifests" / "cv_zh_report.json").read_text())
    assert {s: v["utterances"] for s, v in report["splits"].items()} == {"train": 315, "dev": 60, "test": 60}
    assert {s: v["speakers"] for s, v in report["splits"].items()} == {"train": 9, "dev": 2, "test": 2}
    audio = json.loads((data / "manifests" / "audio.json").read_text())
    assert audio["recordings"] == {"resampled 48000 -> 16000 Hz": 435}
    cer = error_rate(exp / "tri1" / "decode_test" / "cer.txt")
    assert cer < 85.0, f"tri1 test CER {cer}"
    assert (exp / "tri1" / "decode_test" / "syllable_er.txt").is_file()


def test_cv_zh_control_without_acoustics(cv_run):
    from senone.config import load_config

    cfg = load_config("cv_zh", {**SMALL, "corpus_dir": str(cv_run / "cv")})
    out = decode_without_acoustics(cv_run, "cv_zh", cfg, system="tri1")
    assert error_rate(out / "cer.txt") > 98.0
