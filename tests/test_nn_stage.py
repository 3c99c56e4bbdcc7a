"""The network stage's validation set: a recipe's list of training utterances (nn.valid_from) or a seeded draw."""

from __future__ import annotations

import gzip
import logging

import pytest

from senone import SenoneError
from senone.nn.stage import choose_validation, read_utterance_ids, split_validation, validation_from_list

# 3 calls × 2 sides × 4 utterances; the speaker is the call side, as in HKUST
UTT2SPK = {f"call{c}-{s}-{u:02d}": f"call{c}-{s}" for c in range(3) for s in "AB" for u in range(4)}


def test_text_list_kaldi_table_and_lhotse_manifest(tmp_path):
    plain = tmp_path / "nn_valid_utts.txt"
    plain.write_text("# held-out calls\ncall1-A-00\n\ncall1-A-01\ncall1-A-00\n  call1-B-00  \n", encoding="utf-8")
    assert read_utterance_ids(plain) == ["call1-A-00", "call1-A-01", "call1-B-00"]  # file order, each once
    utt2spk = tmp_path / "utt2spk"
    utt2spk.write_text("call2-B-03 call2-B\ncall0-A-00 call0-A\n")
    assert read_utterance_ids(utt2spk) == ["call2-B-03", "call0-A-00"]

    from lhotse import CutSet, MonoCut, SupervisionSegment

    cuts = CutSet.from_cuts(MonoCut(id=u, start=0.0, duration=1.0, channel=0,
                                    supervisions=[SupervisionSegment(id=u, recording_id="r", start=0.0, duration=1.0)])
                            for u in ("call0-B-01", "call0-B-02"))
    manifest = tmp_path / "valid_cuts.jsonl.gz"
    cuts.to_file(manifest)
    assert read_utterance_ids(manifest) == ["call0-B-01", "call0-B-02"]


def test_unreadable_lists_are_one_clear_error(tmp_path):
    with pytest.raises(SenoneError, match="not found.*nn.valid_from"):
        read_utterance_ids(tmp_path / "missing.txt")
    bad_gz = tmp_path / "cuts.jsonl.gz"
    bad_gz.write_bytes(gzip.compress(b'{"no_id": 1}\n'))
    with pytest.raises(SenoneError, match="not a Lhotse manifest"):
        read_utterance_ids(bad_gz)
    binary = tmp_path / "list.txt"
    binary.write_bytes(b"\xff\xfe\x00utt\n")
    with pytest.raises(SenoneError, match="not UTF-8"):
        read_utterance_ids(binary)


def test_listed_utterances_are_held_out_exactly():
    listed = [u for u in UTT2SPK if u.startswith("call1-")]
    train, valid = validation_from_list(UTT2SPK, listed, known=UTT2SPK)
    assert valid == sorted(listed) and len(valid) == 8
    assert train == sorted(set(UTT2SPK) - set(listed))
    assert not {UTT2SPK[u] for u in train} & {UTT2SPK[u] for u in valid}  # whole calls: no speaker on both sides


def test_listed_but_unaligned_are_dropped_with_a_warning(caplog):
    aligned = {u: s for u, s in UTT2SPK.items() if u != "call1-A-00"}  # the GMM aligner failed on one
    with caplog.at_level(logging.WARNING, logger="senone.nn.stage"):
        train, valid = validation_from_list(aligned, ["call1-A-00", "call1-A-01"], known=UTT2SPK)
    assert valid == ["call1-A-01"] and "call1-A-00" not in train
    assert "1 of 2 listed utterances" in caplog.text


def test_unknown_ids_and_empty_outcomes_are_errors():
    with pytest.raises(SenoneError, match=r"2 of 3 listed ids are not utterances of the training split \(e.g. dev-1"):
        validation_from_list(UTT2SPK, ["call0-A-00", "dev-1", "dev-2"], known=UTT2SPK)
    with pytest.raises(SenoneError, match="none of its 1 utterances"):
        validation_from_list({u: s for u, s in UTT2SPK.items() if u != "call0-A-00"}, ["call0-A-00"], known=UTT2SPK)
    with pytest.raises(SenoneError, match="every aligned training utterance"):
        validation_from_list(UTT2SPK, list(UTT2SPK), known=UTT2SPK)
    with pytest.raises(SenoneError, match="lists no utterance.*valid_from: null"):
        validation_from_list(UTT2SPK, [], known=UTT2SPK)


def test_choose_validation_prefers_the_list(tmp_path):
    path = tmp_path / "nn_valid_utts.txt"
    path.write_text("call2-A-00\ncall2-B-03\n")
    train, valid, how = choose_validation({"valid_from": str(path), "valid_fraction": 0.5}, UTT2SPK, UTT2SPK)
    assert valid == ["call2-A-00", "call2-B-03"] and len(train) == len(UTT2SPK) - 2 and str(path) in how
    # without a list: the seeded draw, the same as split_validation's
    conf = {"valid_from": None, "valid_fraction": 0.25, "valid_by": "speaker"}
    train, valid, how = choose_validation(conf, UTT2SPK, UTT2SPK, seed=3)
    assert (train, valid) == split_validation(UTT2SPK, 0.25, "speaker", seed=3) and "speaker" in how
    assert len({UTT2SPK[u] for u in valid}) == 2  # whole speakers until a quarter of the utterances


def test_training_processes_one_per_gpu():
    """A CPU recipe's nn.processes (gloo workers) is capped at one process per GPU where there are GPUs."""
    from senone.nn.stage import training_processes

    assert training_processes(2, num_gpus=0) == 2  # CPU: gloo, any number
    assert training_processes(2, num_gpus=1) == 1  # NCCL cannot put two ranks on one GPU
    assert training_processes(4, num_gpus=8) == 4
    with pytest.raises(SenoneError, match="nn.processes = 0"):
        training_processes(0, num_gpus=0)
