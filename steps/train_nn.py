#!/usr/bin/env python3
"""Network training stage: one senone classifier of ``nn.models`` on the GMM stage's senone alignments.

Writes into ``--out`` (exp/<recipe>/nn/<model>/): ``final.pt`` (the epoch with the best validation
cross-entropy), ``checkpoints/epoch_NNN.pt`` (resume points), ``history.json`` and
``training_curve.png``, ``pdf_counts.txt`` (senone frame counts for the priors, Kaldi text vector)
and ``model.json`` (spec, #params, data, schedule). Several processes: ``torchrun --nproc_per_node N
-m steps.train_nn ...`` (DistributedDataParallel; gloo on CPU, NCCL on GPUs).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import torch
from lhotse import CutSet

from senone import SenoneError
from senone.cli import base_parser, parse_conf, run
from senone.feats import load_cmvn_stats, speaker_of
from senone.feats.adapted import TRANSFORMS_FILE, adapted_features, append_adapted
from senone.feats.extract import skipped_cut_ids
from senone.feats.nn import iter_nn_inputs, load_nn_cmvn, nn_input_layout
from senone.io import read_alignments, require_file, write_json
from senone.nn.model import InputLayout, build_model, count_params
from senone.nn.norm import InputNormalized, input_stats
from senone.nn.priors import pdf_counts
from senone.nn.stage import PDF_COUNTS, choose_validation, model_entry, write_pdf_counts
from senone.nn.train import init_distributed, pick_device, train
from senone.score.report import plot_nn_curves

log = logging.getLogger("senone.steps.train_nn")


def main(args) -> None:
    rank, size = init_distributed()
    conf = parse_conf(args.conf)
    nn_conf, fconf = conf["nn"], conf["features"]["nn"]
    entry = model_entry(nn_conf, args.model)
    out = Path(args.out)
    # intra-op threads per process (nn.threads, default 1): small recurrent steps do not scale across
    # threads, and on a busy machine OpenMP threads waiting on each other made a step 50x slower;
    # use more cores through nn.processes (DistributedDataParallel) instead
    threads = max(1, min(int(nn_conf.get("threads", 1)), args.threads))
    torch.set_num_threads(threads)
    device = pick_device()

    info = json.loads(require_file(args.senones, "senone_ali").read_text())
    num_pdfs = int(info["num_pdfs"])
    labels = read_alignments(args.ali)
    feats_dir = Path(args.feats_dir)
    cuts = CutSet.from_file(require_file(feats_dir / f"cuts_{args.split}.jsonl.gz", "feats (kind nn)"))
    by_id = {c.id: c for c in cuts}
    missing = sorted(set(by_id) - set(labels))
    if missing:
        log.warning("%d of %d training utterances have no senone alignment (the GMM aligner failed on them) and are "
                    "not used, e.g. %s", len(missing), len(by_id), ", ".join(missing[:5]))
    utt2spk = {u: speaker_of(by_id[u]) for u in by_id if u in labels}
    if not utt2spk:
        raise SenoneError(f"none of the {len(by_id)} feature cuts has a senone alignment in {args.ali}; the features "
                          "and the alignments come from different corpora or splits")
    # validation: nn.valid_from (a recipe's list, e.g. HKUST's held-out training calls) or a seeded draw, chosen
    # before any feature is read so that a bad list fails at once; cuts the feature extractor skipped count as
    # known (dropped with a warning), ids from elsewhere are an error
    known = set(by_id) | set(skipped_cut_ids(feats_dir, args.split))
    train_utts, valid_utts, valid_how = choose_validation(nn_conf, utt2spk, known, seed=entry.train.seed)
    cmvn = load_nn_cmvn(feats_dir, args.split, fconf)
    bands, streams, extra = nn_input_layout(fconf)
    adapted, fmllr_info = None, None
    if nn_conf.get("fmllr_features"):
        # the SAT stage's speaker-adapted features appended (Kaldi nnet1's make_fmllr_feats.sh), training
        # speakers' transforms from SAT training
        if not (args.fmllr_stage and args.gmm_feats):
            raise SenoneError("nn.fmllr_features is on: give --fmllr-stage (the SAT stage) and --gmm-feats")
        gmm_dir = Path(args.gmm_feats)
        gmm_cuts = CutSet.from_file(require_file(gmm_dir / f"cuts_{args.split}.jsonl.gz", "feats (kind gmm)"))
        adapted = adapted_features(args.fmllr_stage, gmm_cuts,
                                   load_cmvn_stats(require_file(gmm_dir / f"cmvn_{args.split}.npz", "feats")),
                                   require_file(Path(args.fmllr_stage) / TRANSFORMS_FILE, "the SAT stage"))
        fmllr_info = {"stage": Path(args.fmllr_stage).name, "dim": adapted.dim}
        extra += adapted.dim

    def load_one(utt: str) -> np.ndarray:
        x = next(iter_nn_inputs([by_id[utt]], cmvn, fconf))[1]
        if adapted is not None:
            x = append_adapted(utt, x, adapted[utt])
        if len(x) != len(labels[utt]):
            raise SenoneError(f"{utt}: {len(x)} feature frames but {len(labels[utt])} aligned frames; the nn and gmm "
                              "features must use the same framing (frame shift/length) — re-run the feats stage")
        return x

    layout = (bands, streams, extra)
    frame_bytes = 4 * layout[0] * layout[1] + 4 * layout[2]
    total_frames = sum(len(labels[u]) for u in utt2spk)
    in_memory = total_frames * frame_bytes <= float(nn_conf.get("max_feature_memory_gb", 4.0)) * 2**30
    if in_memory:
        cache = {u: load_one(u) for u in sorted(utt2spk)}
        load = cache.__getitem__
    else:
        log.info("features (%.1f GB) exceed nn.max_feature_memory_gb: streaming them from storage",
                 total_frames * frame_bytes / 2**30)
        load = load_one

    counts = pdf_counts((labels[u] for u in train_utts), num_pdfs)
    if rank == 0:
        write_pdf_counts(out / PDF_COUNTS, counts)
    torch.manual_seed(entry.train.seed)
    net = build_model(entry.spec, InputLayout(*layout), num_pdfs=num_pdfs, width_scale=entry.width_scale)
    n_params = sum(p.numel() for p in net.parameters())
    mean, std = input_stats(load(u) for u in train_utts)
    model = InputNormalized(net, mean, std)
    log.info("%s: %s (width x%g), %.2fM parameters, %d senones (%d unseen in training); %d training / %d validation "
             "utterances (%.2f h; validation: %s), %d process(es) x %d thread(s) on %s", entry.name, entry.spec,
             entry.width_scale, n_params / 1e6, num_pdfs, int((counts == 0).sum()), len(train_utts), len(valid_utts),
             total_frames / 360000, valid_how, size, threads, device)
    if entry.train.frame_batches(model) and not in_memory:
        log.warning("nn.train.batching: frames with features streamed from storage: every minibatch reads the "
                    "utterances of its %d frames again; raise nn.max_feature_memory_gb or use batching: streams",
                    entry.train.frames_per_batch)
    model_info = {"name": entry.name, "spec": entry.spec, "width_scale": entry.width_scale, "layout": list(layout),
                  "num_pdfs": num_pdfs, "num_params": n_params, "label_delay": entry.train.chunking(model).label_delay,
                  "features": fconf, "alignments": info.get("source"), "fmllr": fmllr_info,
                  # how training ran the recurrence, for the decoder's check of its nn.decode chunking
                  "training_chunks": {"chunk_len": entry.train.chunking(model).chunk_len,
                                      "overlap": entry.train.chunking(model).overlap,
                                      "carry_state": entry.train.carries_state(model)}}

    def on_epoch(history) -> None:
        plot_nn_curves([vars(r) for r in history], out / "training_curve.png", title=f"{entry.name}: {entry.spec}")

    result = train(model, train_utts, valid_utts, load, labels, entry.train, out, model_info=model_info, device=device,
                   on_epoch=on_epoch)
    if rank == 0:
        last = result.history[-1]
        write_json(out / "model.json", {**model_info, "num_params_paper_dims": count_params(
            entry.spec, InputLayout(31, 3, 0), 5529, entry.width_scale), "train": vars(entry.train),
            "best_epoch": result.best_epoch, "train_utterances": len(train_utts),
            "valid_utterances": len(valid_utts), "validation": valid_how, "frames_per_second": last.frames_per_second,
            "data_share": last.data_share, "processes": size, "threads": threads, "device": str(device)})


if __name__ == "__main__":
    p = base_parser(__doc__)
    p.add_argument("--model", required=True, help="a name under nn.models")
    p.add_argument("--feats-dir", required=True, help="data/<recipe>/feats/nn")
    p.add_argument("--split", default="train")
    p.add_argument("--ali", required=True, help="senone (pdf-id) alignments: exp/<recipe>/senone_ali/pdf.ark")
    p.add_argument("--senones", required=True, help="exp/<recipe>/senone_ali/senones.json")
    p.add_argument("--fmllr-stage", help="nn.fmllr_features: the SAT stage (exp/<recipe>/tri3) whose adapted features "
                   "are appended")
    p.add_argument("--gmm-feats", help="nn.fmllr_features: the GMM features (data/<recipe>/feats/gmm)")
    p.add_argument("--out", required=True)
    run(main, p)
