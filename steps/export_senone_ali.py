#!/usr/bin/env python3
"""Senone alignments for the network stage: per-frame pdf-ids of a chosen GMM stage (Kaldi's ali-to-pdf)."""

from __future__ import annotations

import logging
from pathlib import Path

from senone.cli import base_parser, run
from senone.hmm.model import GmmHmm
from senone.io import read_alignments, require_file, write_alignments, write_json

log = logging.getLogger("senone.steps.export_senone_ali")


def main(args) -> None:
    src = Path(args.stage_dir)
    model = GmmHmm.load(src)
    tid2pdf = model.tid2pdf()
    alignments = read_alignments(require_file(src / "ali.ark", "GMM training"))
    pdfs = {utt: tid2pdf[ali] for utt, ali in alignments.items()}
    out = Path(args.out)
    write_alignments(out / "pdf.ark", pdfs)
    counts = [0] * model.num_pdfs
    for p in pdfs.values():
        for pdf in p.tolist():
            counts[pdf] += 1
    write_json(out / "senones.json", {"source": str(src), "num_pdfs": model.num_pdfs,
                                      "num_utterances": len(pdfs), "num_frames": sum(counts),
                                      "unseen_pdfs": sum(1 for c in counts if c == 0)})
    log.info("%d utterances, %d senones from %s -> %s", len(pdfs), model.num_pdfs, src, out / "pdf.ark")


if __name__ == "__main__":
    p = base_parser(__doc__)
    p.add_argument("--stage-dir", required=True, help="GMM stage providing the alignments (final.pkl, ali.ark)")
    p.add_argument("--out", required=True)
    run(main, p)
