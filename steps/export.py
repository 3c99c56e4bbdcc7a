#!/usr/bin/env python3
"""Export stage: a trained system as a self-contained folder that ``senone-transcribe`` uses on new audio.

``--system tri3`` (a GMM stage) or ``--system nn/<model>`` (a network, decoded through the graph and transition
model of ``--ali-from``, the stage whose senones it learned). The folder holds the graph, the acoustic model, the
feature settings, the training CMVN statistics, the LM weight dev chose, the decode settings and a model.json (see
senone/export/bundle.py); for a SAT system also its speaker-independent first pass.
"""

from __future__ import annotations

import logging
from pathlib import Path

from senone.cli import base_parser, parse_conf, run
from senone.export.bundle import ExportSources, write_export

log = logging.getLogger("senone.steps.export")


def main(args) -> None:
    from steps.compute_feats import extractor_config

    conf = parse_conf(args.conf)
    gmm_conf = dict((conf.get("features") or {}).get("gmm") or {})
    # the rate the feats stage used: features.gmm.sampling_rate over the recipe's (see steps/compute_feats.py)
    sampling_rate = int(gmm_conf.pop("sampling_rate", args.sampling_rate))
    extractor = extractor_config("gmm", gmm_conf)
    is_nn = args.system.startswith("nn/")
    nn_rate = None
    if is_nn:
        nn_rate = int(((conf.get("features") or {}).get("nn") or {}).get("sampling_rate", args.sampling_rate))
    data = Path(args.data)
    sources = ExportSources(exp_dir=Path(args.exp), lang_dir=data / "lang", gmm_feats_dir=data / "feats" / "gmm",
                            nn_feats_dir=data / "feats" / "nn" if is_nn else None)
    info = write_export(args.out, recipe=args.recipe, system=args.system, sources=sources,
                        decode_conf=conf["decode"], gmm_features={"extractor": extractor.to_dict(), "conf": gmm_conf},
                        sampling_rate=sampling_rate, nn_conf=conf.get("nn"), ali_from=args.ali_from,
                        nn_sampling_rate=nn_rate)
    test = (info["error_rates"].get("test") or {})
    log.info("%s: %s, test %s %s %%, LM weight %g", args.out, info["description"], test.get("metric"),
             test.get("rate"), info["lm_weight"])


if __name__ == "__main__":
    p = base_parser(__doc__)
    p.add_argument("--recipe", required=True)
    p.add_argument("--system", required=True, help="a GMM stage (tri3) or nn/<model>")
    p.add_argument("--exp", required=True, help="exp/<recipe>")
    p.add_argument("--data", required=True, help="data/<recipe>")
    p.add_argument("--ali-from", help="networks: the GMM stage whose graph and transition model they decode with")
    p.add_argument("--sampling-rate", type=int, default=16000, help="the recipe's audio rate (corpus.sampling_rate)")
    p.add_argument("--out", required=True)
    run(main, p)
