"""GMM-HMM training in Kaldi's manner with kaldi-hmm-gmm: vectorised accumulation, Kaldi's own
M-step (``mle_am_diag_gmm_update``), Viterbi alignment in C++, and the training schedules."""
