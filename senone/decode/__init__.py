"""Decoding: acoustic scorers (GMM, NN), parallel 1-best decoding over HCLG, acoustic-scale sweep."""

from senone.decode.decoder import DecodeResult, DecodeStats, decode_dataset, load_transition_model, read_word_table
from senone.decode.scorers import AcousticScorer, GmmScorer, NnScorer, gmm_loglikes
from senone.decode.sweep import DEFAULT_ACOUSTIC_SCALE, lmwt_scales, sweep_acoustic_scale

__all__ = [
    "DEFAULT_ACOUSTIC_SCALE",
    "AcousticScorer",
    "DecodeResult",
    "DecodeStats",
    "GmmScorer",
    "NnScorer",
    "decode_dataset",
    "gmm_loglikes",
    "lmwt_scales",
    "load_transition_model",
    "read_word_table",
    "sweep_acoustic_scale",
]
