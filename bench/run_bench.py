#!/usr/bin/env python3
"""Time every stage of the default recipe from scratch and write BENCHMARKS.md.

Runs ``snakemake decode`` for a recipe in an empty work directory (so nothing is reused), reads the
per-rule ``benchmark:`` files Snakemake writes (wall seconds, CPU seconds, peak RSS), and derives the
figures the targets are stated in: corpus generation time, feature extraction × real time per core,
decoding CPU seconds per second of audio, and the whole run's wall time.

    .venv/bin/python bench/run_bench.py                 # default recipe, --cores 2
    .venv/bin/python bench/run_bench.py --cores 2 --workdir /tmp/senone-bench --out BENCHMARKS.md
    .venv/bin/python bench/run_bench.py --recipe fsdd --set corpus_dir=$PWD/../shared/corpora/fsdd --out /tmp/fsdd.md
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent

#: Everything from this line on in BENCHMARKS.md comes from other benchmarks and is kept on rewriting.
KEEP_MARKER = "<!-- Sections below come from other benchmarks (bench/*.py); bench/run_bench.py keeps them. -->"

TARGETS = {
    "run to a mono CER (stages on its path, wall)": ("mono_path_wall", "<=", 600.0, "s"),
    "GMM part of the run, mono → SAT decoded (wall)": ("gmm_part_wall", "<=", 900.0, "s"),
    "whole default run, incl. the default network (wall)": ("total_wall", "<=", 1800.0, "s"),
    "GMM bootstrap mono+tri1+tri2+tri3 (wall; Kaldi: ~270 s)": ("gmm_wall", "<=", 270.0, "s"),
    "corpus generation (wall)": ("prepare_wall", "<=", 120.0, "s"),
    "feature extraction": ("feats_xrt_per_core", ">=", 500.0, "× real time per core"),
    "decoding (test)": ("decode_cpu_per_audio", "<=", 0.05, "CPU s per audio s"),
    "network training: time outside forward/backward": ("nn_data_share", "<=", 0.10, "of the epoch"),
}


def network_rule(name: str, default_model: str) -> bool:
    """Whether a Snakemake benchmark (rule name + wildcards) belongs to the default network's part of `decode`.

    The rest of the `decode` run is the GMM part; networks of `snakemake tables` (t<T>r<R>), run later in
    the same directory, are in neither.
    """
    return name.startswith(("feats_nn_", "senone_ali")) or name in (
        f"nn_{default_model}", f"nn_decode_dev_{default_model}", f"nn_decode_test_{default_model}")


def network_rows(exp: Path, bench: dict, audio: dict) -> tuple[list[str], dict]:
    """Training throughput, share of time outside forward/backward and decoding speed of every trained network."""
    rows, figures = [], {}
    for hist_path in sorted((exp / "nn").glob("*/history.json")):
        name = hist_path.parent.name
        epochs = json.loads(hist_path.read_text())["epochs"]
        info = json.loads((hist_path.parent / "model.json").read_text())
        dec = hist_path.parent / "decode_test" / "decode.json"
        d = json.loads(dec.read_text()) if dec.is_file() else {}
        fps = sum(e["frames"] for e in epochs) / max(sum(e["seconds"] for e in epochs), 1e-9)
        share = max(e["data_share"] for e in epochs)
        train_wall = bench.get(f"nn_{name}", {}).get("wall", float("nan"))
        rows.append(f"| {name} | {info['spec']} x{info['width_scale']:g} | {info['num_params'] / 1e6:.2f} | "
                    f"{len(epochs)} | {fps:.0f} | {100 * share:.1f}% | {train_wall:.0f} | "
                    f"{d.get('nn_forward_real_time_factor', float('nan')):.4f} | "
                    f"{d.get('decode_wall_seconds', float('nan')) * d.get('jobs', 1) / audio['test']:.3f} |")
        figures["nn_data_share"] = max(figures.get("nn_data_share", 0.0), share)
    return rows, figures


def read_benchmark(path: Path) -> dict[str, float]:
    with open(path) as f:
        row = next(csv.DictReader(f, delimiter="\t"))
    return {"wall": float(row["s"]), "cpu": float(row["cpu_time"]), "max_rss_mb": float(row["max_rss"])}


def machine() -> str:
    model = "unknown CPU"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{os.cpu_count()} cores ({model}), {mem:.0f} GiB RAM, Python {platform.python_version()}, {platform.system()}"


def stage_cpu_seconds(log_path: Path) -> float | None:
    """The process-tree CPU time a step logs when it ends (senone.cli.run), or None."""
    if not log_path.is_file():
        return None
    found = None
    for line in log_path.read_text(encoding="utf-8", errors="replace").splitlines():
        if "CPU time of the process tree:" in line:
            found = float(line.split("CPU time of the process tree:")[1].split()[0])
    return found


def audio_seconds(work: Path, recipe: str, split: str) -> float:
    from lhotse import CutSet

    cuts = CutSet.from_file(work / "data" / recipe / "feats" / "gmm" / f"cuts_{split}.jsonl.gz")
    return float(sum(c.duration for c in cuts))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--recipe", default="synth_zh")
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--workdir", default="/tmp/senone-bench")
    ap.add_argument("--out", default=str(ROOT / "BENCHMARKS.md"))
    ap.add_argument("--report-only", action="store_true", help="rewrite the report from an existing --workdir")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="more snakemake --config values, e.g. corpus_dir=PATH (repeatable)")
    args = ap.parse_args()

    work = Path(args.workdir)
    if not args.report_only:
        load_before = " ".join(f"{x:.2f}" for x in os.getloadavg())
        if work.exists():
            shutil.rmtree(work)
        work.mkdir(parents=True)
        cmd = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "--directory", str(work),
               "--cores", str(args.cores), "decode", "--config", f"recipe={args.recipe}", *args.set]
        t0 = time.time()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        (work / "total_wall_seconds.txt").write_text(f"{time.time() - t0:.1f}\n")
        (work / "load.txt").write_text(load_before + "\n" + " ".join(f"{x:.2f}" for x in os.getloadavg()) + "\n")
        if proc.returncode != 0:
            sys.exit(f"benchmark run failed:\n{proc.stderr[-3000:]}")
    total = float((work / "total_wall_seconds.txt").read_text())

    exp = work / "exp" / args.recipe
    bench = {p.stem: read_benchmark(p) for p in sorted((exp / "benchmarks").glob("*.tsv"))}
    splits = ["train", "dev", "test"]
    audio = {s: audio_seconds(work, args.recipe, s) for s in splits}
    extract = [json.loads((work / "data" / args.recipe / "feats" / "gmm" / f"extract_{s}.json").read_text())
               for s in splits]
    decode_test = json.loads((exp / "mono" / "decode_test" / "decode.json").read_text())
    figures = {
        "total_wall": total,
        "prepare_wall": bench["prepare"]["wall"],
        "feats_xrt_per_core": sum(e["audio_seconds"] for e in extract) / max(sum(e["cpu_seconds"] for e in extract), 1e-9),
        "decode_cpu_per_audio": bench["decode_test_mono"]["cpu"] / audio["test"],
        "decode_search_cpu_per_audio": decode_test["decode_wall_seconds"] * decode_test["jobs"] / audio["test"],
    }
    systems = [s for s in ("mono", "tri1", "tri2", "tri3") if (exp / s / "history.json").is_file()]
    figures["gmm_wall"] = sum(bench[s]["wall"] for s in systems if s in bench)
    mono_path = ["prepare", "lang", "lm", "feats_gmm_train", "feats_gmm_dev", "feats_gmm_test", "mono", "graph_mono",
                 "decode_dev_mono", "decode_test_mono"]
    figures["mono_path_wall"] = sum(bench[k]["wall"] for k in mono_path)
    nn_rows, nn_figures = network_rows(exp, bench, audio)
    figures.update(nn_figures)
    default_model = yaml.safe_load((exp / "config.yaml").read_text())["nn"]["default"]
    nn_wall = sum(b["wall"] for k, b in bench.items() if network_rule(k, default_model))
    figures["gmm_part_wall"] = total - nn_wall
    hours = audio["train"] / 3600
    pass_rows = []
    for s in systems:
        passes = json.loads((exp / s / "history.json").read_text())["passes"]
        acc = [p["seconds"] for p in passes if not p["realigned"] and p["iteration"] > 0]
        ali = [p["seconds"] for p in passes if p["realigned"]]
        acc_s = sum(acc) / max(len(acc), 1)
        ali_s = max(sum(ali) / max(len(ali), 1) - acc_s, 0.0)
        pass_rows.append(f"| {s} | {len(passes)} | {acc_s / hours:.2f} | {ali_s / hours:.2f} |")
    results_md = (exp / "RESULTS.md").read_text()
    flags = (f" --recipe {args.recipe}" if args.recipe != "synth_zh" else "") + "".join(f" --set {kv}" for kv in args.set)
    gmm_rows = []
    for s in systems:
        cpu = stage_cpu_seconds(exp / s / "log" / "train.log")
        gmm_rows.append(f"| {s} | {bench[s]['wall']:.1f} | {cpu:.1f} |" if cpu is not None else
                        f"| {s} | {bench[s]['wall']:.1f} | n/a |")
    figures["gmm_cpu"] = sum(stage_cpu_seconds(exp / s / "log" / "train.log") or 0.0 for s in systems)
    load_file = work / "load.txt"
    load = load_file.read_text().split("\n") if load_file.is_file() else ["n/a", "n/a"]

    lines = [
        "# Benchmarks",
        "",
        f"Machine: {machine()}.",
        f"Date: {dt.date.today().isoformat()}. Command: `.venv/bin/python bench/run_bench.py --cores {args.cores}{flags}` "
        f"(a fresh `snakemake --cores {args.cores} decode` of recipe `{args.recipe}` in an empty directory).",
        "",
        f"Machine load (1, 5, 15 min load averages; the machine is shared): before the run {load[0]}, "
        f"after it {load[1]} (the run itself adds about 2). Wall times grow with the load; CPU times much less.",
        "",
        f"Audio: train {audio['train'] / 3600:.2f} h, dev {audio['dev'] / 60:.1f} min, test {audio['test'] / 60:.1f} min.",
        "",
        results_md,
        "",
        "## Targets",
        "",
        "| target | measured | bound | met |",
        "|---|---|---|---|",
    ]
    for name, (key, op, bound, unit) in TARGETS.items():
        if key not in figures:
            continue
        value = figures[key]
        ok = value <= bound if op == "<=" else value >= bound
        lines.append(f"| {name} | {value:.4g} {unit} | {op} {bound:g} | {'yes' if ok else 'NO'} |")
    lines += [
        "",
        "GMM stages (wall from Snakemake, CPU of the whole process tree from each step's log):",
        "",
        "| stage | wall s | CPU s |",
        "|---|---|---|",
        *gmm_rows,
        f"| total | {figures['gmm_wall']:.1f} | {figures['gmm_cpu']:.1f} |",
        "",
        f"Decoding search alone (decoder wall × jobs, without loading features and the graph): "
        f"{figures['decode_search_cpu_per_audio']:.3f} CPU s per audio s.",
        "",
        "## Networks (training and decoding on the CPU)",
        "",
        "Throughput: scored frames per second of training wall time (chunk overlap and label-delay frames are",
        "computed but not counted); outside: the largest share of an epoch spent outside forward, backward and",
        "update (reading and batching data); forward RTF: the network over the test set, whole utterances; search:",
        "decoder wall × jobs per second of test audio.",
        "",
        "| network | spec | params M | epochs | frames/s | outside | train wall s | forward RTF | search CPU s/s |",
        "|---|---|---|---|---|---|---|---|---|",
        *nn_rows,
        *(["", "Rows t<table>r<row> are networks of `snakemake tables`, run afterwards in the same directory and not part",
            "of the timed `decode` run; they may have shared the machine with other jobs (lower frames/s), a train wall",
            "of seconds means the run resumed from a finished checkpoint, and nan marks a network not decoded."]
          if any(r.startswith("| t") for r in nn_rows) else []),
        "",
        f"## GMM passes (wall seconds per hour of training audio, {args.cores} jobs)",
        "",
        "Accumulation = a pass without realignment (statistics + update); alignment = what a realigning pass",
        "adds. Transform updates (MLLT, fMLLR) fall into the passes they happen in.",
        "",
        "| stage | passes | accumulation + update s/h | alignment s/h |",
        "|---|---|---|---|",
        *pass_rows,
        "",
        "## Stages (Snakemake `benchmark:` files)",
        "",
        "CPU s is what Snakemake's sampler saw; it misses most of the forked workers of the training and",
        "decoding stages, so read their wall time. Feature extraction is timed inside its step (one process:",
        "reading audio, MFCC, pitch, storage), without interpreter start-up.",
        "",
        "| stage | wall s | CPU s | peak RSS MB |",
        "|---|---|---|---|",
    ]
    for name, b in bench.items():
        lines.append(f"| {name} | {b['wall']:.1f} | {b['cpu']:.1f} | {b['max_rss_mb']:.0f} |")
    lines += ["", f"Whole run wall time: {total:.0f} s.", ""]
    out = Path(args.out)
    old = out.read_text(encoding="utf-8") if out.is_file() else ""
    if KEEP_MARKER in old:  # sections measured by other benchmarks survive the rewrite
        lines += [old[old.index(KEEP_MARKER):].rstrip("\n"), ""]
    out.write_text("\n".join(lines), encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
