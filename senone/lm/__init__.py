"""N-gram language models: ARPA estimation (kaldingram), perplexity (kenlm), G.fst (kaldilm); the open
character vocabulary's unigram interpolation and back-off renormalisation (``senone.lm.open_vocab``)."""

from senone.lm.gfst import arpa_to_g
from senone.lm.ngram import arpa_counts, arpa_vocabulary, evaluate, load_kenlm, train_arpa

__all__ = ["arpa_counts", "arpa_to_g", "arpa_vocabulary", "evaluate", "load_kenlm", "train_arpa"]
