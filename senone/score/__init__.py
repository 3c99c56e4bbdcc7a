"""Scoring: Kaldi-style CER/WER, pinyin syllable error rates, score reports, tables and plots.

``tokenize``    — Kaldi's Mandarin scoring tokens (CJK one per token, Latin words whole, marks removed).
``error_rate``  — ``compute-wer`` counts and ``align-text``/``per_utt`` alignments via kaldialign.
``syllables``   — tonal/toneless pinyin syllable error rates (acoustic errors vs homophone choices).
``report``      — ``score_and_write`` for a decode directory, RESULTS tables, bar and sweep plots.
"""

from senone.score.error_rate import (
    EPS,
    ErrorStats,
    ScoreResult,
    UttAlignment,
    align_tokens,
    compute_error_rate,
    format_per_utt,
    format_rate,
    score_utterance,
)
from senone.score.report import (
    plot_acwt_sweep,
    plot_results,
    read_text_map,
    results_row,
    score_and_write,
    write_results_table,
)
from senone.score.syllables import (
    SyllableScores,
    normalize_syllable,
    parse_syllables,
    strip_tone,
    syllable_error_rates,
    text_to_syllables,
)
from senone.score.tokenize import DEFAULT_NOISE_MARKS, Tokenizer, is_cjk, is_noise_mark, tokenize_text

__all__ = [
    "EPS",
    "ErrorStats",
    "ScoreResult",
    "UttAlignment",
    "align_tokens",
    "compute_error_rate",
    "format_per_utt",
    "format_rate",
    "score_utterance",
    "plot_acwt_sweep",
    "plot_results",
    "read_text_map",
    "results_row",
    "score_and_write",
    "write_results_table",
    "SyllableScores",
    "normalize_syllable",
    "parse_syllables",
    "strip_tone",
    "syllable_error_rates",
    "text_to_syllables",
    "DEFAULT_NOISE_MARKS",
    "Tokenizer",
    "is_cjk",
    "is_noise_mark",
    "tokenize_text",
]
