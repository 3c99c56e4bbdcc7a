#!/usr/bin/env python
"""The paper's networks at full width (HKUST/AISHELL-1 settings) on this machine: training and decoding speed.

For each spec at ``width_scale`` 1.0 with the paper's 5529 senones: one training step (forward,
cross-entropy, backward) on a minibatch of 20 chunks × 15 frames, as ``bench_nn_models.py`` times
it, and the forward pass of decoding (no gradient, whole utterances: B utterances of T frames).
Figures are frames per second; a training step scores about 200 of its 300 frames (overlap 5), so
the trainer's logged frames/s is about two thirds of the figure here. What it is for: telling how
long an epoch of a real corpus takes (HKUST: ~52M frames) on the CPU, and so why the recipes say GPU.

Usage: PYTHONPATH=$PWD python bench/bench_nn_paper_scale.py [--threads 1] [--repeat 3]
"""

from __future__ import annotations

import argparse
import platform

import torch

from bench_feats import best_time  # this folder is on sys.path when run as a script
from bench_nn_models import CHUNK, step_seconds
from senone.nn.model import InputLayout, build_model, count_params
from senone.nn.train import flush_denormals

SPECS = ["CLstm384P256+Pooling+Lstm2000P750+3xReLU2000", "Lstm2000P750+3xReLU2000", "4xReLU2000"]
PAPER_PDFS = 5529


def inference_seconds(model: torch.nn.Module, utts: int, frames: int, repeat: int) -> float:
    """Best wall seconds of one no-gradient forward pass over ``utts`` utterances of ``frames`` frames."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(utts, frames + model.left_context + model.right_context, model.layout.feat_dim, generator=g)
    with torch.no_grad():
        return best_time(lambda: model(x), repeat)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--chunks", type=int, default=20)
    p.add_argument("--utts", type=int, default=8, help="utterances per decoding forward pass")
    p.add_argument("--frames", type=int, default=400, help="frames per utterance when decoding")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    flush_denormals()
    layout = InputLayout(31, 3, 0)
    print(f"# {platform.processor() or platform.machine()}, torch {torch.__version__}, {args.threads} thread(s), "
          f"{PAPER_PDFS} pdfs, width 1.0, frames/s\n")
    print(f"| model | params | training (B={args.chunks} x {CHUNK}) | decoding ({args.utts} x {args.frames}) |")
    print("|---|---|---|---|")
    for spec in SPECS:
        torch.manual_seed(0)
        model = build_model(spec, layout, PAPER_PDFS, width_scale=1.0)
        train = args.chunks * CHUNK / step_seconds(model, args.chunks, PAPER_PDFS, args.repeat)
        model.eval()
        decode = args.utts * args.frames / inference_seconds(model, args.utts, args.frames, args.repeat)
        n = count_params(spec, layout, PAPER_PDFS, 1.0)
        print(f"| {spec} | {n / 1e6:.1f}M | {train:,.0f} | {decode:,.0f} |", flush=True)


if __name__ == "__main__":
    main()
