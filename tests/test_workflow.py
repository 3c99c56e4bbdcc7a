"""End-to-end: the Snakefile on a tiny synth_zh (100 training utterances, 12 monophone passes, the
default CPU-sized CLSTM for 3 epochs).

The bound: on this configuration the monophone reaches about 58% test CER (deterministic for the
seed). The control decode below, with the acoustic model switched off (LM weight 1000), scores
100% — what a system that learned nothing gets — so a CER under 75% means the whole chain (corpus,
lexicon, features, training, graph, decoding, scoring) carries real information, with a margin for
numerical differences between machines.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
# the default network on the tiny run: about 60% test CER (3 epochs on 4 minutes of audio); the bound's
# justification is the monophone's (a decode that learned nothing scores 100%)
NN_BOUND = 75.0
TINY = {
    "corpus": {"max_utterances": 100, "dev_minutes": 1.5, "test_minutes": 1.5},
    "gmm": {"mono": {"num_iters": 12, "max_iter_inc": 8, "tot_gauss": 400, "realign_iters": [1, 2, 3, 4, 5, 6, 8, 10]},
            "tri1": {"num_leaves": 150, "tot_gauss": 600, "num_iters": 8, "max_iter_inc": 5, "realign_iters": [3, 6]},
            "tri2": {"num_leaves": 150, "tot_gauss": 600, "num_iters": 8, "max_iter_inc": 5, "realign_iters": [3, 6],
                     "mllt_iters": [2, 4]},
            "tri3": {"num_leaves": 150, "tot_gauss": 600, "num_iters": 8, "max_iter_inc": 5, "realign_iters": [3, 6],
                     "fmllr_iters": [2, 4]}},
    # the tiny corpus leaves ~3600 sentences unspoken: as LM text they would triple the graphs and slow every decode
    # of its weak models; test_lm_extra_text_is_wired checks the wiring instead
    "lm": {"extra_text": []},
    "decode": {"lm_weights": [7, 10, 13], "lm_weight_extend": 0},
    "nn": {"train": {"num_epochs": 3}, "decode": {"lm_weights": [7, 10, 13]}},
}


def snakemake(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "--directory", str(workdir),
                           "--cores", "2", *args], capture_output=True, text=True, timeout=900)


def planned_jobs(proc: subprocess.CompletedProcess) -> dict[str, str]:
    """What a ``--dry-run`` plans: rule name → the text of its (last) job block, from the ``rule NAME:`` (or
    ``localrule NAME:``) lines."""
    blocks: dict[str, str] = {}
    name = None
    for line in (proc.stdout + proc.stderr).splitlines():
        head = line.strip()
        if head.startswith(("rule ", "localrule ")) and head.endswith(":"):
            name = head.split(" ", 1)[1][:-1]
            blocks[name] = ""
        elif name is not None:
            blocks[name] += line + "\n"
    return blocks


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("e2e")
    (work / "tiny.yaml").write_text(yaml.safe_dump(TINY))
    proc = snakemake(work, "decode", "--configfile", str(work / "tiny.yaml"))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return work


def cer(path: Path) -> float:
    line = path.read_text().splitlines()[0]
    assert line.startswith("%CER ")
    return float(line.split()[1])


def test_decode_target_reaches_bound(tiny_run):
    exp = tiny_run / "exp" / "synth_zh"
    test_cer = cer(exp / "mono" / "decode_test" / "cer.txt")
    assert test_cer < 75.0
    best = json.loads((exp / "mono" / "decode_dev" / "best_lm_weight.json").read_text())
    assert best["lm_weight"] in (7, 10, 13)
    scores = json.loads((exp / "mono" / "decode_test" / "scores.json").read_text())
    assert scores["syllables"]["toneless"]["rate"] <= scores["syllables"]["tonal"]["rate"]
    # stage outputs a later stage or a Kaldi user reads
    for rel in ["mono/final.mdl", "mono/tree", "mono/ali.ark", "mono/graph/HCLG.fst", "mono/decode_test/per_utt.txt",
                "tri1/tree", "tri2/final.mat", "tri3/trans.ark", "tri3/decode_test/trans.ark", "RESULTS.md",
                "RESULTS.png", "config.yaml"]:
        assert (exp / rel).is_file(), rel
    merged = yaml.safe_load((exp / "config.yaml").read_text())
    assert merged["gmm"]["mono"]["num_iters"] == 12 and merged["recipe"] == "synth_zh"


def test_control_without_acoustics_is_far_worse(tiny_run):
    """Decoding with the acoustic model switched off scores far above the bound (justifies it)."""
    from senone.config import load_config

    cfg = load_config("synth_zh", TINY)
    cfg["decode"]["lm_weights"] = [1000]
    data, exp = tiny_run / "data" / "synth_zh", tiny_run / "exp" / "synth_zh"
    out = tiny_run / "control"
    proc = subprocess.run(
        [sys.executable, "-m", "steps.decode", "--conf", json.dumps(cfg), "--model-dir", str(exp / "mono"),
         "--graph", str(exp / "mono" / "graph"), "--cuts", str(data / "manifests" / "synth_zh_cuts_test.jsonl.gz"),
         "--feats", str(data / "feats" / "gmm" / "cuts_test.jsonl.gz"),
         "--cmvn", str(data / "feats" / "gmm" / "cmvn_test.npz"), "--sweep", "--out", str(out)],
        capture_output=True, text=True, cwd=tiny_run, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert cer(out / "cer.txt") > 90.0


def test_rerun_has_nothing_to_do(tiny_run):
    """Every stage's outputs are complete: a second run schedules no job."""
    proc = snakemake(tiny_run, "decode", "--configfile", str(tiny_run / "tiny.yaml"), "--dry-run")
    assert proc.returncode == 0
    assert "Nothing to be done" in proc.stdout + proc.stderr or "decode" in proc.stdout
    assert [j for j in planned_jobs(proc) if j != "decode"] == []


def test_unknown_recipe_is_one_clear_line(tmp_path):
    proc = snakemake(tmp_path, "decode", "--config", "recipe=no_such_corpus", "--dry-run")
    assert proc.returncode != 0
    assert "recipe 'no_such_corpus' does not exist" in proc.stderr + proc.stdout
    assert "Traceback" not in proc.stderr


def test_nested_command_line_values_are_typed():
    """Snakemake hands nested --config scalars over as strings; they must mean what a recipe file means."""
    from senone.config import typed_cli_value

    given = {"dev_hours": "0.5", "seed": "3", "valid_from": "null", "pitch": "true", "dir": "/data/x",
             "lm_weights": ["7", "9.5"], "spec": "CLstm384P256+Pooling+3xReLU2000", "note": "a: b", "n": {"m": "0.001"}}
    assert typed_cli_value(given) == {"dev_hours": 0.5, "seed": 3, "valid_from": None, "pitch": True, "dir": "/data/x",
                                      "lm_weights": [7, 9.5], "spec": "CLstm384P256+Pooling+3xReLU2000",
                                      "note": "a: b", "n": {"m": 0.001}}


def test_senone_alignments_for_the_networks(tiny_run, tmp_path):
    """The chosen stage's alignments as per-frame pdf-ids, frame for frame (nn.alignments_from picks the stage).

    The workflow is only dry-run with another stage, and the step writes to tmp: the shared tiny run keeps
    tri3's senones, which the default network of the tests below is trained on."""
    from senone.hmm.model import GmmHmm
    from senone.io import read_alignments

    dry = snakemake(tiny_run, "exp/synth_zh/senone_ali/pdf.ark", "--configfile", str(tiny_run / "tiny.yaml"),
                    "--config", "nn={alignments_from: tri2}", "--dry-run")
    assert dry.returncode == 0, dry.stderr[-2000:]
    # fMLLR inputs for the networks need a SAT alignment stage: one clear line otherwise
    refused = snakemake(tiny_run, "decode", "--configfile", str(tiny_run / "tiny.yaml"), "--config",
                        "nn={alignments_from: tri2, fmllr_features: true}", "--dry-run")
    assert refused.returncode != 0
    assert "nn.fmllr_features needs a SAT stage" in refused.stderr + refused.stdout
    block = dry.stdout.split("rule senone_ali:", 1)[1]
    assert "exp/synth_zh/tri2/final.pkl" in next(l for l in block.splitlines() if l.strip().startswith("input:"))
    exp = tiny_run / "exp" / "synth_zh"
    proc = subprocess.run([sys.executable, "-m", "steps.export_senone_ali", "--stage-dir", str(exp / "tri2"),
                           "--out", str(tmp_path / "senone_ali")], capture_output=True, text=True, cwd=tiny_run,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr[-2000:]
    info = json.loads((tmp_path / "senone_ali" / "senones.json").read_text())
    model = GmmHmm.load(exp / "tri2")
    assert info["source"].endswith("tri2") and info["num_pdfs"] == model.num_pdfs
    pdfs, tids = read_alignments(tmp_path / "senone_ali" / "pdf.ark"), read_alignments(exp / "tri2" / "ali.ark")
    assert pdfs.keys() == tids.keys()
    for utt, ali in tids.items():
        np.testing.assert_array_equal(pdfs[utt], model.tid2pdf()[ali])
        assert pdfs[utt].min() >= 0 and pdfs[utt].max() < model.num_pdfs


def test_network_features_share_the_gmm_frames(tiny_run):
    """feats for kind nn: every cut has the GMM features' frame count, i.e. its alignment's length, and
    settings of features.nn re-run no GMM stage."""
    from lhotse import CutSet

    from senone.feats.nn import iter_nn_inputs, load_nn_cmvn
    from senone.io import read_alignments

    targets = [f"data/synth_zh/feats/nn/cuts_{split}.jsonl.gz" for split in ("train", "dev")]
    proc = snakemake(tiny_run, *targets, "--configfile", str(tiny_run / "tiny.yaml"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    feats = tiny_run / "data" / "synth_zh" / "feats"
    nn = {c.id: c.num_frames for c in CutSet.from_file(feats / "nn" / "cuts_train.jsonl.gz")}
    assert nn == {c.id: c.num_frames for c in CutSet.from_file(feats / "gmm" / "cuts_train.jsonl.gz")}
    alignments = read_alignments(tiny_run / "exp" / "synth_zh" / "mono" / "ali.ark")
    assert len(alignments) > 50
    assert {utt: len(ali) for utt, ali in alignments.items()} == {utt: nn[utt] for utt in alignments}
    conf = {"cmvn": "global", "norm_vars": True, "pitch": True}  # synth_zh appends the 3 pitch values
    cwd = os.getcwd()
    os.chdir(tiny_run)  # storage paths in the cuts are relative to the workflow's directory, as Kaldi's
    try:
        stats = load_nn_cmvn(feats / "nn", "dev", conf)
        dev = list(iter_nn_inputs(feats / "nn" / "cuts_dev.jsonl.gz", stats, conf))
    finally:
        os.chdir(cwd)
    assert dev and all(x.shape[1] == 96 and np.isfinite(x).all() for _, x in dev)  # 31 x (static, Δ, ΔΔ) + 3
    proc = snakemake(tiny_run, "decode", "--configfile", str(tiny_run / "tiny.yaml"), "--config",
                     "features={nn: {cmvn: global}}", "--dry-run")
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout + proc.stderr
    jobs = set(planned_jobs(proc))
    assert jobs <= {"feats", "nn_train", "nn_decode_dev", "nn_decode_test", "results", "decode"}, jobs
    assert "nn_train" in jobs  # the network's inputs changed, so it retrains...
    scheduled = [l for l in out.splitlines() if l.strip().startswith("output:")]
    assert not [l for l in scheduled if "feats/gmm" in l]  # ...but no GMM feature or stage runs again


def test_default_network_trained_and_decoded(tiny_run):
    """`decode` trains the recipe's default network on the senone alignments (torchrun, 2 processes) and
    decodes it through the alignment stage's HCLG; the RESULTS table reports it beside the GMM systems."""
    exp = tiny_run / "exp" / "synth_zh"
    net = exp / "nn" / "clstm"
    for rel in ["final.pt", "pdf_counts.txt", "model.json", "history.json", "training_curve.png",
                "checkpoints/epoch_003.pt", "decode_dev/best_lm_weight.json", "decode_test/per_utt.txt"]:
        assert (net / rel).is_file(), rel
    info = json.loads((net / "model.json").read_text())
    assert info["spec"].startswith("CLstm") and info["alignments"].endswith("tri3")
    # synth_zh trains with nn.processes: 2, so this is torchrun with DistributedDataParallel on 2 CPU processes (gloo)
    assert info["processes"] == 2 and info["features"]["pitch"]
    assert info["fmllr"] is None and info["layout"] == [31, 3, 3]
    history = json.loads((net / "history.json").read_text())["epochs"]
    assert len(history) == 3 and history[-1]["train_loss"] < history[0]["train_loss"]
    assert cer(net / "decode_test" / "cer.txt") < NN_BOUND
    assert "nn/clstm" in (exp / "RESULTS.md").read_text()


def test_lm_extra_text_is_wired(tiny_run):
    """synth_zh's lm.extra_text (the never-spoken sentences prepare writes) is an input of lang and lm: naming it
    re-runs the lexicon and the LM (and what depends on them), not the corpus or its features."""
    text = "data/synth_zh/manifests/synth_zh_lm_text.txt"
    assert (tiny_run / text).is_file()  # prepare writes it whatever the recipe says
    proc = snakemake(tiny_run, "decode", "--configfile", str(tiny_run / "tiny.yaml"), "--config",
                     f"lm={{extra_text: [{text}]}}", "--dry-run")
    assert proc.returncode == 0, proc.stderr[-2000:]
    blocks = planned_jobs(proc)
    assert {"lang", "lm"} <= blocks.keys() and "prepare" not in blocks and "feats" not in blocks
    for rule in ("lang", "lm"):
        assert text in next(l for l in blocks[rule].splitlines() if l.strip().startswith("input:"))


def test_network_with_fmllr_inputs(tiny_run):
    """nn.fmllr_features: tri3's speaker-adapted features (40 per frame) appended to the network's input, the
    training speakers' transforms from SAT training, dev/test's from tri3's own decodes."""
    fmllr = "nn={fmllr_features: true, models: {fm: {spec: 'CLstm384P256+Pooling+3xReLU2000', width_scale: 0.0625, " \
            "train: {num_epochs: 1}}}}"
    target = "exp/synth_zh/nn/fm/decode_test/cer.txt"
    proc = snakemake(tiny_run, target, "--configfile", str(tiny_run / "tiny.yaml"), "--config", fmllr)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    net = tiny_run / "exp" / "synth_zh" / "nn" / "fm"
    info = json.loads((net / "model.json").read_text())
    assert info["fmllr"] == {"stage": "tri3", "dim": 40} and info["layout"] == [31, 3, 3 + 40]
    assert "speaker-adapted features (40 per frame), transforms from exp/synth_zh/tri3/decode_test/trans.ark" in \
        (net / "log" / "decode_test.log").read_text()
    assert cer(net / "decode_test" / "cer.txt") < 100.0


def test_decoding_settings_do_not_retrain_the_network(tiny_run):
    """A new LM-weight grid or prior scale for the networks re-runs their decodes, never their training."""
    proc = snakemake(tiny_run, "decode", "--configfile", str(tiny_run / "tiny.yaml"), "--config",
                     "nn={decode: {lm_weights: [8, 12]}, prior_scale: 0.8}", "--dry-run")
    assert proc.returncode == 0, proc.stderr[-2000:]
    jobs = set(planned_jobs(proc))
    assert {"nn_decode_dev", "nn_decode_test"} <= jobs <= {"nn_decode_dev", "nn_decode_test", "results", "decode"}, jobs
