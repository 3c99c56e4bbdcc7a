"""synth_zh: the default corpus, Mandarin synthesised with espeak-ng from hsk-sentences-audio text."""

from local.synth_zh.prepare import SOURCE_ATTRIBUTION, SOURCE_LICENSE, SOURCE_LICENSE_URL, prepare_synth_zh

__all__ = ["prepare_synth_zh", "SOURCE_LICENSE", "SOURCE_LICENSE_URL", "SOURCE_ATTRIBUTION"]
