#!/usr/bin/env python3
"""Graph stage: HCLG for a trained system (Kaldi's mkgraph.sh order)."""

from __future__ import annotations

from senone.cli import base_parser, parse_conf, run
from senone.graph.hclg import make_hclg
from senone.hmm.model import GmmHmm


def main(args) -> None:
    conf = parse_conf(args.conf).get("graph", {})
    model = GmmHmm.load(args.model_dir)
    make_hclg(args.lang, args.G, model.ctx_dep, model.trans_model, args.out,
              self_loop_scale=conf.get("self_loop_scale", 0.1), transition_scale=conf.get("transition_scale", 1.0))


if __name__ == "__main__":
    p = base_parser(__doc__)
    p.add_argument("--lang", required=True)
    p.add_argument("--G", required=True)
    p.add_argument("--model-dir", required=True)
    p.add_argument("--out", required=True)
    run(main, p)
