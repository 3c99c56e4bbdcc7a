#!/usr/bin/env python3
"""Number of parameters of networks in the paper's notation, or of every row of its Tables 1-5.

    python steps/nn_params.py "CLstm384P256+Pooling+Lstm2000P750+3xReLU2000" [--detail]
    python steps/nn_params.py --paper                   # ours vs the paper's #Params, every row
    python steps/nn_params.py --paper --width-scale 0.25 --num-pdfs 1250 --extra 3   # CPU-sized rows
"""

from __future__ import annotations

from senone import SenoneError
from senone.cli import base_parser, run
from senone.nn.model import InputLayout, plan_model
from senone.nn.paper import PAPER_LAYOUT, PAPER_NUM_PDFS, paper_rows


def main(args) -> None:
    layout = InputLayout(args.input_bands, args.streams, args.extra)
    if not args.spec and not args.paper:
        raise SenoneError("give one or more network specs (e.g. \"4xReLU2000\") or --paper")
    for spec in args.spec:
        plan = plan_model(spec, layout, args.num_pdfs, args.width_scale)
        print(f"{spec}\t{plan.num_params}\t{plan.num_params / 1e6:.2f}M")
        if args.detail:
            for layer in plan.layers:
                print(f"    {layer.describe()}")
    if args.paper:
        at_paper_dims = (layout == PAPER_LAYOUT and args.num_pdfs == PAPER_NUM_PDFS and args.width_scale == 1)
        if not at_paper_dims:
            print(f"# at {layout}, {args.num_pdfs} pdfs, width_scale {args.width_scale}: "
                  "the paper's column is for its own dimensions (31 bands × 3, 5529 pdfs, scale 1), no rel_diff")
        print("row\tspec\tours\tpaper\trel_diff")
        for row in paper_rows():
            ours = plan_model(row.count_spec, layout, args.num_pdfs, args.width_scale).num_params
            diff = f"{ours / (row.params_m * 1e6) - 1:+.1%}" if at_paper_dims else "-"
            note = f"\t(count of {row.params_spec}; as printed: " \
                   f"{plan_model(row.spec, layout, args.num_pdfs, args.width_scale).num_params / 1e6:.2f}M)" \
                if row.params_spec else ""
            print(f"{row.key}\t{row.spec}\t{ours / 1e6:.2f}M\t{row.params_m:.1f}M\t{diff}{note}")


if __name__ == "__main__":
    p = base_parser(__doc__)
    p.add_argument("spec", nargs="*", help="network in the paper's notation, e.g. 2x(Conv+Pooling)+3xReLU2000")
    p.add_argument("--paper", action="store_true", help="every row of the paper's Tables 1-5: ours vs paper")
    p.add_argument("--detail", action="store_true", help="per-layer geometry and parameters")
    p.add_argument("--input-bands", type=int, default=PAPER_LAYOUT.num_bands, help="spectral bands per stream")
    p.add_argument("--streams", type=int, default=PAPER_LAYOUT.num_streams, help="static, Δ, ΔΔ...: 3")
    p.add_argument("--extra", type=int, default=0, help="non-spectral values per frame (e.g. 3 pitch values)")
    p.add_argument("--num-pdfs", type=int, default=PAPER_NUM_PDFS)
    p.add_argument("--width-scale", type=float, default=1.0)
    run(main, p)
