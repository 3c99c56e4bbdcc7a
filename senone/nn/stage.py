"""The network stage's recipe-level pieces: model entries from the configuration, the validation
split, senone counts on disk, and rebuilding a trained network for decoding.

A recipe lists its networks under ``nn.models`` by name, each with a spec in the paper's notation
(``CLstm256P128+Pooling+3xReLU2000``), an optional ``width_scale`` and training settings that
override the shared ``nn.train``; ``nn.default`` names the one ``decode`` trains and reports.

Validation utterances (model selection) come from the training split, because only the training
split has senone alignments: either a list the recipe names (``nn.valid_from``, e.g. HKUST's
~3 h of training calls written by its preparation, as the paper held them out from network
training only) or a seeded draw of ``nn.valid_fraction`` of the utterances or speakers.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Collection, Mapping, Sequence

import numpy as np
import torch

from senone import SenoneError
from senone.config import deep_merge
from senone.io import write_text
from senone.nn.train import TrainConfig

log = logging.getLogger(__name__)

#: The Kaldi-format senone frame counts a network's priors come from (``ali-to-pdf | analyze-counts``).
PDF_COUNTS = "pdf_counts.txt"


@dataclass
class ModelEntry:
    """One network of a recipe: its name (directory under exp/<recipe>/nn/), spec and settings."""

    name: str
    spec: str
    width_scale: float
    train: TrainConfig


def model_entry(nn_conf: Mapping[str, Any], name: str) -> ModelEntry:
    """``nn.models[name]`` merged over the shared ``nn.train`` settings, with clear errors."""
    models = nn_conf.get("models") or {}
    if name not in models:
        raise SenoneError(f"no network named {name!r} under nn.models; the recipe lists: {', '.join(sorted(models))}")
    entry = models[name] or {}
    if not isinstance(entry, Mapping) or not entry.get("spec"):
        raise SenoneError(f"nn.models.{name} needs a 'spec' in the paper's notation, e.g. 'CLstm256P128+Pooling+3xReLU2000'")
    unknown = sorted(set(entry) - {"spec", "width_scale", "train", "description"})
    if unknown:
        raise SenoneError(f"nn.models.{name}: unknown key(s) {unknown}; use spec, width_scale, train, description")
    train = TrainConfig.from_dict(deep_merge(nn_conf.get("train") or {}, entry.get("train") or {}))
    return ModelEntry(name=name, spec=str(entry["spec"]), width_scale=float(entry.get("width_scale", 1.0)), train=train)


def split_validation(utt2spk: Mapping[str, str], fraction: float, by: str = "utterance",
                     seed: int = 0) -> tuple[list[str], list[str]]:
    """Hold out about ``fraction`` of the training utterances for model selection (seeded).

    ``by="utterance"`` draws utterances at random (the paper drew ~3 h of its 150 h at random);
    ``by="speaker"`` draws whole speakers until the fraction is reached, so validation speakers are
    unseen in training. At least one utterance (or speaker) is held out whenever ``fraction`` > 0.
    """
    utts = sorted(utt2spk)
    if fraction <= 0:
        return utts, []
    if not 0 < fraction < 1:
        raise SenoneError(f"nn.valid_fraction={fraction}: must be in [0, 1)")
    rng = np.random.default_rng(seed)
    if by == "utterance":
        n = max(1, round(fraction * len(utts)))
        valid = set(utts[i] for i in rng.permutation(len(utts))[:n])
    elif by == "speaker":
        speakers = sorted(set(utt2spk.values()))
        if len(speakers) < 2:
            raise SenoneError("nn.valid_by=speaker needs at least 2 training speakers; use valid_by: utterance")
        per_spk: dict[str, int] = {}
        for u in utts:
            per_spk[utt2spk[u]] = per_spk.get(utt2spk[u], 0) + 1
        chosen: set[str] = set()
        for i in rng.permutation(len(speakers)):
            if chosen and sum(per_spk[s] for s in chosen) >= fraction * len(utts):
                break
            chosen.add(speakers[i])
        valid = {u for u in utts if utt2spk[u] in chosen}
    else:
        raise SenoneError(f"nn.valid_by={by!r}: use 'utterance' or 'speaker'")
    if len(valid) == len(utts):
        raise SenoneError("the validation split took every training utterance; lower nn.valid_fraction")
    return [u for u in utts if u not in valid], sorted(valid)


def read_utterance_ids(path: str | os.PathLike) -> list[str]:
    """The utterance ids a validation list names, in file order, each once.

    Two formats: a text list whose first field per line is the id (a plain list such as
    ``nn_valid_utts.txt``, or a Kaldi ``utt2spk``/``text``/``segments`` file; blank lines and lines
    starting with ``#`` are ignored), or a Lhotse manifest (``.jsonl``/``.jsonl.gz``: the ``id``
    of every cut or supervision).
    """
    path = Path(path)
    if not path.is_file():
        raise SenoneError(f"nn.valid_from: {path} not found; run the prepare stage that writes it, or point "
                          "nn.valid_from at a list of training utterance ids (or null to draw nn.valid_fraction)")
    name = path.name.lower()
    if name.endswith((".jsonl", ".jsonl.gz")):
        from lhotse.serialization import load_jsonl

        try:
            ids = [str(item["id"]) for item in load_jsonl(path)]
        except (KeyError, TypeError, ValueError, OSError, EOFError) as exc:
            raise SenoneError(f"nn.valid_from: {path} is not a Lhotse manifest with an 'id' per line ({exc}); "
                              "give a cuts or supervisions manifest, or a text list of utterance ids") from exc
    else:
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except UnicodeDecodeError as exc:
            raise SenoneError(f"nn.valid_from: {path} is not UTF-8 text; give a list of utterance ids, one per "
                              "line, or a Lhotse manifest (.jsonl.gz)") from exc
        ids = [line.split()[0] for line in lines if line.strip() and not line.lstrip().startswith("#")]
    return list(dict.fromkeys(ids))


def validation_from_list(aligned: Collection[str], listed: Sequence[str], known: Collection[str],
                         source: str = "nn.valid_from") -> tuple[list[str], list[str]]:
    """Hold out the listed utterances: ``(train, valid)`` over the ``aligned`` training utterances.

    ``known``: every utterance of the training split, usable or not (with features, or skipped by
    feature extraction), so that an id from another split or corpus is told apart from one the GMM
    aligner or the feature extractor dropped. Unknown ids are an error (the list does not describe
    this training split: a stale or foreign file, or a dev/test list, which holds nothing the
    networks could be validated on); known ids without an alignment are left out with a warning;
    a list that leaves no validation or no training utterance is an error.
    """
    if not listed:
        raise SenoneError(f"{source} lists no utterance; prepare it with some validation speech (HKUST: "
                          "corpus.nn_valid_hours > 0), or set nn.valid_from: null to draw nn.valid_fraction")
    known = set(known)
    unknown = [u for u in listed if u not in known]
    if unknown:
        raise SenoneError(f"{source}: {len(unknown)} of {len(listed)} listed ids are not utterances of the training "
                          f"split (e.g. {', '.join(unknown[:3])}); the list must name training cut ids — validation "
                          "speech stays in the GMM training data so that it has senone alignments")
    aligned = set(aligned)
    valid = sorted(u for u in listed if u in aligned)
    if not valid:
        raise SenoneError(f"{source}: none of its {len(listed)} utterances has features and a senone alignment "
                          "(the GMM aligner or the feature extractor dropped them all); check the alignment log")
    dropped = len(listed) - len(valid)
    if dropped:
        log.warning("%s: %d of %d listed utterances have no features or senone alignment and are not used",
                    source, dropped, len(listed))
    held = set(valid)
    train = sorted(u for u in aligned if u not in held)
    if not train:
        raise SenoneError(f"{source} holds out every aligned training utterance; list fewer for validation")
    return train, valid


def choose_validation(nn_conf: Mapping[str, Any], utt2spk: Mapping[str, str], known: Collection[str],
                      seed: int = 0) -> tuple[list[str], list[str], str]:
    """``(train, valid, description)``: the list of ``nn.valid_from`` when set, else the seeded draw of
    ``nn.valid_fraction`` by ``nn.valid_by`` (:func:`split_validation`) over the aligned ``utt2spk``."""
    source = nn_conf.get("valid_from")
    if source:
        listed = read_utterance_ids(source)
        train, valid = validation_from_list(utt2spk, listed, known, source=f"nn.valid_from ({source})")
        log.info("validation utterances from %s (nn.valid_fraction and nn.valid_by are not used)", source)
        return train, valid, f"listed in {source}"
    fraction, by = float(nn_conf.get("valid_fraction", 0.02)), nn_conf.get("valid_by", "utterance")
    train, valid = split_validation(utt2spk, fraction, by, seed=seed)
    return train, valid, f"{fraction:g} of the training {by}s, seed {seed}"


def training_processes(requested: int, num_gpus: int) -> int:
    """How many torchrun processes to start for ``nn.processes = requested``.

    On CPUs every process is a gloo worker, so any number works. On GPUs each process needs a device of
    its own (NCCL refuses two ranks on one GPU), so a recipe tuned for a 2-core CPU (synth_zh asks for
    2) runs one process per GPU present, at most ``requested``.
    """
    if requested < 1:
        raise SenoneError(f"nn.processes = {requested}: expected 1 or more")
    if num_gpus > 0 and requested > num_gpus:
        log.warning("nn.processes = %d but %d GPU(s): training with %d process(es), one per GPU",
                    requested, num_gpus, num_gpus)
        return num_gpus
    return requested


def write_pdf_counts(path: str | os.PathLike, counts: Sequence[int]) -> None:
    """Senone frame counts as a Kaldi text vector (what ``analyze-counts`` writes; nnet1 reads it)."""
    write_text(path, "[ " + " ".join(str(int(c)) for c in counts) + " ]\n")


def read_pdf_counts(path: str | os.PathLike) -> np.ndarray:
    text = Path(path).read_text().strip()
    if not (text.startswith("[") and text.endswith("]")):
        raise SenoneError(f"{path}: not a Kaldi text vector '[ c1 c2 ... ]'; rerun the network training stage")
    return np.array([float(v) for v in text[1:-1].split()], dtype=np.float64)


def load_trained(path: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[torch.nn.Module, dict]:
    """Rebuild a trained network from its ``final.pt`` alone (its spec, input layout and weights)."""
    from senone.nn.model import InputLayout, build_model
    from senone.nn.norm import InputNormalized

    path = Path(path)
    if not path.is_file():
        raise SenoneError(f"{path}: trained network not found; run its training stage (nn_train) first")
    ckpt = torch.load(path, map_location=device, weights_only=False)
    info = ckpt["model_info"]
    net = build_model(info["spec"], InputLayout(*info["layout"]), num_pdfs=info["num_pdfs"],
                      width_scale=info.get("width_scale", 1.0))
    dim = int(np.prod(info["layout"][:2]) + info["layout"][2])
    model = InputNormalized(net, np.zeros(dim, np.float32), np.ones(dim, np.float32))  # buffers come from the file
    model.load_state_dict(ckpt["state_dict"])
    model.to(device).eval()
    return model, info
