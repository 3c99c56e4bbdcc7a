"""The synth_zh corpus (local/synth_zh) and the espeak-ng tools under it (senone.data.synth).

One tiny corpus (~60 training utterances) is generated per module; the determinism test makes a
second one with another number of workers and compares every byte.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from senone.data.synth import (
    EspeakPhonemizer,
    EspeakPinyin,
    EspeakSynthesizer,
    EspeakVoice,
    RenderPool,
    RenderSpec,
    foreign_languages,
    render,
    resample,
)
from senone.data.text import is_cjk_char
from local.synth_zh import prepare as P

TINY = dict(seed=3, max_sentences=400, max_utterances=60, train_hours=2.0, dev_minutes=0.4, test_minutes=0.4,
            num_train_speakers=6, num_dev_speakers=2, num_test_speakers=2)


def _generate(parent: Path, num_jobs: int):
    """Generate into ``parent/corpus`` through a relative path, so manifests of two runs compare."""
    old = os.getcwd()
    os.chdir(parent)
    try:
        return P.prepare_synth_zh(Path("corpus"), num_jobs=num_jobs, **TINY)
    finally:
        os.chdir(old)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    parent = tmp_path_factory.mktemp("synth_zh_a")
    cuts = _generate(parent, num_jobs=2)
    return parent, cuts


@pytest.fixture(scope="module")
def synth():
    with EspeakSynthesizer() as s:
        yield s


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_corpus_layout_and_audio(tiny):
    parent, cuts = tiny
    out = parent / "corpus"
    for split in P.SPLITS:
        for kind in ("recordings", "supervisions", "cuts"):
            assert P.manifest_path(out, kind, split).is_file()
        assert len(cuts[split]) > 0
        for cut in cuts[split]:
            sup = cut.supervisions[0]
            assert cut.id == sup.id == cut.recording.id == sup.recording_id
            assert cut.id.startswith(sup.speaker + "-")
            assert sup.language == "Chinese"
            assert sup.text and all(is_cjk_char(c) for c in sup.text)
            assert len(sup.custom["pinyin"].split()) == len(sup.text)
            assert cut.recording.sampling_rate == 16000
        # audio files really are 16 kHz 16-bit with the length the manifest says
        for cut in list(cuts[split])[:5]:
            path = parent / cut.recording.sources[0].source
            info = sf.info(str(path))
            assert (info.samplerate, info.subtype, info.frames) == (16000, "PCM_16", cut.recording.num_samples)
    assert len(cuts["train"]) == TINY["max_utterances"]
    report = json.loads((out / "manifests" / "synth_zh_report.json").read_text())
    assert report["splits"]["train"]["utterances"] == 60
    assert report["source"]["license"] == "CC BY-SA 4.0"
    for split in ("dev", "test"):  # filled to their duration target
        assert report["splits"][split]["seconds"] >= TINY["dev_minutes"] * 60
    speakers = (out / "manifests" / "speakers.tsv").read_text().splitlines()
    assert len(speakers) == 1 + 6 + 2 + 2


def test_speakers_and_sentences_disjoint(tiny):
    _, cuts = tiny
    spk = {s: {c.supervisions[0].speaker for c in cuts[s]} for s in P.SPLITS}
    sent = {s: {c.supervisions[0].custom["sentence_id"] for c in cuts[s]} for s in P.SPLITS}
    assert len(spk["dev"]) == 2 and len(spk["test"]) == 2 and len(spk["train"]) == 6
    for a, b in (("train", "dev"), ("train", "test"), ("dev", "test")):
        assert not spk[a] & spk[b]
        assert not sent[a] & sent[b]
    voices = {c.supervisions[0].speaker: c.supervisions[0].custom["voice"] for s in P.SPLITS for c in cuts[s]}
    assert len(voices) == 10


def test_lm_text_is_the_unspoken_training_pool(tiny):
    """synth_zh_lm_text.txt (lm.extra_text of the recipe): sentences no split speaks, never a dev/test sentence."""
    parent, cuts = tiny
    out = parent / "corpus" / "manifests"
    lines = (out / P.LM_TEXT_NAME).read_text(encoding="utf-8").splitlines()
    spoken = {s: {c.supervisions[0].text for c in cuts[s]} for s in P.SPLITS}
    report = json.loads((out / "synth_zh_report.json").read_text())
    assert report["lm_text"]["sentences"] == len(lines) > 100  # 400 sentences read, 60 spoken in train
    assert lines and all(t and all(is_cjk_char(c) for c in t) for t in lines)
    assert not set(lines) & (spoken["dev"] | spoken["test"] | spoken["train"])


def test_unspoken_sentences_drop_spoken_ids_and_held_out_texts():
    pool = [P.Sentence(id=f"s{i}", text=t, pinyin="", pinyin_source="espeak") for i, t in enumerate(["你好", "谢谢", "再见"])]
    assert P.unspoken_sentences(pool, spoken={"s0"}, held_out_texts={"再见"}) == ["谢谢"]


def test_same_seed_same_bytes_any_num_jobs(tiny, tmp_path):
    parent, _ = tiny
    _generate(tmp_path, num_jobs=1)
    first, second = _files(parent / "corpus"), _files(tmp_path / "corpus")
    assert first.keys() == second.keys()
    differing = [name for name in first if first[name] != second[name]]
    assert differing == []


def test_resume_loads_instead_of_regenerating(tiny):
    parent, cuts = tiny
    report = parent / "corpus" / "manifests" / "synth_zh_report.json"
    before = report.stat().st_mtime_ns
    again = _generate(parent, num_jobs=2)
    assert report.stat().st_mtime_ns == before
    assert [c.id for c in again["test"]] == [c.id for c in cuts["test"]]


def test_snr_is_as_asked(tiny, synth):
    parent, cuts = tiny
    speakers = {s.id: s for s in P.make_speakers(TINY["seed"], 6, 2, 2)}
    measured = []
    for cut in list(cuts["train"])[:4]:
        sup = cut.supervisions[0]
        sentence = P.Sentence(sup.custom["sentence_id"], sup.text, sup.custom["pinyin"], "espeak")
        utt = P._make_utt("train", speakers[sup.speaker], sentence, TINY["seed"], (0.9, 1.0, 1.1), 20.0)
        assert utt.spec.noise in ("white", "pink") and utt.spec.speed == sup.custom["speed"]
        noisy, _ = sf.read(str(parent / cut.recording.sources[0].source), dtype="float64")
        clean = render(utt.spec, synth, clean=True).astype(np.float64) / 32768
        assert clean.size == noisy.size
        gain = noisy @ clean / (clean @ clean)  # undo a possible anti-clipping scale
        noise = noisy - gain * clean
        lead = round(utt.spec.lead_s * 16000)
        speech = gain * clean[lead:clean.size - round(utt.spec.trail_s * 16000)]
        measured.append(10 * np.log10(np.mean(speech**2) / np.mean(noise**2)))
    assert np.allclose(measured, 20.0, atol=0.5), measured


def test_sentence_filtering_counts_every_drop():
    records = [
        {"id": "a", "chinese": "你好，很高兴认识你。"},
        {"id": "b", "chinese": "我用iPhone拍照。"},          # Latin word: dropped
        {"id": "c", "chinese": "你好，很高兴认识你！"},      # duplicate after normalisation
        {"id": "d", "chinese": "我们出去玩儿吧。"},          # espeak spells 玩儿 in English
        {"id": "e", "chinese": "我有2个苹果。"},            # numeral: converted, kept
        {"id": "f", "chinese": "……"},                       # nothing left
    ]
    report: dict = {}
    kept = P.load_sentences(report=report, records=records)
    assert [s.id for s in kept] == ["a", "e"]
    assert kept[1].text == "我有两个苹果"
    assert report["sentences"]["dropped"] == {"non_cjk": 1, "duplicate": 1, "espeak_foreign_reading": 1, "empty": 1}
    assert report["sentences"]["read"] == 6 and report["sentences"]["kept"] == 2
    assert report["labels"]["sentences_from_espeak"] == 2


def test_espeak_pinyin_follows_what_espeak_says():
    ph = EspeakPhonemizer()
    to_pinyin = EspeakPinyin(ph)
    # sandhi and neutral tones that pypinyin's citation reading lacks
    assert to_pinyin.to_pinyin(ph.phonemes("一个人")) == ["yi2", "ge5", "ren2"]
    assert to_pinyin.to_pinyin(ph.phonemes("他不去")) == ["ta1", "bu2", "qu4"]
    assert to_pinyin.to_pinyin(ph.phonemes("一起去吧")) == ["yi4", "qi3", "qu4", "ba5"]
    # n as a coda or as the next onset: the hint decides when both readings exist
    assert to_pinyin.to_pinyin(ph.phonemes("西奈"), ["xi1", "nai4"]) == ["xi1", "nai4"]
    assert to_pinyin.to_pinyin(ph.phonemes("心爱"), ["xin1", "ai4"]) == ["xin1", "ai4"]
    assert foreign_languages(ph.phonemes("我们出去玩儿吧")) == ["en"]
    assert foreign_languages(ph.phonemes("你好")) == []


def test_audio_is_a_function_of_the_utterance_only(synth):
    # libespeak-ng keeps state between utterances; the synthesizer must hide it
    spec = RenderSpec("我们一起去学校吧", EspeakVoice(variant="f2", rate=160), noise="pink", noise_seed=5)
    first = render(spec, synth)
    render(RenderSpec("你好", EspeakVoice(variant="m3")), synth)
    assert np.array_equal(first, render(spec, synth))
    assert first.dtype == np.int16 and first.size > 16000


def test_speed_perturbation_changes_length():
    x = np.random.default_rng(0).standard_normal(22050)
    assert resample(x, 22050, 16000).size == 16000
    assert resample(x, 22050, 16000, speed=1.1).size == pytest.approx(16000 / 1.1, abs=2)
    assert resample(x, 22050, 16000, speed=0.9).size == pytest.approx(16000 / 0.9, abs=2)


def test_unsayable_text_is_skipped_with_a_count(tmp_path):
    spk = P.make_speakers(0, 1, 1, 1)[0]
    texts = ["你好", "。", "谢谢"]
    skipped: Counter = Counter()

    def candidate(i):
        if i >= len(texts):
            return None
        return P._make_utt("dev", spk, P.Sentence(f"s{i}", texts[i], "", "espeak"), 0, (1.0,), 20.0)

    with RenderPool(1) as pool:
        accepted, used = P._fill(pool, candidate, 1e9, None, skipped, "dev", tmp_path)
    assert [u.sentence.id for u in accepted] == ["s0", "s2"]
    assert used == 3 and skipped == {"no_audio": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{spk.id}-s0.flac", f"{spk.id}-s2.flac"]


def test_unknown_voice_variant_is_a_clear_error(synth):
    from senone import SenoneError

    with pytest.raises(SenoneError, match="no voice variant 'nosuch'"):
        synth.synthesize("你好", EspeakVoice(variant="nosuch"))
