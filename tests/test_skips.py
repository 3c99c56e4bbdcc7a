"""SkipReport: every skip counted per reason, logged, and written next to the manifests."""

from __future__ import annotations

import json
import logging

from senone.data.skips import MAX_EXAMPLES, SkipReport


def test_counts_examples_and_json(tmp_path, caplog):
    report = SkipReport("toy")
    for i in range(MAX_EXAMPLES + 5):
        report.add(f"utt{i}", "empty_transcript")
    report.add("rec7", "sample_rate", "8000 Hz, recipe expects 16000 Hz")
    assert report.total == MAX_EXAMPLES + 6
    with caplog.at_level(logging.INFO):
        report.summarise(logging.getLogger("t"))
    lines = [r.getMessage() for r in caplog.records if r.name == "t"]
    assert any("skipped 25 item(s): empty_transcript" in l for l in lines)
    assert any("sample_rate (e.g. rec7: 8000 Hz" in l for l in lines)
    report.write(tmp_path / "skipped.json")
    data = json.loads((tmp_path / "skipped.json").read_text())
    assert data["counts"] == {"empty_transcript": MAX_EXAMPLES + 5, "sample_rate": 1}
    assert len(data["examples"]["empty_transcript"]) == MAX_EXAMPLES  # examples capped, counts complete


def test_empty_report_says_nothing_skipped(tmp_path, caplog):
    report = SkipReport("toy")
    with caplog.at_level(logging.INFO):
        report.summarise(logging.getLogger("t"))
    assert "nothing skipped" in caplog.text
    report.write(tmp_path / "skipped.json")
    assert json.loads((tmp_path / "skipped.json").read_text())["total"] == 0
