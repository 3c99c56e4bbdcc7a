"""The network side of the hybrid recipes: the reference paper's acoustic models (FFNN, LSTM(P),
CNN, CLSTM) built from its table notation.

``spec`` parses the notation, ``model`` builds networks (and counts their parameters without
building them), ``lstm`` is the peephole LSTM(P) of eqs. 3-8, ``layers`` the patch and frame layers,
``paper`` Tables 1-5 as data.
"""
