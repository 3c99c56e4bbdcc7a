"""Reruns that are always right (issue 16): resume state keyed by settings and input data, every file a rule
reads declared as its input, rules re-run only for what they use, the same command after a kill finishes the
work, logs kept across a resume, no temporaries left, clear errors for unreadable text and audio.

The workflow checks are dry runs over a tiny custom corpus whose every output is a placeholder that
``snakemake --touch`` records as done (no stage runs); the kill -9 check is a real FSDD run (slow)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml

from senone import SenoneError
from senone.gmm.mono import MonoConfig, train_mono
from senone.gmm.triphone import TriConfig, train_triphone
from tests import toy_hmm
from tests.e2e import ROOT, snakemake
from tests.test_lda_mllt import toy_lang

FSDD_DIR = Path(os.environ.get("SENONE_FSDD_DIR") or ROOT.parent / "shared" / "corpora" / "fsdd").resolve()
MONO = MonoConfig(num_iters=3, max_iter_inc=2, tot_gauss=20, realign_iters=(1, 2), init_subset=30)


def mono(feats, out, transcripts=None, cfg=MONO, dim=toy_hmm.DIM):
    transcripts = transcripts if transcripts is not None else toy_hmm.make_corpus(30, seed=3)[0]
    return train_mono(toy_hmm.topology(), toy_hmm.lexicon_fst(), [], transcripts, feats, dim, out, cfg)


def same_model(a, b) -> bool:
    return all(np.array_equal(np.asarray(a.am.get_pdf(p).means_invvars), np.asarray(b.am.get_pdf(p).means_invvars))
               for p in range(a.am.num_pdfs)) and a.am.num_gauss == b.am.num_gauss


# ------------------------------------------------------------------ 1. resume state keyed by the inputs

def test_monophone_checkpoint_of_other_features_is_not_resumed(tmp_path):
    """The checkpoint of a run on the old features must not give the new run its model (issue: a feature
    change "resumed at pass 40" and wrote the old features' model)."""
    transcripts, feats, _ = toy_hmm.make_corpus(30, seed=3)
    mono(feats, tmp_path / "run")  # the library keeps its checkpoint (the workflow deletes it when done)
    assert (tmp_path / "run" / "checkpoint.pkl").is_file()
    changed = {u: (x * 1.3 + 0.2).astype(np.float32) for u, x in feats.items()}  # e.g. other mel settings
    again = mono(changed, tmp_path / "run")
    fresh = mono(changed, tmp_path / "fresh")
    assert same_model(again.model, fresh.model)
    assert again.history[-1].like_per_frame == fresh.history[-1].like_per_frame


def test_monophone_checkpoint_of_another_dimension_is_not_resumed(tmp_path):
    """num_ceps changed: the old checkpoint crashed every run ("Dim mismatch") until deleted by hand."""
    transcripts, feats, _ = toy_hmm.make_corpus(30, seed=3)
    mono(feats, tmp_path)
    wider = {u: np.hstack([x, x[:, :2]]) for u, x in feats.items()}
    result = mono(wider, tmp_path, dim=toy_hmm.DIM + 2)
    assert result.model.dim == toy_hmm.DIM + 2


def test_monophone_resumes_on_the_same_inputs(tmp_path):
    """A killed run resumes (same settings, same data) and ends where an uninterrupted one does."""
    transcripts, feats, _ = toy_hmm.make_corpus(30, seed=3)
    full = mono(feats, tmp_path / "a")
    mono(feats, tmp_path / "b", cfg=MonoConfig(**{**MONO.__dict__, "num_iters": 2}))  # "killed" after 2 passes
    resumed = mono(feats, tmp_path / "b")
    assert same_model(full.model, resumed.model)


def test_tree_stage_checkpoint_of_other_alignments_is_not_resumed(tmp_path):
    transcripts, feats, _ = toy_hmm.make_corpus(40, seed=5)
    prev = mono(feats, tmp_path / "mono", transcripts, MonoConfig(num_iters=5, max_iter_inc=3, tot_gauss=20,
                                                                  realign_iters=(1, 2, 3), init_subset=40))
    lang = toy_lang(tmp_path / "lang")
    cfg = TriConfig(num_leaves=10, tot_gauss=30, min_leaf_count=20.0, num_iters=4, max_iter_inc=2, realign_iters=(2,))

    def tri(alignments, out):
        return train_triphone(lang, toy_hmm.lexicon_fst(), transcripts, feats, prev.model, alignments, out, cfg)

    tri(prev.alignments, tmp_path / "tri")
    fewer = dict(sorted(prev.alignments.items())[5:])  # the previous stage changed (re-trained, realigned)
    again, fresh = tri(fewer, tmp_path / "tri"), tri(fewer, tmp_path / "fresh")
    assert same_model(again.model, fresh.model)


def _nn_run(out, labels_feats, kill_after=None):
    from senone.nn.train import TrainConfig, train
    from tests.test_nn_train import CFG, ToyLstm

    feats, labels = labels_feats
    utts = sorted(feats)
    torch.manual_seed(0)
    model = ToyLstm()

    def on_epoch(history):
        if kill_after is not None and len(history) == kill_after:
            raise KeyboardInterrupt("simulated kill")

    return train(model, utts[4:], utts[:4], feats.__getitem__, labels, TrainConfig(**{**CFG, "num_epochs": 2}), out,
                 model_info={"spec": "toy", "num_pdfs": 4}, device=torch.device("cpu"), on_epoch=on_epoch)


@pytest.mark.parametrize("change", ["alignments", "features"])
def test_network_checkpoints_are_not_resumed_after_their_inputs_changed(tmp_path, change):
    from tests.test_nn_train import toy_data

    torch.set_num_threads(1)
    feats, labels = toy_data()
    with pytest.raises(KeyboardInterrupt):
        _nn_run(tmp_path, (feats, labels), kill_after=1)
    assert _nn_run(tmp_path / "control", (feats, labels)).resumed_from == 0
    if change == "alignments":  # the same utterances, other senone targets (e.g. a re-trained tri3)
        labels = {u: (y + 1) % 4 for u, y in labels.items()}
    else:  # other features (e.g. features.nn changed upstream)
        feats = {u: (x * 2.0).astype(np.float32) for u, x in feats.items()}
    assert _nn_run(tmp_path, (feats, labels)).resumed_from == 0


# ------------------------------------------------------------------ 5. temporaries, logs

def test_a_killed_writers_temporary_is_removed_by_the_next_writer(tmp_path):
    from senone.io import atomic_open

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    stale = tmp_path / f".checkpoint.pkl.{dead}.k3x9a2b1.tmp.pkl"  # what a kill -9 during pickle.dump leaves
    stale.write_bytes(b"")
    live = tmp_path / f".checkpoint.pkl.{os.getppid()}.zz11yy22.tmp.pkl"  # another process still writing
    live.write_bytes(b"")
    with atomic_open(tmp_path / "checkpoint.pkl", "wb") as f:
        f.write(b"state")
    assert not stale.exists() and live.exists()
    assert (tmp_path / "checkpoint.pkl").read_bytes() == b"state"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, "checkpoint.pkl"])


def test_a_resumed_stage_appends_to_its_log(tmp_path):
    code = ("import logging, sys; from senone.cli import setup_logging; setup_logging(sys.argv[1]); "
            "logging.getLogger('senone').info('attempt %s', sys.argv[2])")
    log = tmp_path / "log" / "train.log"
    for attempt in ("one", "two"):
        subprocess.run([sys.executable, "-c", code, str(log), attempt], check=True, cwd=ROOT, capture_output=True)
    lines = log.read_text().splitlines()
    assert [line.split(": ")[-1] for line in lines if "attempt" in line and "INFO" in line] == ["attempt one",
                                                                                                "attempt two"]
    assert sum(line.startswith("==== ") for line in lines) == 2


# ------------------------------------------------------------------ 2. and 4. what re-runs (dry runs)

def tiny_corpus(root: Path) -> Path:
    """A folder corpus: 4 speakers x 3 utterances of English words (noise as audio: nothing is run)."""
    words = ["YES NO", "NO", "YES"]
    for s in range(4):
        for k, text in enumerate(words):
            path = root / f"spk{s}" / f"u{k}.wav"
            path.parent.mkdir(parents=True, exist_ok=True)
            sf.write(path, np.random.default_rng(s * 10 + k).uniform(-0.2, 0.2, 8000).astype(np.float32), 16000)
            path.with_suffix(".txt").write_text(text + "\n")
    return root


def dry_run(work: Path, *args: str) -> dict[str, str]:
    from tests.test_workflow import planned_jobs

    proc = snakemake(work, "decode", "--dry-run", "--configfile", str(work / "run.yaml"), *args, cores=1)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return planned_jobs(proc)


@pytest.fixture(scope="module")
def touched(tmp_path_factory) -> Path:
    """A custom-recipe run directory whose every stage is recorded as done (placeholders + snakemake --touch)."""
    work = tmp_path_factory.mktemp("touched")
    corpus = tiny_corpus(work / "corpus")
    (work / "lexicon.txt").write_text("YES Y EH S\nNO N OW\n")
    (work / "split.txt").write_text("".join(f"spk{s}-u{k} {'train' if s < 2 else ('dev' if s == 2 else 'test')}\n"
                                            for s in range(4) for k in range(3)))
    (work / "run.yaml").write_text(yaml.safe_dump({
        "recipe": "custom", "language": "en", "corpus": {"corpus_dir": str(corpus), "split_file": "split.txt"},
        "lang": {"lexicon": "lexicon.txt"}, "systems": ["mono", "tri1", "tri2"]}))
    proc = snakemake(work, "decode", "--dry-run", "--configfile", str(work / "run.yaml"), cores=1)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for line in proc.stdout.splitlines():
        if line.strip().startswith("output:"):
            for out in line.split(":", 1)[1].split(","):
                (work / out.strip()).parent.mkdir(parents=True, exist_ok=True)
                (work / out.strip()).touch()
    proc = snakemake(work, "decode", "--touch", "--configfile", str(work / "run.yaml"), cores=1)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert set(dry_run(work)) <= {"decode"}  # everything recorded as done
    return work


def test_editing_the_lexicon_re_runs_lang_and_what_follows(touched):
    lexicon = touched / "lexicon.txt"
    before = lexicon.read_text()
    try:
        lexicon.write_text(before + "MAYBE M EY B IY\n")
        jobs = set(dry_run(touched))
        assert {"lang", "lm", "mono", "tree_stage", "graph", "decode_dev"} <= jobs
        assert not jobs & {"prepare", "feats"}
    finally:
        lexicon.write_text(before)
        os.utime(lexicon, (1, 1))  # older than lang's outputs again, for the other tests


def test_removing_an_utterance_from_the_corpus_re_runs_prepare(touched):
    wav = touched / "corpus" / "spk0" / "u2.wav"
    moved = touched / "u2.wav.away"
    wav.rename(moved)
    try:
        jobs = dry_run(touched)
        assert "prepare" in jobs and "corpus_listing.tsv" in next(
            line for line in jobs["prepare"].splitlines() if line.strip().startswith("input:"))
    finally:
        moved.rename(wav)
        dry_run(touched)  # the stamp is rewritten as it was ...
        os.utime(touched / "data" / "custom" / "corpus_listing.tsv", (1, 1))  # ... and made older than prepare's outputs


def test_a_transcript_is_stamped_by_content_not_date(touched):
    """A corpus copied again (new dates, same bytes) re-runs nothing; an edited transcript re-runs prepare."""
    text = touched / "corpus" / "spk0" / "u2.txt"
    before = text.read_text()
    try:
        os.utime(text)  # a new date only
        assert set(dry_run(touched)) <= {"decode"}
        text.write_text(before.rstrip("\n") + " yes\n")
        assert "prepare" in dry_run(touched)
    finally:
        text.write_text(before)
        dry_run(touched)  # the stamp is rewritten as it was ...
        os.utime(touched / "data" / "custom" / "corpus_listing.tsv", (1, 1))  # ... and made older again


def test_editing_the_split_file_re_runs_prepare(touched):
    split = touched / "split.txt"
    os.utime(split)  # newer than the manifests
    try:
        assert "prepare" in dry_run(touched)
    finally:
        os.utime(split, (1, 1))


def stage_commands(work: Path, *args: str) -> dict[str, str]:
    """Every job's shell command (``--forceall --printshellcmds`` dry run), by the stage directory or file it
    writes to (``--out ...`` / ``--log ...``): what Snakemake compares, with the params, to decide a re-run."""
    proc = snakemake(work, "decode", "--dry-run", "--forceall", "--printshellcmds", "--configfile",
                     str(work / "run.yaml"), *args, cores=1)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = {}
    for line in proc.stdout.splitlines():
        if " -m steps." in line:
            words = line.split()
            key = words[words.index("--out") + 1] if "--out" in words else words[words.index("--log") + 1]
            out[key] = line[line.index(" -m steps."):]
    return out


def test_a_tree_stage_size_does_not_re_run_the_monophone(touched):
    """Snakemake re-runs a job when its params (the --conf JSON) change: tri1's size changes tri1's command
    only; mono's stays byte for byte (before, every stage took the whole gmm section)."""
    base = stage_commands(touched)
    changed = stage_commands(touched, "--config", "gmm={tri1: {num_leaves: 77}}")
    assert changed.keys() == base.keys()
    differ = {k for k in base if base[k] != changed[k]}
    assert differ == {"exp/custom/tri1"}, differ  # tri2 and the rest re-run through tri1's new files, not params
    # the LM's settings do not re-run the lexicon (lang reads only lm.extra_text), only the LM
    differ = {k for k, v in stage_commands(touched, "--config", "lm={order: 2}").items() if base[k] != v}
    assert differ == {"data/custom/lm"}, differ


# ------------------------------------------------------------------ 5. kill -9, then the same command

@pytest.mark.slow
def test_kill_9_then_the_same_command_finishes(tmp_path):
    """The documented rerun command after a kill is the command itself: the default profile re-runs the
    incomplete job, the Snakefile clears the killed run's locks, and the monophone resumes at its last pass."""
    if not (FSDD_DIR / "recordings").is_dir():
        pytest.skip(f"FSDD not found at {FSDD_DIR} (set SENONE_FSDD_DIR)")
    (tmp_path / "small.yaml").write_text(yaml.safe_dump({
        "systems": ["mono"], "gmm": {"mono": {"num_iters": 30, "max_iter_inc": 20, "tot_gauss": 300,
                                              "realign_iters": [1, 2, 3, 4, 5, 6, 8, 10, 15, 20, 25]}}}))
    cmd = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "--directory", str(tmp_path),
           "--cores", "1", "exp/fsdd/mono/final.mdl", "--configfile", str(tmp_path / "small.yaml"), "--config",
           "recipe=fsdd", f"corpus_dir={FSDD_DIR}"]
    log = tmp_path / "exp" / "fsdd" / "mono" / "log" / "train.log"
    with open(tmp_path / "first.log", "w") as out:
        first = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.time() + 600
        while time.time() < deadline and first.poll() is None:
            if log.is_file() and "mono pass 6:" in log.read_text():
                break
            time.sleep(0.5)
        assert first.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
        os.killpg(first.pid, signal.SIGKILL)  # snakemake and its running job, as a lost machine would
        first.wait()
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
    assert list((tmp_path / ".snakemake" / "locks").glob("*.lock"))  # what used to need --unlock
    assert (tmp_path / "exp" / "fsdd" / "mono" / "checkpoint.pkl").is_file()
    second = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    text = log.read_text()
    assert "mono pass 6:" in text.split("==== ")[1]  # the killed attempt's lines are kept...
    assert text.count("==== ") == 2 and "resuming monophone training at pass" in text.split("==== ")[2]  # ...then the resume
    mono_dir = tmp_path / "exp" / "fsdd" / "mono"
    assert (mono_dir / "final.mdl").is_file() and not (mono_dir / "checkpoint.pkl").exists()  # finished: no resume state
    assert not [p for p in tmp_path.rglob("*.tmp*") if ".snakemake" not in p.parts]  # no temporaries left
    # a forced rerun of the finished stage trains afresh (its checkpoint is gone)
    forced = subprocess.run(cmd + ["--forcerun", "mono"], capture_output=True, text=True, timeout=900)
    assert forced.returncode == 0, forced.stderr[-3000:]
    assert "resuming" not in log.read_text().split("==== ")[3]


# ------------------------------------------------------------------ 6. text files and audio

def test_a_lexicon_that_is_not_utf8_is_one_line_naming_the_file(tmp_path):
    from senone.lang.lexicon import read_lexicon

    path = tmp_path / "lexicon.txt"
    path.write_bytes("HELLO HH AH L OW\n你好 n i3 h ao3\n".encode("gb18030"))
    with pytest.raises(SenoneError, match=r"lexicon.txt: the lexicon is not UTF-8 text \(byte 0x.. at line 2, "
                                          r"column 1\); save it as UTF-8, e.g. iconv -f GB18030"):
        read_lexicon(path)


def corpus_folder(root: Path) -> Path:
    for s in ("a", "b", "c"):
        for k in range(2):
            path = root / s / f"{s}{k}.wav"
            path.parent.mkdir(parents=True, exist_ok=True)
            sf.write(path, np.random.default_rng(k).uniform(-0.2, 0.2, 8000).astype(np.float32), 16000,
                     subtype="PCM_16")
            path.with_suffix(".txt").write_text("yes\n")
    return root


def test_custom_corpus_problems_are_counted_and_named(tmp_path):
    from local.custom.prepare import prepare_custom

    root = corpus_folder(tmp_path / "c")
    whole = (root / "a" / "a1.wav").read_bytes()
    (root / "a" / "a1.wav").write_bytes(whole[: len(whole) // 2])  # cut in half mid-data
    (root / "b" / "b1.wav").write_bytes(b"RIFF" + os.urandom(400))  # corrupt
    sf.write(root / "c" / "c1.flac", np.zeros(8000, np.float32), 16000)  # a second file of c/c1.wav's id
    (root / "c" / "orphan.txt").write_text("no audio\n")
    (tmp_path / "split.txt").write_text("a-a0 train\nb-b0 dev\nc-c0 test\nz-z9 train\n")
    prepare_custom(tmp_path / "out", corpus_dir=root, language="en", split_file=str(tmp_path / "split.txt"),
                   audio_extensions=[".wav", ".flac"])
    report = json.loads((tmp_path / "out" / "manifests" / "skipped.json").read_text())
    ex = {reason: [e["detail"] for e in items] for reason, items in report["examples"].items()}
    assert "a1.wav: its data chunk declares" in ex["truncated_audio"][0]
    assert "does not exist" not in ex["unreadable_audio"][0] and "b1.wav" in ex["unreadable_audio"][0]
    assert report["counts"]["no_audio_file"] == 1 and "orphan.txt" in ex["no_audio_file"][0]
    assert report["counts"]["split_file_unknown_id"] == 1 and report["examples"]["split_file_unknown_id"][0]["item"] == "z-z9"
    dup = ex["duplicate_id"][0]
    assert "c1.wav" in dup and "c1.flac" in dup  # the two files that share the id c-c1


def test_a_split_file_that_is_not_utf8_is_one_line(tmp_path):
    from local.custom.prepare import prepare_custom

    root = corpus_folder(tmp_path / "c")
    (tmp_path / "split.txt").write_bytes("a-a0 train\n# \xe9\n".encode("latin-1"))
    with pytest.raises(SenoneError, match=r"split.txt: the split file is not UTF-8 text"):
        prepare_custom(tmp_path / "out", corpus_dir=root, language="en", split_file=str(tmp_path / "split.txt"))
