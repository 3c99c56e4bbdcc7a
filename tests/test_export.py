"""Export a trained system and transcribe new audio with it (``snakemake export``, ``senone-transcribe``).

Fast tests (no corpus): word times from a path's phones through the lexicon, Mandarin character times, the export
folder's checks (format version, missing or truncated files), the audio checks, and the feature quantisation that
makes transcription see what the recipe's decode reads from storage.

End to end (FSDD, real speech, from the shared corpus; under ``SENONE_CI=1`` a missing corpus fails, elsewhere it
skips, as tests/test_recipe_fsdd.py): one workflow run of a short schedule up to tri3 and the default network on
tri3's senones, ``export`` of both; the export folders are copied out and the run's ``data/`` and ``exp/`` deleted;
then ``senone-transcribe`` (the installed console script) on the test speaker's audio must give exactly the text the
recipe's own ``decode_test`` gave (the same features, CMVN over the same speaker, the same fMLLR first pass, the same
search), hence the same WER; CTM times lie inside their utterances and are in order; the same audio at 44.1 kHz
gives the same words within the bound below; and the errors a user meets are one line each.

The 44.1 kHz bound: at most 1 % of the utterances (5 of 500) may change their words. The 44.1 kHz files are the
8 kHz ones upsampled (scipy resample_poly, 16-bit), and transcription resamples them back, so the model hears the
original through two anti-aliasing filters: measured, the signal comes back at a median SNR of 38.5 dB (16.6 dB at
worst, files with energy just under 4 kHz, which the filters cut and the mel banks, ending at 3.6 kHz, never see),
and 0 of 500 utterances changed their words with tri3 or the network (the confidences moved by 0.003 / 0.001 in the
median, the network's word times by one frame for 0.4 % of the words). The 1 % leaves room for the near ties a
decode has (the ~8 test errors are such utterances) on another machine's rounding, and is still below the systems'
own test WER (1.6-1.8 %), so a resampling bug that damages the audio cannot pass.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from senone import SenoneError
from tests.e2e import ROOT, error_rate, snakemake

FSDD_DIR = Path(os.environ.get("SENONE_FSDD_DIR") or ROOT.parent / "shared" / "corpora" / "fsdd").resolve()
IN_CI = os.environ.get("SENONE_CI") == "1"
# tests/test_recipe_fsdd.py's short schedule, carried on to LDA+MLLT and SAT; the network (2 epochs) on tri3's senones
SMALL = {
    "systems": ["mono", "tri1", "tri2", "tri3"],
    "gmm": {"mono": {"num_iters": 15, "max_iter_inc": 10, "tot_gauss": 300, "realign_iters": [1, 2, 3, 4, 5, 6, 8, 10, 12]},
            "tri1": {"num_leaves": 150, "tot_gauss": 800, "num_iters": 8, "max_iter_inc": 6, "realign_iters": [4]},
            "tri2": {"num_leaves": 150, "tot_gauss": 800, "num_iters": 8, "max_iter_inc": 6, "realign_iters": [4],
                     "mllt_iters": [2, 4]},
            "tri3": {"num_leaves": 150, "tot_gauss": 800, "num_iters": 8, "max_iter_inc": 6, "realign_iters": [4],
                     "fmllr_iters": [2, 4]}},
    "decode": {"lm_weights": [7, 11, 15]},
    "nn": {"train": {"num_epochs": 2}},
}
MAX_CHANGED_AT_44K = 0.01  # see the module docstring


# --------------------------------------------------------------------------------------------------------------
# fast tests
# --------------------------------------------------------------------------------------------------------------

def _aligner():
    from senone.export.align import WordAligner

    # phones: 1 SIL, 2 SPN, 3 a, 4 b, 5 c
    return WordAligner({"AB": [(3, 4)], "C": [(5,), (3, 5)], "<UNK>": [(2,)]}, silence_phones=[1, 2],
                       optional_silence=1)


def _spans(phones_frames):
    from senone.export.align import PhoneSpan

    out, t = [], 0
    for phone, n in phones_frames:
        out.append(PhoneSpan(phone, t, t + n))
        t += n
    return out


def test_words_take_their_phones_frames_and_silence_belongs_to_none():
    spans = _spans([(1, 10), (3, 5), (4, 7), (1, 3), (3, 4), (5, 6), (1, 8)])  # SIL a b SIL [a c] SIL
    words, aligned = _aligner().align(["AB", "C"], spans, 43)
    assert aligned
    assert [(w.word, w.start, w.end) for w in words] == [("AB", 10, 22), ("C", 25, 35)]


def test_a_partial_path_keeps_its_words_and_the_unfinished_one_gets_the_rest():
    # the decoder stopped inside C's second pronunciation (a c): only 'a' was reached
    words, aligned = _aligner().align(["AB", "C"], _spans([(3, 5), (4, 5), (1, 2), (3, 4)]), 16)
    assert aligned and [(w.word, w.start, w.end) for w in words] == [("AB", 0, 10), ("C", 12, 16)]
    # phones left over with no word label yet
    words, aligned = _aligner().align(["AB"], _spans([(3, 5), (4, 5), (3, 4)]), 14)
    assert aligned and [(w.word, w.start, w.end) for w in words] == [("AB", 0, 10)]


def test_unparsable_phones_fall_back_to_a_proportional_split():
    words, aligned = _aligner().align(["AB", "C"], _spans([(1, 4), (4, 10), (4, 10), (1, 4)]), 28)
    assert not aligned
    assert words[0].start == 4 and words[-1].end == 24 and words[0].end == words[1].start


def test_mandarin_words_split_into_their_syllables():
    from senone.export.align import WordSpan, split_characters

    id2phone = {3: "n", 4: "i3", 5: "h", 6: "ao3"}
    word = WordSpan("你好", 10, 40, tuple(_spans([(3, 10), (4, 5), (5, 8), (6, 17)])))
    word = WordSpan("你好", 0, 40, word.phones)
    chars = split_characters(word, id2phone)
    assert [(c.word, c.start, c.end) for c in chars] == [("你", 0, 15), ("好", 15, 40)]
    assert split_characters(WordSpan("好", 0, 5, ()), id2phone)[0].word == "好"
    even = split_characters(WordSpan("你好", 0, 10, ()), id2phone)  # no phones: an even split
    assert [(c.start, c.end) for c in even] == [(0, 5), (5, 10)]


def test_features_are_quantised_exactly_as_the_recipe_stores_them(tmp_path):
    from lhotse.features.io import KaldiReader

    from senone.export.transcribe import kaldi_two_byte
    from senone.feats.extract import KaldiTwoByteWriter

    rng = np.random.default_rng(0)
    mats = {"u1": rng.normal(size=(57, 16)).astype(np.float32) * 10, "u2": rng.normal(size=(3, 31)).astype(np.float32)}
    with KaldiTwoByteWriter(tmp_path / "st") as w:
        for k, m in mats.items():
            w.write(k, m)
    reader = KaldiReader(str(tmp_path / "st" / "feats.scp"))
    ours = kaldi_two_byte(mats)
    for k, m in mats.items():
        stored = reader.read(k)
        assert np.array_equal(ours[k], stored) and not np.array_equal(ours[k], m)


def _fake_export(path: Path, version=None) -> Path:
    from senone.export.bundle import FORMAT_NAME, FORMAT_VERSION

    path.mkdir(parents=True)
    (path / "graph").mkdir()
    (path / "graph" / "HCLG.fst").write_bytes(b"x" * 10)
    info = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION if version is None else version,
            "files": {"graph/HCLG.fst": 10}}
    (path / "model.json").write_text(json.dumps(info))
    return path


def test_export_folder_checks_are_one_line_each(tmp_path):
    from senone.export.bundle import load_export

    assert load_export(_fake_export(tmp_path / "ok")).info["files"]
    with pytest.raises(SenoneError, match="older senone .*format version 0.*export the system again"):
        load_export(_fake_export(tmp_path / "old", version=0))
    with pytest.raises(SenoneError, match="newer senone"):
        load_export(_fake_export(tmp_path / "new", version=99))
    broken = _fake_export(tmp_path / "missing")
    (broken / "graph" / "HCLG.fst").unlink()
    with pytest.raises(SenoneError, match="missing graph/HCLG.fst"):
        load_export(broken)
    cut = _fake_export(tmp_path / "truncated")
    (cut / "graph" / "HCLG.fst").write_bytes(b"x")
    with pytest.raises(SenoneError, match="truncated"):
        load_export(cut)
    with pytest.raises(SenoneError, match="no model.json"):
        load_export(tmp_path)
    with pytest.raises(SenoneError, match="not an export folder"):
        load_export(tmp_path / "nowhere")


def test_audio_checks_are_one_line_each(tmp_path):
    import soundfile as sf

    from senone.export.audio import collect_inputs, load_samples

    sf.write(tmp_path / "low.wav", np.zeros(4000, np.float32), 4000)
    sf.write(tmp_path / "stereo.wav", np.stack([np.linspace(-.5, .5, 16000), np.zeros(16000)], 1).astype(np.float32),
             16000)
    sf.write(tmp_path / "tiny.wav", np.zeros(10, np.float32), 8000)
    (tmp_path / "empty.wav").write_bytes(b"")
    (tmp_path / "junk.wav").write_bytes(b"this is not audio at all" * 10)
    with pytest.raises(SenoneError, match="empty file"):
        collect_inputs([tmp_path / "empty.wav"])
    with pytest.raises(SenoneError, match="will not open"):
        collect_inputs([tmp_path / "junk.wav"])
    low, stereo, tiny = collect_inputs([tmp_path / "low.wav", tmp_path / "stereo.wav", tmp_path / "tiny.wav"])
    with pytest.raises(SenoneError, match="4000 Hz, below the model's 8000 Hz"):
        load_samples(low, 8000, 200)
    with pytest.raises(SenoneError, match="shorter than one"):
        load_samples(tiny, 8000, 200)
    x = load_samples(stereo, 8000, 200)  # the first channel, resampled to 8 kHz
    assert len(x) == 8000 and x[-100:].mean() > 0.4


# --------------------------------------------------------------------------------------------------------------
# end to end on FSDD
# --------------------------------------------------------------------------------------------------------------

def _transcribe_command() -> Path:
    exe = Path(sys.executable).parent / "senone-transcribe"
    assert exe.is_file(), f"{exe}: the console script is not installed; re-run ./install.sh (pip install -e .)"
    return exe


def transcribe(work: Path, *args: str) -> subprocess.CompletedProcess:
    """The installed command, outside the repository, without PYTHONPATH: what a user of the package runs."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run([str(_transcribe_command()), *map(str, args)], cwd=work, env=env, capture_output=True,
                          text=True, timeout=600)


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> dict:
    if not (FSDD_DIR / "recordings").is_dir():
        why = f"FSDD not found at {FSDD_DIR} (set SENONE_FSDD_DIR to the folder with recordings/)"
        if IN_CI:
            pytest.fail(f"CI must run the FSDD recipe: {why}")
        pytest.skip(why)
    work = tmp_path_factory.mktemp("fsdd_export")
    run = work / "run"
    run.mkdir()
    (run / "small.yaml").write_text(yaml.safe_dump(SMALL))
    proc = snakemake(run, "export", "--configfile", str(run / "small.yaml"), "--config", "recipe=fsdd",
                     f"corpus_dir={FSDD_DIR}")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    exp = run / "exp" / "fsdd"
    assert "exported: exp/fsdd/export/nn/clstm" in proc.stdout and "exported: exp/fsdd/export/tri3" in proc.stdout
    out = {"work": work, "models": {}, "decode_test": {}}
    for name, system in (("tri3", "tri3"), ("nn", "nn/clstm")):
        out["models"][name] = shutil.copytree(exp / "export" / system, work / "models" / name)
        ref = shutil.copytree(exp / system / "decode_test", work / "decode_test" / name)
        out["decode_test"][name] = ref
    manifest = work / "fsdd_cuts_test.jsonl.gz"
    shutil.copyfile(run / "data" / "fsdd" / "manifests" / "fsdd_cuts_test.jsonl.gz", manifest)
    shutil.rmtree(run)  # the recipe's data/ and exp/ are gone: the exports must stand alone
    from lhotse import CutSet

    cuts = CutSet.from_file(manifest)
    assert len(cuts) == 500 and {c.supervisions[0].speaker for c in cuts} == {"theo"}
    out["manifest"] = manifest
    out["cuts"] = {c.id: c for c in cuts}
    # the test speaker's audio as a Kaldi data directory (wav.scp + utt2spk: the speaker given, so CMVN and fMLLR
    # are over the same utterances as in decode_test)
    data = work / "kaldi_test"
    data.mkdir()
    (data / "wav.scp").write_text("".join(f"{c.id} {c.recording.sources[0].source}\n" for c in cuts))
    (data / "utt2spk").write_text("".join(f"{c.id} {c.supervisions[0].speaker}\n" for c in cuts))
    out["kaldi_dir"] = data
    return out


@pytest.fixture(scope="module")
def transcribed(exported) -> dict:
    """tri3 from the wav.scp + utt2spk, the network from the Lhotse manifest (speakers from its supervisions)."""
    work = exported["work"]
    out = {}
    for name, source in (("tri3", exported["kaldi_dir"] / "wav.scp"), ("nn", exported["manifest"])):
        proc = transcribe(work, exported["models"][name], source, "--out", work / f"out_{name}", "-j", "2", "-q")
        assert proc.returncode == 0, proc.stderr[-3000:]
        out[name] = work / f"out_{name}"
    return out


def _text(path: Path) -> dict[str, str]:
    return dict((line.split(" ", 1) + [""])[:2] for line in path.read_text().splitlines())


@pytest.mark.slow
@pytest.mark.parametrize("name", ["tri3", "nn"])
def test_transcription_equals_the_recipes_decode_test(exported, transcribed, name):
    from senone.score import Tokenizer, compute_error_rate

    ours, recipe = _text(transcribed[name] / "text"), _text(exported["decode_test"][name] / "hyp.txt")
    assert len(ours) == 500
    assert ours == recipe
    refs = _text(exported["decode_test"][name] / "ref.txt")
    tok = Tokenizer("word")
    rate = compute_error_rate({u: tok(t) for u, t in refs.items()}, {u: tok(t) for u, t in ours.items()},
                              log_mismatches=False).total.rate
    assert rate == pytest.approx(error_rate(exported["decode_test"][name] / "wer.txt"), abs=0.005)
    assert rate < 15.0  # (test_recipe_fsdd's bound: the models hear the digits)
    summary = json.loads((transcribed[name] / "transcribe.json").read_text())
    assert summary["utterances"] == 500 and summary["speakers"] == 1 and summary["not_final"] == 0
    assert summary["times_not_from_lexicon"] == 0


@pytest.mark.slow
@pytest.mark.parametrize("name", ["tri3", "nn"])
def test_ctm_times_lie_inside_the_utterances_in_order(exported, transcribed, name):
    cuts = exported["cuts"]
    text = _text(transcribed[name] / "text")
    per_utt: dict[str, list] = {}
    for line in (transcribed[name] / "ctm").read_text().splitlines():
        utt, channel, start, dur, word, conf = line.split()
        per_utt.setdefault(utt, []).append((float(start), float(dur), word, float(conf)))
    assert set(per_utt) == {u for u, t in text.items() if t}
    for utt, words in per_utt.items():
        assert [w for _, _, w, _ in words] == text[utt].split()
        end = 0.0
        for start, dur, _, conf in words:
            assert start >= end - 1e-9 and dur > 0 and 0.0 <= conf <= 1.0
            end = start + dur
        assert end <= cuts[utt].duration + 1e-6, (utt, end, cuts[utt].duration)
    results = [json.loads(line) for line in (transcribed[name] / "results.jsonl").read_text().splitlines()]
    assert len(results) == 500 and all(r["speaker"] == "theo" for r in results)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["tri3", "nn"])
def test_the_same_audio_at_44_1_khz_gives_the_same_words(exported, transcribed, name):
    import soundfile as sf
    from scipy.signal import resample_poly

    work = exported["work"]
    folder = work / "at44k"
    if not folder.is_dir():
        folder.mkdir()
        for utt, cut in exported["cuts"].items():
            x, rate = sf.read(cut.recording.sources[0].source, dtype="float32")
            assert rate == 8000
            sf.write(folder / f"{utt}.wav", resample_poly(x, 441, 80), 44100, subtype="PCM_16")
        (work / "utt2spk_44k").write_text("".join(f"{u} {c.supervisions[0].speaker}\n"
                                                 for u, c in exported["cuts"].items()))
    proc = transcribe(work, exported["models"][name], folder, "--utt2spk", work / "utt2spk_44k",
                      "--out", work / f"out44_{name}", "-j", "2", "-q")
    assert proc.returncode == 0, proc.stderr[-3000:]
    at8, at44 = _text(transcribed[name] / "text"), _text(work / f"out44_{name}" / "text")
    assert set(at44) == set(at8)
    changed = [u for u in at8 if at8[u] != at44[u]]
    assert len(changed) <= MAX_CHANGED_AT_44K * len(at8), changed


@pytest.mark.slow
def test_user_errors_are_one_line(exported, tmp_path):
    import soundfile as sf

    work, model = exported["work"], exported["models"]["nn"]
    good = next(iter(exported["cuts"].values())).recording.sources[0].source
    (tmp_path / "empty.wav").write_bytes(b"")
    (tmp_path / "junk.wav").write_bytes(b"RIFF not really a wave file" * 20)
    sf.write(tmp_path / "low.wav", np.zeros(4000, np.float32), 4000)
    old = shutil.copytree(model, tmp_path / "old")
    info = json.loads((old / "model.json").read_text())
    (old / "model.json").write_text(json.dumps({**info, "format_version": 0}))
    missing = shutil.copytree(model, tmp_path / "missing")
    (missing / "nn" / "weights.pt").unlink()
    cases = [
        (model, tmp_path / "empty.wav", "empty file"),
        (model, tmp_path / "junk.wav", "will not open"),
        (model, tmp_path / "low.wav", "sampled at 4000 Hz, below the model's 8000 Hz"),
        (old, good, "older senone (format version 0"),
        (missing, good, "the model is missing nn/weights.pt"),
        (tmp_path / "nowhere", good, "not an export folder"),
    ]
    for model_dir, audio, expected in cases:
        proc = transcribe(work, model_dir, audio, "-q")
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        assert proc.returncode == 2, proc.stderr[-2000:]
        assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], proc.stderr[-2000:]
    # --skip-bad goes on past the bad files, and says what it skipped
    proc = transcribe(work, model, tmp_path / "junk.wav", good, "--skip-bad", "-q", "--out", tmp_path / "skip")
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads((tmp_path / "skip" / "transcribe.json").read_text())
    assert summary["utterances"] == 1
    assert [s["id"] for s in summary["skipped"]] == ["junk"] and "will not open" in summary["skipped"][0]["reason"]
