"""Use a trained system outside its recipe: export it to a self-contained folder, transcribe new audio with it.

* :mod:`senone.export.bundle` — the export folder (:func:`write_export`, :func:`load_export`, format version).
* :mod:`senone.export.audio` — audio inputs (files, a folder, a Kaldi ``wav.scp``, a Lhotse manifest), checked and
  resampled to the model's rate.
* :mod:`senone.export.align` — word (and Mandarin character) times from a best path's alignment and the lexicon, CTM.
* :mod:`senone.export.transcribe` — :class:`Transcriber`: features, CMVN, (two-pass fMLLR), decoding, confidences.
* :mod:`senone.export.cli` — the ``senone-transcribe`` command.
"""

__all__ = ["FORMAT_VERSION", "ExportedModel", "load_export", "write_export"]


def __getattr__(name: str):
    # lazily: the console script (senone.export.cli) must set its thread settings before numpy is imported
    if name in __all__:
        from senone.export import bundle

        return getattr(bundle, name)
    raise AttributeError(f"module 'senone.export' has no attribute {name!r}")
