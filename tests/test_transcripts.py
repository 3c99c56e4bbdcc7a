"""Bad transcripts and missing inputs end in one clear line that names the file and the fix."""

import pytest
from lhotse import CutSet, MonoCut, SupervisionSegment

from senone import SenoneError
from senone.config import load_config
from senone.lang.transcripts import load_transcripts, to_word_ids


def write_cuts(path, texts):
    cuts = [MonoCut(id=f"u{i}", start=0, duration=1.0, channel=0,
                    supervisions=[SupervisionSegment(id=f"u{i}", recording_id=f"u{i}", start=0, duration=1.0, text=t,
                                                     speaker="s1")])
            for i, t in enumerate(texts)]
    CutSet.from_cuts(cuts).to_file(path)
    return path


def test_empty_transcript_names_file_and_cut(tmp_path):
    path = write_cuts(tmp_path / "cuts.jsonl.gz", ["你好", "  "])
    with pytest.raises(SenoneError, match=r"cuts\.jsonl\.gz: cut u1 has an empty transcript"):
        load_transcripts(path)


def test_transcripts_carry_spoken_syllables(tmp_path):
    path = write_cuts(tmp_path / "cuts.jsonl.gz", ["你好"])
    (t,) = load_transcripts(path)
    assert (t.utt, t.speaker, t.text, t.syllables) == ("u0", "s1", "你好", None)


def test_unpronounceable_transcript_is_an_error():
    words = {"<eps>": 0, "你": 1, "<UNK>": 2}
    ids, n_oov = to_word_ids({"a": ["你", "X"]}, words, "<UNK>", "train.jsonl.gz")
    assert ids == {"a": [1, 2]} and n_oov == 1
    with pytest.raises(SenoneError, match=r"train\.jsonl\.gz: transcript of b is entirely unpronounceable"):
        to_word_ids({"b": ["@@", "##"]}, words, "<UNK>", "train.jsonl.gz")


def test_missing_manifest_names_the_stage(tmp_path):
    with pytest.raises(SenoneError, match=r"missing; it is written by the 'prepare' stage"):
        load_transcripts(tmp_path / "nope.jsonl.gz")


def test_unknown_recipe_lists_the_available_ones():
    with pytest.raises(SenoneError, match=r"recipe 'nope' does not exist .*available: .*synth_zh"):
        load_config("nope")


def test_readings_in_context_enter_the_lexicon():
    """Without recorded syllables the lexicon learns a character's reading from its sentence."""
    from senone.lang import build_mandarin_lexicon
    from senone.lang.transcripts import Transcript, observed_pronunciations

    ts = [Transcript("a", "s", "银行很大", None), Transcript("b", "s", "我们走", "wo3 men5 zou3")]
    units = {"a": list("银行很大"), "b": list("我们走")}
    pairs = observed_pronunciations(ts, units)
    assert ("行", ["hang2"]) in pairs and ("们", ["men5"]) in pairs
    lex, _ = build_mandarin_lexicon(["行"], observed=pairs)
    # default reading xing2 plus the reading of the training text, and no other heteronym
    assert set(lex.prons["行"]) == {("x", "ing2"), ("h", "ang2")}
