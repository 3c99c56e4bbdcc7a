"""Decoding: acoustic scorers (GMM, NN), parallel 1-best decoding over HCLG, LM-weight search on dev."""

from senone.decode.decoder import DecodeResult, DecodeStats, decode_dataset, load_transition_model, read_word_table
from senone.decode.scorers import AcousticScorer, GmmScorer, NnScorer, gmm_loglikes
from senone.decode.sweep import (
    DEFAULT_ACOUSTIC_SCALE,
    DEFAULT_LM_WEIGHT_SEARCH,
    DEFAULT_LM_WEIGHT_START,
    LM_WEIGHT_SEARCHES,
    lmwt_scales,
    sweep_acoustic_scale,
)

__all__ = [
    "DEFAULT_ACOUSTIC_SCALE",
    "DEFAULT_LM_WEIGHT_SEARCH",
    "DEFAULT_LM_WEIGHT_START",
    "LM_WEIGHT_SEARCHES",
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
