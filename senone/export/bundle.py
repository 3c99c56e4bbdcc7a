"""The export folder: everything a transcription needs, without the recipe's ``data/`` and ``exp/``.

Layout (format version :data:`FORMAT_VERSION`), for a GMM system (``tri3``) or a network (``nn/clstm``)::

    model.json            what it is: recipe, system, dev/test error rates, package versions, format version,
                          and every file below with its size (a missing or truncated file is one clear error)
    graph/                HCLG.fst, words.txt, phones.txt, graph.json: the system's decoding graph (a network's is
                          that of the GMM stage whose senones it learned)
    am/                   the GMM stage: final.mdl (Kaldi text), final.pkl (what the decoder loads), tree, and for
                          LDA+MLLT/SAT final.mat + feature_pipeline.json (splicing, fMLLR settings);
                          pdf_counts.txt (senone frame counts of its training alignments: the GMM confidence's prior)
    nn/                   networks: weights.pt (a plain state_dict, loads with ``weights_only=True``; the input
                          normalisation is in it), network.json (spec, input layout, label delay, training chunks,
                          features), pdf_counts.txt (the priors)
    first_pass/           SAT systems: the speaker-independent predecessor that decodes the first fMLLR pass
                          (am/, graph/, best_lm_weight.json)
    features/             gmm.json / nn.json: the extractor settings (framing, mel banks, pitch) at the model's
                          sampling rate, CMVN and delta settings
    cmvn/                 gmm_global.npz / nn_global.npz: the training set's statistics, pooled over its speakers
    lang/                 lexicon.txt, lang.json, silence phones: word times for the CTM (the phones are
                          position-independent, so words are aligned to the path's phones through the lexicon)
    best_lm_weight.json   the LM weight chosen on dev (as ``decode_dev`` wrote it)
    decode.json           search settings (decoder, beam, max-active), acoustic scale, network prior scale and
                          chunking, fMLLR settings

A folder of another format version is refused with one line (:func:`load_export`).
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from senone import SenoneError
from senone.io import require_file, write_json

log = logging.getLogger(__name__)

#: The layout :func:`write_export` writes and :func:`load_export` reads. Raise it whenever a file is added,
#: renamed or changes meaning: an older folder is then refused with a message instead of misread.
FORMAT_VERSION = 1
FORMAT_NAME = "senone-export"
MODEL_JSON = "model.json"
GLOBAL_SPEAKER = "__global__"
#: How the recipe stores features (Kaldi's kTwoByteAuto, senone/feats/extract.py): transcription quantises its
#: features the same way, so the model sees exactly what the recipe's decode sees.
FEATURE_STORAGE = "kaldi-two-byte-auto"

#: Packages whose versions model.json records (what computed the features, the graph and the model).
PACKAGES = ("senone", "torch", "kaldi-hmm-gmm", "kaldifst", "kaldi-native-io", "lhotse", "numpy", "scipy",
            "soundfile")

_GRAPH_FILES = ("HCLG.fst", "words.txt", "phones.txt", "graph.json")
_AM_FILES = ("final.mdl", "final.pkl", "tree")
_AM_OPTIONAL = ("final.mat", "feature_pipeline.json")


def package_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def _copy(src: Path, dst: Path, produced_by: str) -> None:
    require_file(src, produced_by)
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)


def _copy_graph(graph_dir: Path, dst: Path) -> None:
    for name in _GRAPH_FILES:
        _copy(graph_dir / name, dst / name, "graph")


def _copy_am(stage_dir: Path, dst: Path) -> None:
    """A GMM stage's model files, and the senone counts of its training alignments."""
    from senone.hmm.model import GmmHmm
    from senone.io import read_alignments
    from senone.nn.priors import pdf_counts
    from senone.nn.stage import write_pdf_counts

    for name in _AM_FILES:
        _copy(stage_dir / name, dst / name, f"{stage_dir.name} training")
    for name in _AM_OPTIONAL:
        if (stage_dir / name).is_file():
            _copy(stage_dir / name, dst / name, f"{stage_dir.name} training")
    model = GmmHmm.load(stage_dir)
    tid2pdf = model.tid2pdf()
    ali = read_alignments(require_file(stage_dir / "ali.ark", f"{stage_dir.name} training"))
    write_pdf_counts(dst / "pdf_counts.txt", pdf_counts((tid2pdf[a] for a in ali.values()), model.num_pdfs))


def _global_cmvn(stats_path: Path, dst: Path) -> dict:
    from senone.feats.cmvn import load_cmvn_stats, pool_cmvn_stats, save_cmvn_stats

    stats = load_cmvn_stats(require_file(stats_path, "feats"))
    pooled = pool_cmvn_stats(stats)
    save_cmvn_stats(dst, {GLOBAL_SPEAKER: pooled})
    return {"speakers": len(stats), "frames": int(pooled.count)}


def _scores(decode_dir: Path) -> dict | None:
    path = decode_dir / "scores.json"
    if not path.is_file():
        return None
    scores = json.loads(path.read_text(encoding="utf-8"))
    metric = str(scores.get("metric", "CER")).lower()
    main = scores.get(metric) or {}
    out = {"metric": metric.upper(), "rate": main.get("rate"), "errors": main.get("errors"),
           "tokens": main.get("ref_count")}
    if scores.get("syllables"):
        out["syllable_tonal"] = scores["syllables"]["tonal"]["rate"]
        out["syllable_toneless"] = scores["syllables"]["toneless"]["rate"]
    return out


def _lm_weight(decode_dev: Path, dst: Path) -> float:
    src = require_file(decode_dev / "best_lm_weight.json", "decode_dev")
    _copy(src, dst, "decode_dev")
    return float(json.loads(src.read_text(encoding="utf-8"))["lm_weight"])


def _copy_lang(lang_dir: Path, dst: Path) -> dict:
    _copy(lang_dir / "lexicon.txt", dst / "lexicon.txt", "lang")
    info = json.loads(require_file(lang_dir / "lang.json", "lang").read_text(encoding="utf-8"))
    silence = require_file(lang_dir / "phones" / "silence.txt", "lang").read_text(encoding="utf-8").split()
    optional = require_file(lang_dir / "phones" / "optional_silence.txt", "lang").read_text(encoding="utf-8").split()
    oov = require_file(lang_dir / "oov.txt", "lang").read_text(encoding="utf-8").strip()
    lang = {"unit": info.get("unit", "word"), "language": info.get("language"), "oov_word": oov,
            "silence_phones": silence, "optional_silence": optional[0] if optional else None,
            "position_dependent": bool(info.get("position_dependent", False))}
    write_json(dst / "lang.json", lang)
    return lang


def _export_network(nn_dir: Path, dst: Path) -> dict:
    """final.pt → weights.pt (a plain state_dict) + network.json; the priors."""
    import torch

    ckpt = torch.load(require_file(nn_dir / "final.pt", "nn_train"), map_location="cpu", weights_only=False)
    info = dict(ckpt["model_info"])
    if info.get("alignments"):
        info["alignments"] = Path(str(info["alignments"])).name  # the stage's name, not a path of the recipe
    state = {k: v.detach().cpu().contiguous() for k, v in ckpt["state_dict"].items()}
    dst.mkdir(parents=True, exist_ok=True)
    torch.save(state, dst / "weights.pt")
    info["weights"] = "weights.pt"
    info["input_normalization"] = {"buffers": ["mean", "inv_std"],
                                   "what": "x -> (x - mean) * inv_std before the network (Kaldi nnet1 AddShift/Rescale)"}
    info["epoch"] = ckpt.get("epoch")
    write_json(dst / "network.json", info)
    _copy(nn_dir / "pdf_counts.txt", dst / "pdf_counts.txt", "nn_train")
    return info


@dataclass
class ExportSources:
    """Where a recipe keeps what an export copies."""

    exp_dir: Path               # exp/<recipe>
    lang_dir: Path              # data/<recipe>/lang
    gmm_feats_dir: Path         # data/<recipe>/feats/gmm (cmvn_train.npz)
    nn_feats_dir: Path | None   # data/<recipe>/feats/nn (networks)


def write_export(out_dir: str | os.PathLike, *, recipe: str, system: str, sources: ExportSources,
                 decode_conf: Mapping[str, Any], gmm_features: Mapping[str, Any], sampling_rate: int,
                 nn_conf: Mapping[str, Any] | None = None, ali_from: str | None = None,
                 nn_sampling_rate: int | None = None) -> dict:
    """Write the export folder of ``system`` (a GMM stage, or ``nn/<model>``) to ``out_dir``; return model.json.

    ``decode_conf``: the decode settings the recipe decoded the system with (for a network: ``decode`` with
    ``nn.decode`` over it); ``gmm_features``: ``{"extractor": MfccPitchConfig.to_dict(), "conf": features.gmm}``;
    ``nn_conf``: the ``nn`` section (prior scale, threads) for a network; ``ali_from``: the GMM stage whose graph and
    transition model a network decodes with. Written to a temporary folder beside ``out_dir`` and moved into place
    when complete, ``model.json`` last.
    """
    from senone.decode.decoder import search_options

    out_dir = Path(out_dir)
    exp = Path(sources.exp_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        is_nn = system.startswith("nn/")
        stage = ali_from if is_nn else system
        if not stage:
            raise SenoneError(f"export of {system}: name the GMM stage whose senones the network learned (ali_from)")
        stage_dir = exp / stage
        system_dir = exp / system
        _copy_graph(stage_dir / "graph", tmp / "graph")
        _copy_am(stage_dir, tmp / "am")
        lang = _copy_lang(Path(sources.lang_dir), tmp / "lang")
        lm_weight = _lm_weight(system_dir / "decode_dev", tmp / "best_lm_weight.json")
        features: dict[str, Any] = {"frame_shift": float(gmm_features["extractor"].get("frame_shift", 0.01))}
        write_json(tmp / "features" / "gmm.json", {"kind": "gmm", "sampling_rate": int(sampling_rate),
                                                   "storage": FEATURE_STORAGE, **gmm_features})
        cmvn = {"gmm": _global_cmvn(Path(sources.gmm_feats_dir) / "cmvn_train.npz", tmp / "cmvn" / "gmm_global.npz")}
        pipeline_path = stage_dir / "feature_pipeline.json"
        pipeline = json.loads(pipeline_path.read_text(encoding="utf-8")) if pipeline_path.is_file() else {}
        decode: dict[str, Any] = {"search": search_options(decode_conf), "lm_weight": lm_weight,
                                  "acoustic_scale": 1.0 / lm_weight}
        first_pass = None
        network = None
        if is_nn:
            from senone.feats.nn import NnFeatureConfig
            from senone.nn.infer import DecodeChunking

            network = _export_network(system_dir, tmp / "nn")
            if network.get("fmllr"):
                raise SenoneError(f"{system} was trained with {network['fmllr'].get('stage')}'s fMLLR features appended "
                                  "(nn.fmllr_features): exporting such a network is not supported yet; export the SAT "
                                  "system itself, or a network trained without nn.fmllr_features")
            fconf = NnFeatureConfig.from_conf(network["features"])
            if sources.nn_feats_dir is None:
                raise SenoneError(f"export of {system}: the network features' folder (data/<recipe>/feats/nn) is needed "
                                  "for its training CMVN statistics")
            write_json(tmp / "features" / "nn.json", {
                "kind": "nn", "sampling_rate": int(nn_sampling_rate or sampling_rate), "storage": FEATURE_STORAGE,
                "extractor": fconf.extractor_config().to_dict(),
                "conf": {k: getattr(fconf, k) for k in ("num_mel_bins", "use_energy", "delta_order", "delta_window",
                                                        "cmvn", "norm_vars", "pitch")}})
            cmvn["nn"] = _global_cmvn(Path(sources.nn_feats_dir) / "cmvn_train.npz", tmp / "cmvn" / "nn_global.npz")
            nn_conf = nn_conf or {}
            decode["nn"] = {"prior_scale": float(nn_conf.get("prior_scale", 1.0)),
                            "threads": max(1, int(nn_conf.get("threads", 1))),
                            "chunking": {k: getattr(DecodeChunking.from_conf(decode_conf), k)
                                         for k in DecodeChunking.KEYS},
                            "batch_frames": 20000}
        if pipeline.get("fmllr") and not is_nn:  # (a network decodes through a SAT stage's graph without fMLLR)
            fm = pipeline["fmllr"]
            si = fm["si_system"]
            si_dir = exp / si
            _copy_am(si_dir, tmp / "first_pass" / "am")
            _copy_graph(si_dir / "graph", tmp / "first_pass" / "graph")
            si_weight = _lm_weight(si_dir / "decode_dev", tmp / "first_pass" / "best_lm_weight.json")
            first_pass = {"system": si, "lm_weight": si_weight}
            decode["fmllr"] = {"si_system": si, "si_lm_weight": si_weight,
                               "min_count": float(fm.get("min_count", 500.0)),
                               "silence_weight": float(fm.get("silence_weight", 0.0))}
        write_json(tmp / "decode.json", decode)

        files = {str(p.relative_to(tmp)): p.stat().st_size for p in sorted(tmp.rglob("*")) if p.is_file()}
        gmm_kind = pipeline.get("kind", "deltas") if pipeline else "deltas"
        info = {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "recipe": recipe,
            "system": system,
            "kind": "nn" if is_nn else "gmm",
            "description": (f"hybrid network {network['spec']} (width x{network.get('width_scale', 1.0):g}) on "
                            f"{stage}'s senones" if is_nn else
                            f"GMM-HMM {system} ({'SAT, two-pass fMLLR' if first_pass else gmm_kind})"),
            "graph_from": stage,
            "first_pass": first_pass,
            "language": lang["language"],
            "unit": lang["unit"],
            "sampling_rate": int(nn_sampling_rate or sampling_rate) if is_nn else int(sampling_rate),
            "frame_shift": features["frame_shift"],
            "lm_weight": lm_weight,
            "error_rates": {"dev": _scores(system_dir / "decode_dev"), "test": _scores(system_dir / "decode_test")},
            "cmvn_training_statistics": cmvn,
            "num_pdfs": int(json.loads((tmp / "graph" / "graph.json").read_text())["num_pdfs"]),
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "packages": package_versions(),
            "files": files,
        }
        if network is not None:
            info["network"] = {k: network.get(k) for k in ("name", "spec", "width_scale", "num_params", "label_delay")}
        write_json(tmp / MODEL_JSON, info)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
        os.chmod(out_dir, 0o755)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    log.info("exported %s to %s (%d files, %.1f MB)", system, out_dir, len(info["files"]),
             sum(info["files"].values()) / 1e6)
    return info


@dataclass
class ExportedModel:
    """An export folder that passed :func:`load_export`'s checks."""

    path: Path
    info: dict

    @property
    def is_nn(self) -> bool:
        return self.info["kind"] == "nn"

    @property
    def sampling_rate(self) -> int:
        return int(self.info["sampling_rate"])

    def file(self, name: str) -> Path:
        return self.path / name

    def json(self, name: str) -> dict:
        return json.loads(self.file(name).read_text(encoding="utf-8"))

    @property
    def has_first_pass(self) -> bool:
        return bool(self.info.get("first_pass"))


def load_export(path: str | os.PathLike) -> ExportedModel:
    """Check an export folder (format, version, every file listed in model.json) and return it.

    Each problem is one :class:`SenoneError` line: not a folder, no model.json, another format version,
    a missing or truncated file.
    """
    path = Path(path)
    if not path.is_dir():
        raise SenoneError(f"{path}: not an export folder (no such directory); export a system first "
                          "(snakemake export) and give its folder, e.g. exp/<recipe>/export/nn/clstm")
    meta = path / MODEL_JSON
    if not meta.is_file():
        raise SenoneError(f"{path}: no {MODEL_JSON}; this is not a senone export folder (give the folder that "
                          "snakemake export wrote: exp/<recipe>/export/<system>)")
    try:
        info = json.loads(meta.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise SenoneError(f"{meta}: not valid JSON ({exc}); export the system again") from None
    if not isinstance(info, dict) or info.get("format") != FORMAT_NAME:
        raise SenoneError(f"{meta}: not a senone export (format {info.get('format') if isinstance(info, dict) else None!r})")
    version = info.get("format_version")
    if version != FORMAT_VERSION:
        if isinstance(version, int) and version > FORMAT_VERSION:
            raise SenoneError(f"{path}: exported by a newer senone (format version {version}; this senone "
                              f"{_senone_version()} reads version {FORMAT_VERSION}); upgrade senone")
        raise SenoneError(f"{path}: exported by an older senone (format version {version}; this senone "
                          f"{_senone_version()} reads version {FORMAT_VERSION}); export the system again "
                          "with this version (snakemake export)")
    files = info.get("files") or {}
    for name, size in files.items():
        f = path / name
        if not f.is_file():
            raise SenoneError(f"{path}: the model is missing {name}; copy the whole export folder, or export "
                              "the system again (snakemake export)")
        if f.stat().st_size != int(size):
            raise SenoneError(f"{path}: {name} has {f.stat().st_size} bytes, model.json says {size}: the file is "
                              "truncated or was changed; copy the export folder again, or export the system again")
    return ExportedModel(path=path, info=info)


def _senone_version() -> str:
    import senone

    return senone.__version__


def load_global_cmvn(path: Path):
    """The pooled training statistics an export keeps (one :class:`~senone.feats.cmvn.CmvnStats`)."""
    from senone.feats.cmvn import load_cmvn_stats

    stats = load_cmvn_stats(path)
    if GLOBAL_SPEAKER not in stats:
        raise SenoneError(f"{path}: no pooled training statistics in it; export the system again")
    return stats[GLOBAL_SPEAKER]


def read_counts(path: Path) -> np.ndarray:
    from senone.nn.stage import read_pdf_counts

    return read_pdf_counts(path)
