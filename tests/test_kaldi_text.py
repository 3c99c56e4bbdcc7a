"""Kaldi interoperability of the model and alignment files: text final.mdl and ali.ark.

No Kaldi binary is installed, so each check leans on Kaldi's own C++ where a wheel carries it:
kaldi-native-io's Vector/Matrix writers and readers (Kaldi's matrix/kaldi-*.cc) for the numbers,
kaldi-hmm-gmm's HmmTopology reader and TransitionModel writer for the HMM part; the token layout
is checked against a model written out by hand from Kaldi's ``DiagGmm::Write``/``AmDiagGmm::Write``.
"""

from __future__ import annotations

import kaldi_hmm_gmm as khg
import kaldi_native_io as kio
import numpy as np
import pytest

from senone import SenoneError
from senone.hmm.kaldi_text import (am_diag_gmm_to_text, float32_of_text, matrix_text, model_to_text, parse_model_text,
                                   read_model_text, transition_model_to_text, vector_text)
from senone.hmm.model import GmmHmm
from senone.io import read_alignments, write_alignments
from tests import toy_hmm

SPECIAL = np.array([0.0, -0.0, 1.0, -1.0, 0.5, 1 / 3, 2 / 3, 123456789.0, 1e-9, -2.5e-30, 3.4e38, 1e10, 1000.0,
                    0.1, 7.0000005, -4.60517], dtype=np.float32)


def kaldi_written(obj, tmp_path) -> str:
    """What Kaldi's own text writer (kaldi-native-io) prints for a float vector or matrix."""
    path = tmp_path / "k.txt"
    obj.write(str(path), binary=False)
    return path.read_text()


def test_numbers_vectors_and_matrices_match_kaldis_writer(tmp_path):
    rng = np.random.default_rng(0)
    values = np.concatenate([SPECIAL, (rng.normal(size=200) * 10.0 ** rng.integers(-12, 12, 200)).astype(np.float32)])
    assert vector_text(values) == kaldi_written(kio.FloatVector(values), tmp_path)
    mat = values[:210].reshape(14, 15)
    assert matrix_text(mat) == kaldi_written(kio.FloatMatrix(mat), tmp_path)
    assert matrix_text(np.zeros((0, 0), np.float32)) == kaldi_written(kio.FloatMatrix(np.zeros((0, 0), np.float32)),
                                                                      tmp_path)
    # and Kaldi's reader takes ours back, to float precision
    (tmp_path / "ours.txt").write_text(matrix_text(mat))
    np.testing.assert_allclose(kio.FloatMatrix.read(str(tmp_path / "ours.txt")).numpy(), mat, rtol=1e-6)


def one_pdf_model() -> khg.AmDiagGmm:
    gmm = khg.DiagGmm(2, 2)
    gmm.set_weights(np.array([0.25, 0.75], np.float32))
    gmm.set_invvars(np.array([[1.0, 4.0], [0.5, 2.0]], np.float32))
    gmm.set_means(np.array([[1.0, -1.0], [0.0, 3.0]], np.float32))
    gmm.compute_gconsts()
    am = khg.AmDiagGmm()
    am.init(gmm, 1)
    return am


def test_am_diag_gmm_layout_is_kaldis():
    """Tokens as DiagGmm::Write/AmDiagGmm::Write emit them (token + space, newlines after <DiagGMM>
    and </DiagGMM>, vectors `` [ x ]``, matrices `` [`` + rows), numbers at precision 7."""
    am = one_pdf_model()
    g = np.asarray(am.get_pdf(0).gconsts)
    expected = ("<DIMENSION> 2 <NUMPDFS> 1 <DiagGMM> \n"
                f"<GCONSTS>  [ {g[0]:.7g} {g[1]:.7g} ]\n"
                "<WEIGHTS>  [ 0.25 0.75 ]\n"
                "<MEANS_INVVARS>  [\n  1 -4 \n  0 6 ]\n"
                "<INV_VARS>  [\n  1 4 \n  0.5 2 ]\n"
                "</DiagGMM> \n")
    assert am_diag_gmm_to_text(am) == expected


def toy_model(tmp_path) -> GmmHmm:
    """A trained toy monophone system (its topology has a 1/3 probability that precision 6 would cut)."""
    topo = khg.HmmTopology()
    topo.read(toy_hmm.TOPO.replace("<Transition> 0 0.75 <Transition> 1 0.25",
                                   "<Transition> 0 0.6666667 <Transition> 1 0.3333333"))
    from senone.gmm.mono import MonoConfig, train_mono

    transcripts, feats, _ = toy_hmm.make_corpus(20, seed=3)
    res = train_mono(topo, toy_hmm.lexicon_fst(), [], transcripts, feats, toy_hmm.DIM, tmp_path / "mono",
                     MonoConfig(num_iters=3, max_iter_inc=2, tot_gauss=20, realign_iters=(1, 2), init_subset=20))
    return res.model


def test_model_text_round_trips_through_kaldis_readers(tmp_path):
    model = toy_model(tmp_path)
    text = (tmp_path / "mono" / "final.mdl").read_text()
    assert text == model_to_text(model.trans_model, model.am)
    # TransitionModel: kaldi-hmm-gmm's own writer, numbers at Kaldi's output precision 7 instead of 6
    kaldi6 = str(model.trans_model)
    ours = transition_model_to_text(model.trans_model)
    assert len(ours.split()) == len(kaldi6.split())
    for a, b in zip(ours.split(), kaldi6.split()):  # same tokens; numbers differ only past 6 digits
        assert a == b or float(a) == pytest.approx(float(b), rel=1e-5, abs=1e-6), (a, b)
    assert "<Transition> 0 0.6666667 <Transition> 1 0.3333333 " in ours
    assert "<Transition> 0 0.666667 <Transition> 1 0.333333 " in kaldi6
    back = read_model_text(tmp_path / "mono" / "final.mdl")
    # the topology goes back through Kaldi's HmmTopology reader unchanged
    assert str(back.topology) == str(model.trans_model.topo)
    tm_tuples = [tuple(int(x) for x in line.split()) for line in
                 kaldi6.split("<Triples>")[1].split("</Triples>")[0].strip().split("\n")[1:]]
    assert back.tuples == tm_tuples
    np.testing.assert_allclose(back.log_probs, model.trans_model.log_probs, rtol=1e-6, atol=1e-7)
    assert back.am.num_pdfs == model.am.num_pdfs and back.am.num_gauss == model.am.num_gauss
    for p in range(model.am.num_pdfs):
        a, b = model.am.get_pdf(p), back.am.get_pdf(p)
        for field in ("weights", "means_invvars", "inv_vars", "gconsts"):
            np.testing.assert_allclose(np.asarray(getattr(b, field)), np.asarray(getattr(a, field)), rtol=2e-6,
                                       atol=1e-6, err_msg=f"pdf {p} {field}")
    # every numeric block of the GMMs is also readable by Kaldi's own Vector reader
    first_weights = text.split("<WEIGHTS> ")[1].split("\n")[0] + "\n"
    (tmp_path / "w.txt").write_text(first_weights)
    np.testing.assert_allclose(kio.FloatVector.read(str(tmp_path / "w.txt")).numpy(),
                               np.asarray(model.am.get_pdf(0).weights), rtol=1e-6)


def test_reading_a_broken_model_says_what_is_wrong(tmp_path):
    am_text = am_diag_gmm_to_text(one_pdf_model())
    with pytest.raises(SenoneError, match="not a Kaldi text model"):
        parse_model_text(am_text)
    (tmp_path / "bin.mdl").write_bytes(b"\0B<TransitionModel> ")
    with pytest.raises(SenoneError, match="binary"):
        read_model_text(tmp_path / "bin.mdl")
    model = toy_model(tmp_path)
    text = model_to_text(model.trans_model, model.am)
    with pytest.raises(SenoneError, match="truncated|expected"):
        parse_model_text(text[: len(text) - 200])


def test_alignment_archive_bytes_are_kaldis(tmp_path):
    """Kaldi's binary int32-vector archive: ``key `` ``\\0B``, size as ``\\4`` + int32, then each
    element as ``\\4`` + little-endian int32 (what copy-int-vector / show-alignments read)."""
    write_alignments(tmp_path / "ali.ark", {"u2": [7], "u1": [1, 2, 300]})
    data = (tmp_path / "ali.ark").read_bytes()

    def vec(values):
        return b"\0B\x04" + len(values).to_bytes(4, "little") + b"".join(
            b"\x04" + v.to_bytes(4, "little") for v in values)

    assert data == b"u1 " + vec([1, 2, 300]) + b"u2 " + vec([7])
    back = read_alignments(tmp_path / "ali.ark")
    assert list(back) == ["u1", "u2"] and back["u1"].tolist() == [1, 2, 300]


def realistic_am(num_pdfs: int = 40, num_gauss: int = 6, dim: int = 39, seed: int = 0) -> khg.AmDiagGmm:
    """GMMs with trained-model-like parameters (Δ+ΔΔ dimensions, varied variances and weights)."""
    rng = np.random.default_rng(seed)
    am = khg.AmDiagGmm()
    for p in range(num_pdfs):
        gmm = khg.DiagGmm(num_gauss, dim)
        gmm.set_weights(rng.dirichlet(np.ones(num_gauss)).astype(np.float32))
        gmm.set_invvars((1.0 / rng.uniform(0.05, 40.0, (num_gauss, dim))).astype(np.float32))
        gmm.set_means(rng.normal(0.0, 6.0, (num_gauss, dim)).astype(np.float32))
        gmm.compute_gconsts()
        if p == 0:
            am.init(gmm, 1)
        else:
            am.add_pdf(gmm)
    return am


def test_gmm_text_is_what_kaldi_writes_back():
    """gmm-copy --binary=false reads the text (DiagGmm::Read recomputes <GCONSTS> in float from the 7-digit
    parameters) and writes it again: our text must come back byte for byte. Kaldi's reading is the reader
    here (its ComputeGconsts through kaldi-hmm-gmm); the constants of the exact in-memory parameters would
    differ in the last digit for most GMMs, so this checks the written constants, not only the layout."""
    am = realistic_am()
    text = am_diag_gmm_to_text(am)
    blocks = text.split("<DiagGMM> \n")[1:]
    written = [float32_of_text(b.split("<GCONSTS>  [ ")[1].split(" ]")[0].split()) for b in blocks]
    exact = [np.asarray(am.get_pdf(p).gconsts) for p in range(am.num_pdfs)]
    assert sum(not np.array_equal(w, e) for w, e in zip(written, exact)) > am.num_pdfs // 4  # the old writer's gap
    dim_pdfs = f"<DIMENSION> {am.dim} <NUMPDFS> {am.num_pdfs} "
    assert text.startswith(dim_pdfs)
    tm_text = transition_model_to_text(toy_hmm_transition_model())
    back = parse_model_text(tm_text + text)
    assert am_diag_gmm_to_text(back.am) == text


def toy_hmm_transition_model() -> khg.TransitionModel:
    from senone.gmm.mono import init_mono_model

    _, feats, _ = toy_hmm.make_corpus(3)
    return init_mono_model(toy_hmm.topology(), feats, toy_hmm.DIM, 3).trans_model


def test_text_numbers_are_read_as_strtof_reads_them():
    """Decimal → float32 rounded once (strtof), also where decimal → double → float would round twice."""
    # a hair above 1 + 2^-24: the double rounds to 1 + 2^-24, exactly halfway between two floats; ties-to-even
    # would then give 1.0, but the decimal is above the midpoint, so the float is 1 + 2^-23
    above = "1.000000059604644775390625000000000000000867361737988403547205962240695953369140625"
    assert float32_of_text([above])[0] == np.float32(1 + 2 ** -23)
    assert float32_of_text(["1.0000000596046447753906250"])[0] == np.float32(1.0)  # the exact midpoint: even
    values = np.random.default_rng(1).normal(size=1000).astype(np.float32)
    np.testing.assert_array_equal(float32_of_text([repr(float(v)) for v in values]), values)
