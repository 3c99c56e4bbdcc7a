"""Decoding graphs: HCLG construction (Kaldi's mkgraph.sh) and the FST helpers kaldifst lacks."""

from senone.graph.fst_utils import (
    FstArrays,
    arrays_to_fst,
    count_labels,
    fst_summary,
    fst_to_arrays,
    is_stochastic,
    read_fst,
    remove_symbols,
    stochasticity,
    write_fst,
)
from senone.graph.hclg import make_hclg, read_int_list

__all__ = [
    "FstArrays",
    "arrays_to_fst",
    "count_labels",
    "fst_summary",
    "fst_to_arrays",
    "is_stochastic",
    "make_hclg",
    "read_fst",
    "read_int_list",
    "remove_symbols",
    "stochasticity",
    "write_fst",
]
