#!/usr/bin/env python
"""First minibatches of SGD (momentum 0.9) at a few learning rates: a network at the paper's width on real data.

Why: the HKUST/AISHELL-1 recipes train the paper's networks with SGD and an exponentially decaying
rate, and their full width cannot be trained to the end on a CPU. What can be seen here is whether a
rate is stable at that width with the trainer's loss (the mean cross-entropy over a minibatch's scored
frames) and its gradient clipping: for each rate the network starts from the same seed and takes
``--steps`` minibatches of 20 chunks × 15 frames (overlap 5, labels delayed by 5) cut by the
trainer's own batcher from a finished run's network features and senone alignments. Printed per rate:
the mean loss of the first and last fifth of the steps, the highest loss, and the gradient norm
before clipping (median, maximum, share above ``max_grad_norm``).

Usage (from a finished run's folder, e.g. after `snakemake data/synth_zh/feats/nn/cuts_train.jsonl.gz
exp/synth_zh/senone_ali/pdf.ark`): PYTHONPATH=<senone> python <senone>/bench/probe_nn_lr.py
--recipe synth_zh --lrs 0.003 0.01 0.03 0.1 --steps 60
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
from lhotse import CutSet

from senone.feats.nn import iter_nn_inputs, load_nn_cmvn, nn_input_layout
from senone.io import read_alignments
from senone.nn.batches import StreamBatcher, epoch_order
from senone.nn.chunks import IGNORE
from senone.nn.model import InputLayout, build_model
from senone.nn.norm import InputNormalized, input_stats
from senone.nn.train import TrainConfig, flush_denormals

FEATURES = {"num_mel_bins": 30, "use_energy": True, "delta_order": 2, "delta_window": 2, "cmvn": "speaker",
            "norm_vars": True, "pitch": False}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--recipe", default="synth_zh")
    p.add_argument("--spec", default="CLstm384P256+Pooling+Lstm2000P750+3xReLU2000")
    p.add_argument("--width", type=float, default=1.0)
    p.add_argument("--lrs", type=float, nargs="+", default=[0.003, 0.01, 0.03, 0.1])
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--utts", type=int, default=400, help="training utterances drawn (seed 0) to cut chunks from")
    p.add_argument("--max-grad-norm", type=float, default=5.0)
    args = p.parse_args()
    torch.set_num_threads(1)
    flush_denormals()

    feats_dir, ali_dir = f"data/{args.recipe}/feats/nn", f"exp/{args.recipe}/senone_ali"
    labels = read_alignments(f"{ali_dir}/pdf.ark")
    num_pdfs = json.loads(open(f"{ali_dir}/senones.json").read())["num_pdfs"]
    cuts = CutSet.from_file(f"{feats_dir}/cuts_train.jsonl.gz")
    ids = sorted(c.id for c in cuts if c.id in labels)
    ids = [ids[i] for i in np.random.default_rng(0).permutation(len(ids))[: args.utts]]
    cmvn = load_nn_cmvn(feats_dir, "train", FEATURES)
    feats = dict(iter_nn_inputs(cuts.subset(cut_ids=ids), cmvn, FEATURES))
    mean, std = input_stats(feats.values())
    cfg = TrainConfig(num_streams=20, chunk_len=15, overlap=5, label_delay=5)
    print(f"# {args.spec} x{args.width}, {num_pdfs} senones, {len(ids)} utterances, {args.steps} minibatches per rate")
    for lr in args.lrs:
        torch.manual_seed(0)
        net = build_model(args.spec, InputLayout(*nn_input_layout(FEATURES)), num_pdfs=num_pdfs, width_scale=args.width)
        model = InputNormalized(net, mean, std)
        opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
        batches = iter(StreamBatcher(epoch_order(ids, 0, 1), feats.__getitem__, labels, cfg.chunking(model),
                                     cfg.num_streams))
        losses, norms = [], []
        t0 = time.perf_counter()
        for _ in range(args.steps):
            b = next(batches)
            x, y = torch.from_numpy(b.inputs), torch.from_numpy(b.targets)
            logits = model(x)
            loss = torch.nn.functional.cross_entropy(logits.reshape(-1, num_pdfs), y.reshape(-1), ignore_index=IGNORE,
                                                     reduction="sum") / max(int((y != IGNORE).sum()), 1)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            norms.append(float(torch.nn.utils.clip_grad_norm_(model.parameters(), args.max_grad_norm)))
            opt.step()
            losses.append(float(loss.detach()))
        k = max(1, args.steps // 5)
        print(json.dumps({"lr": lr, "loss_first": round(float(np.mean(losses[:k])), 3),
                          "loss_last": round(float(np.mean(losses[-k:])), 3), "loss_max": round(max(losses), 3),
                          "grad_norm_median": round(float(np.median(norms)), 2), "grad_norm_max": round(max(norms), 2),
                          "clipped_share": round(float(np.mean(np.array(norms) > args.max_grad_norm)), 2),
                          "seconds_per_step": round((time.perf_counter() - t0) / args.steps, 2)}), flush=True)


if __name__ == "__main__":
    main()
