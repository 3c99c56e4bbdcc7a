"""What every ``steps/*.py`` command shares: logging to the console and to ``exp/.../log/``, and
turning :class:`senone.SenoneError` into one clear line instead of a traceback."""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Callable

from senone import SenoneError


def setup_logging(log_file: str | Path | None, verbose: bool = False) -> None:
    """Log to the console and to ``log_file``; under torchrun only rank 0 writes the file (the others
    would overwrite each other's lines).

    The file is appended to, each run starting with a ``==== <date> <command>`` line: a stage that
    resumes after a kill keeps the log of the attempt it resumes (the workflow leaves the logs of its
    resuming stages in place for this), and the two attempts read one after the other.
    """
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_file and int(os.environ.get("RANK", "0")) == 0:
        path = Path(log_file)
        path.parent.mkdir(parents=True, exist_ok=True)
        command = " ".join(shlex.quote(a) for a in [Path(sys.argv[0]).name, *sys.argv[1:]])
        with open(path, "a", encoding="utf-8") as f:
            f.write(f"==== {time.strftime('%Y-%m-%d %H:%M:%S')} pid {os.getpid()}: {command[:2000]}\n")
        handlers.append(logging.FileHandler(path, mode="a", encoding="utf-8"))
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, handlers=handlers, force=True,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    for noisy in ("jieba", "matplotlib", "PIL", "numba"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def base_parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    # --log-file: the same option under a name torchrun's own parser does not take for an abbreviation
    p.add_argument("--log", "--log-file", dest="log", help="log file (the console gets the same lines)")
    p.add_argument("--conf", default="{}", help="this stage's configuration section, as JSON")
    p.add_argument("--threads", type=int, default=1, help="worker processes this stage may use")
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def parse_conf(text: str) -> dict:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise SenoneError(f"--conf is not valid JSON ({exc})") from exc


def run(main: Callable[[argparse.Namespace], None], parser: argparse.ArgumentParser) -> None:
    """Parse arguments, set up logging, run ``main``; user errors end as one line and exit code 2."""
    args = parser.parse_args()
    setup_logging(args.log, args.verbose)
    try:
        main(args)
        t = os.times()
        logging.getLogger("senone").info(
            "CPU time of the process tree: %.1f s (user %.1f s, system %.1f s; finished workers included)",
            t.user + t.system + t.children_user + t.children_system, t.user + t.children_user,
            t.system + t.children_system)
    except SenoneError as exc:
        logging.getLogger("senone").error("%s", exc)
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
