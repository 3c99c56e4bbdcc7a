"""A GMM-HMM acoustic model as Kaldi keeps it: tree (ContextDependency), TransitionModel, AmDiagGmm.

The three objects are kaldi-hmm-gmm (Kaldi C++) objects. On disk a model directory holds
- ``tree``: Kaldi's binary ContextDependency, written by Kaldi's own writer;
- ``final.mdl``: Kaldi's text model format (TransitionModel followed by AmDiagGmm), byte for byte
  what ``gmm-copy --binary=false`` writes (:mod:`senone.hmm.kaldi_text`), readable by Kaldi's
  ``gmm-info``/``gmm-copy``;
- ``final.pkl``: the same model pickled through kaldi-hmm-gmm's ``__getstate__`` (Kaldi's own
  serialisation underneath), which is what senone loads back because kaldi-hmm-gmm 1.1.4 has no
  reader for model files.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path

import kaldi_hmm_gmm as khg
import numpy as np

from senone import SenoneError
from senone.hmm.kaldi_text import model_to_text
from senone.io import atomic_open, atomic_path, require_file


def load_topology(path: str | Path) -> khg.HmmTopology:
    """Read a Kaldi ``topo`` text file (as written by the lang stage)."""
    path = require_file(path, "lang")
    topo = khg.HmmTopology()
    try:
        topo.read(Path(path).read_text(encoding="utf-8"))
    except Exception as exc:  # Kaldi raises a generic RuntimeError with its own log text
        raise SenoneError(f"{path}: not a valid Kaldi HMM topology ({exc}); rebuild the lang directory") from exc
    return topo


def phones_from_topology(topo: khg.HmmTopology) -> list[int]:
    """The phone ids the topology covers (every real phone; disambiguation symbols are excluded)."""
    return list(topo.phones)


@dataclass
class GmmHmm:
    """A tree, a transition model and the GMMs of its pdfs, kept together as Kaldi does."""

    ctx_dep: khg.ContextDependency
    trans_model: khg.TransitionModel
    am: khg.AmDiagGmm

    @property
    def num_pdfs(self) -> int:
        return self.trans_model.num_pdfs

    @property
    def num_gauss(self) -> int:
        return self.am.num_gauss

    @property
    def dim(self) -> int:
        return self.am.dim

    def tid2pdf(self) -> np.ndarray:
        """Array mapping transition-id → pdf-id (index 0, the epsilon, maps to -1)."""
        arr = np.asarray(self.trans_model.transition_id_to_pdf_array(), dtype=np.int64)
        out = np.full(arr.shape[0], -1, dtype=np.int64)
        out[1:] = arr[1:]
        return out

    def tid2phone(self) -> np.ndarray:
        """Array mapping transition-id → phone (index 0, the epsilon, maps to 0)."""
        tm = self.trans_model
        out = np.zeros(tm.num_transition_ids + 1, dtype=np.int64)
        out[1:] = [tm.transition_id_to_phone(t) for t in range(1, tm.num_transition_ids + 1)]
        return out

    def phones_of_pdfs(self, pdfs) -> list[int]:
        """The phones whose HMM states use any of ``pdfs`` (sorted)."""
        tid2pdf, tid2phone = self.tid2pdf(), self.tid2phone()
        return sorted(set(tid2phone[np.isin(tid2pdf, np.asarray(list(pdfs)))].tolist()) - {0})

    def save(self, out_dir: str | Path, name: str = "final") -> None:
        """Write ``tree``, ``<name>.mdl`` (Kaldi text) and ``<name>.pkl`` atomically."""
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        with atomic_path(out_dir / "tree") as tmp:
            self.ctx_dep.write(True, str(tmp))
        with atomic_open(out_dir / f"{name}.mdl") as f:
            f.write(model_to_text(self.trans_model, self.am))
        with atomic_open(out_dir / f"{name}.pkl", "wb") as f:
            pickle.dump({"ctx_dep": self.ctx_dep.__getstate__(), "trans_model": self.trans_model,
                         "am": self.am}, f, protocol=pickle.HIGHEST_PROTOCOL)

    @classmethod
    def load(cls, model_dir: str | Path, name: str = "final") -> "GmmHmm":
        path = require_file(Path(model_dir) / f"{name}.pkl", "GMM training")
        with open(path, "rb") as f:
            state = pickle.load(f)
        ctx_dep = khg.ContextDependency.__new__(khg.ContextDependency)
        ctx_dep.__setstate__(state["ctx_dep"])
        return cls(ctx_dep=ctx_dep, trans_model=state["trans_model"], am=state["am"])
