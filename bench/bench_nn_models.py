#!/usr/bin/env python
"""Training throughput of the paper's networks on this CPU: forward + backward, frames per second.

For CPU-sized versions (``width_scale``) of several rows of the paper's tables, times one training
step — forward, cross-entropy against random senone labels, backward — on minibatches of chunks as
the trainer cuts them (20 chunks × 15 frames as in the paper, and 64 chunks), and reports output
frames per second (chunks × 15 / seconds per step). FFNNs get their ±5 context frames on top.

For recurrent models the LSTM time loop runs as plain Python under autograd (``loop``), as
TorchScript under autograd (``jit``), or as TorchScript loops with the hand-written backward pass
(``bptt``); ``--compile`` adds ``torch.compile`` of the autograd loop (Inductor, C++ code, one
compilation per sequence shape) to the comparison. The fastest deterministic choice is what
``senone.nn.lstm.SCAN_IMPL`` uses.

Usage: python bench/bench_nn_models.py [--threads 1] [--repeat 5] [--num-pdfs 1500] [--compile]
"""

from __future__ import annotations

import argparse
import platform
import time

import torch

from senone.nn import lstm as lstm_mod
from senone.nn.model import InputLayout, build_model, count_params

CHUNK = 15
MODELS = [  # (spec, width_scale)
    ("4xReLU2000", 0.25),
    ("2x(Conv+Pooling)+3xReLU2000", 0.25),
    ("Lstm2000P750+3xReLU2000", 0.25),
    ("Lstm2000P750+3xReLU2000", 0.125),
    ("CLstm384P256+Pooling+3xReLU2000", 0.25),
    ("CLstm384P256+Pooling+3xReLU2000", 0.125),
    ("2x(CLstm384P256+Pooling)+3xReLU2000", 0.125),
    ("CLstm384P256+Pooling+Lstm2000P750+3xReLU2000", 0.25),
    ("CLstm384P256+Pooling+Lstm2000P750+3xReLU2000", 0.125),
]


def step_seconds(model: torch.nn.Module, chunks: int, num_pdfs: int, repeat: int) -> float:
    """Best wall seconds of one forward + cross-entropy + backward step over ``repeat`` tries, after two
    warm-up steps (the best, not the median: the machine is shared, and others only ever add time)."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(chunks, CHUNK + model.left_context + model.right_context, model.layout.feat_dim, generator=g)
    labels = torch.randint(0, num_pdfs, (chunks, CHUNK), generator=g)

    def step() -> None:
        model.zero_grad(set_to_none=True)
        logits = model(x)
        torch.nn.functional.cross_entropy(logits.reshape(-1, num_pdfs), labels.reshape(-1)).backward()

    step()
    step()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--num-pdfs", type=int, default=1500, help="output senones (synth_zh's tri3 has ~1250)")
    p.add_argument("--chunks", type=int, nargs="+", default=[20, 64])
    p.add_argument("--compile", action="store_true", help="also time torch.compile of the LSTM scan")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    layout = InputLayout(31, 3, 0)
    impls = ["loop", "jit", "bptt"] + (["compile"] if args.compile else [])
    if args.compile:
        lstm_mod.SCANS["compile"] = torch.compile(lstm_mod.lstm_scan, dynamic=False)
    default = lstm_mod.SCAN_IMPL

    print(f"# {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{args.threads} thread(s), {args.num_pdfs} pdfs, chunks of {CHUNK} frames, frames/s (fwd+bwd)\n")
    header = "| model | width_scale | params | " + " | ".join(
        f"{impl} B={b}" for b in args.chunks for impl in impls) + " |"
    print(header)
    print("|" + "---|" * (3 + len(args.chunks) * len(impls)))
    for spec, scale in MODELS:
        torch.manual_seed(0)
        model = build_model(spec, layout, args.num_pdfs, width_scale=scale)
        cells = []
        for chunks in args.chunks:
            for impl in impls:
                if not model.is_recurrent and impl != default:
                    cells.append("")
                    continue
                lstm_mod.SCAN_IMPL = impl
                try:
                    secs = step_seconds(model, chunks, args.num_pdfs, args.repeat)
                finally:
                    lstm_mod.SCAN_IMPL = default
                cells.append(f"{chunks * CHUNK / secs:,.0f}")
        n = count_params(spec, layout, args.num_pdfs, scale)
        print(f"| {spec} | {scale} | {n / 1e6:.2f}M | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
