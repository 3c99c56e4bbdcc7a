"""Corpus recipes' shared parts: text normalisation (``text``), speech synthesis (``synth``) and
deterministic manifest output (here)."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path
from typing import Any, Iterable

from senone.io import atomic_path

__all__ = ["write_manifest"]


def write_manifest(manifest: Any, path: str | os.PathLike) -> Path:
    """Write a Lhotse manifest (RecordingSet, SupervisionSet, CutSet) as JSONL, gzipped for ``.gz``.

    Lhotse's own ``to_file`` writes the same lines but lets gzip stamp the current time and the
    (temporary) file name into the header, so two identical runs give different bytes. Here the
    header carries neither, so the same manifest always gives the same file. Lhotse reads it back
    with ``load_manifest``/``CutSet.from_file``. Written atomically.
    """
    path = Path(path)
    items: Iterable[dict] = manifest.to_dicts()
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as raw:
            if path.suffix == ".gz":
                with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as f:
                    for item in items:
                        f.write((json.dumps(item, ensure_ascii=False) + "\n").encode("utf-8"))
            else:
                for item in items:
                    raw.write((json.dumps(item, ensure_ascii=False) + "\n").encode("utf-8"))
    return path
