"""``senone-transcribe``: transcribe audio with an exported model (``snakemake export``).

    senone-transcribe exp/synth_zh/export/nn/clstm recordings/            # a folder of audio files: text on stdout
    senone-transcribe MODEL wav.scp --utt2spk utt2spk --out out/           # text, ctm, results.jsonl in out/
    senone-transcribe MODEL cuts.jsonl.gz --out out/                       # a Lhotse manifest (speakers from it)

Inputs: audio files, folders (searched recursively), Kaldi ``wav.scp`` files or data directories (``segments`` and
``utt2spk`` beside it are used), Lhotse cuts or recordings manifests. Any sampling rate at or above the model's
(resampled), the first channel. Speaker CMVN (and, for SAT systems, per-speaker fMLLR) when the input names
speakers, else per utterance. Every problem is one line on stderr and exit status 2.
"""

from __future__ import annotations

import logging
import os
import resource
import sys
import time

from senone import SenoneError


def _parser():
    import argparse

    from senone.export.transcribe import CMVN_MODES

    p = argparse.ArgumentParser(prog="senone-transcribe", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--log", help="also write the log to this file")
    p.add_argument("-v", "--verbose", action="store_true", help="log every step (default: warnings only)")
    p.add_argument("model", help="an export folder (exp/<recipe>/export/<system>)")
    p.add_argument("inputs", nargs="+", help="audio files, folders, wav.scp / Kaldi data dirs, Lhotse manifests")
    p.add_argument("-o", "--out", help="write text, ctm (char.ctm for Mandarin word units), results.jsonl and "
                   "transcribe.json here (default: the text to stdout)")
    p.add_argument("--utt2spk", help="Kaldi utt2spk naming each utterance's speaker (overrides a manifest's)")
    p.add_argument("--cmvn", choices=CMVN_MODES, default="auto",
                   help="auto: per speaker when speakers are known, else per utterance; global: the training "
                   "set's statistics")
    p.add_argument("-j", "--jobs", type=int, default=None, help="decoder processes (default: the CPUs available)")
    p.add_argument("--device", default=None, help="networks: cpu or cuda (default: cuda when present)")
    p.add_argument("--nn-threads", type=int, default=None, help="networks on a CPU: torch threads (default: as the "
                   "recipe decoded, nn.threads)")
    p.add_argument("--skip-bad", action="store_true", help="skip audio that cannot be used (listed on stderr and in "
                   "transcribe.json) instead of stopping")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    return p


def _main(args) -> None:
    from senone.export.audio import collect_inputs
    from senone.export.transcribe import Transcriber, write_outputs

    if not args.verbose:
        logging.getLogger().setLevel(logging.WARNING)
    t_start = time.perf_counter()
    jobs = args.jobs or max(1, len(os.sched_getaffinity(0)))
    tr = Transcriber(args.model, num_jobs=jobs, device=args.device, nn_threads=args.nn_threads,
                     progress=not args.quiet)
    t_loaded, cpu_loaded = time.perf_counter(), _cpu()
    skipped: list = []
    utts = collect_inputs(args.inputs, args.utt2spk, skipped=skipped if args.skip_bad else None)
    results = tr.transcribe(utts, cmvn=args.cmvn, skip_bad=args.skip_bad, skipped=skipped)
    wall = time.perf_counter() - t_start
    cpu = _cpu()
    work_wall, work_cpu = time.perf_counter() - t_loaded, cpu - cpu_loaded
    timing = tr.timing
    audio = timing.audio_seconds
    summary = {
        "model": str(tr.model.path), "system": tr.model.info["system"], "recipe": tr.model.info["recipe"],
        "utterances": len(results), "skipped": [{"id": u, "reason": why} for u, why in skipped],
        "speakers": len({r.speaker for r in results if r.speaker}), "cmvn": args.cmvn, "jobs": jobs,
        "device": str(getattr(tr, "device", "cpu")), "audio_seconds": round(audio, 3),
        "not_final": sum(r.status != "ok" for r in results),
        "times_not_from_lexicon": sum(not r.aligned for r in results),
        "seconds": {"load": round(timing.load, 3), "audio_read": round(timing.audio, 3),
                    "features": round(timing.features, 3), "first_pass": round(timing.first_pass, 3),
                    "network": round(timing.network, 3), "decode": round(timing.decode, 3),
                    "align": round(timing.align, 3), "confidence": round(timing.confidence, 3), "total_wall": round(wall, 3),
                    "after_load_wall": round(work_wall, 3), "after_load_cpu_all_processes": round(work_cpu, 3),
                    "cpu_all_processes": round(cpu, 3)},
        # the model's loading (and the interpreter's start) excluded; CPU time of this process and its decoders
        "real_time_factor_wall": round(work_wall / audio, 4) if audio else None,
        "real_time_factor_per_core": round(work_cpu / audio, 4) if audio else None,
        "max_rss_mb": {"main": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                       "largest_worker": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1)},
    }
    if args.out:
        write_outputs(results, args.out, frame_shift=tr.frame_shift, summary=summary)
        print(f"{len(results)} utterances ({audio:.1f} s of audio) transcribed in {wall:.1f} s; text, ctm and "
              f"results.jsonl in {args.out}", file=sys.stderr)
    else:
        for r in results:
            print(f"{r.id} {r.text}".rstrip())


def _cpu() -> float:
    """CPU seconds of this process and its finished children (the decoder workers)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def main(argv: list[str] | None = None) -> None:
    """The console script (pyproject.toml ``[project.scripts]``): a problem is one line on stderr, exit status 2."""
    # one BLAS thread, as the workflow's steps (Snakefile STEP): parallelism is over decoder processes, and threaded
    # BLAS on the small matrices here (the GMM confidences) was 10x slower on a busy 2-core machine
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    from senone.cli import setup_logging

    args = _parser().parse_args(argv)
    setup_logging(args.log, args.verbose)
    console = [h for h in logging.getLogger().handlers if type(h) is logging.StreamHandler]
    if not args.verbose:
        for h in console:
            h.setLevel(logging.WARNING)
        # one summary line instead of one per speaker (senone.export.transcribe reports the count)
        logging.getLogger("senone.feats.fmllr").setLevel(logging.ERROR)
    try:
        _main(args)
    except SenoneError as exc:
        for h in console:  # the log file (--log) keeps the error; the console gets it once, below
            logging.getLogger().removeHandler(h)
        if logging.getLogger().handlers:
            logging.getLogger("senone").error("%s", exc)
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
