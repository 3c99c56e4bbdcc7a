"""Atomic file output and small readers/writers shared by all stages.

Every stage writes to a temporary file beside the target and renames it into place, so a killed run
never leaves a half-written output that a resumed run would mistake for a finished one.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
from pathlib import Path
from typing import IO, TYPE_CHECKING, Iterator, Mapping, Sequence

if TYPE_CHECKING:
    import numpy as np

from senone import SenoneError

_UMASK = os.umask(0)
os.umask(_UMASK)


def _pid_alive(pid: int) -> bool:
    """Whether process ``pid`` still runs (a zombie or another user's process counts as running)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temporaries(path: str | os.PathLike) -> list[Path]:
    """Delete the temporaries of ``path`` that :func:`atomic_path` left behind in a killed process.

    Why: a writer killed (``kill -9``, out of memory) between creating its temporary and renaming it
    leaves ``.<name>.<pid>.<random>.tmp<suffix>`` beside the target (a 0-byte one when it died before
    writing). Its name carries the writer's process id, so a temporary whose writer is gone is known
    to be garbage, while one of a live writer (another process writing the same file) is left alone.
    Returns what was removed.
    """
    path = Path(path)
    pattern = re.compile(re.escape(f".{path.name}.") + r"(\d+)\.[^.]+" + re.escape(".tmp" + "".join(path.suffixes)) + "$")
    removed = []
    try:
        entries = list(os.scandir(path.parent))
    except FileNotFoundError:
        return removed
    for entry in entries:
        m = pattern.match(entry.name)
        if m and int(m.group(1)) != os.getpid() and not _pid_alive(int(m.group(1))):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(entry.path)
                removed.append(Path(entry.path))
    return removed


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` only if the block succeeds.

    Use for writers that want a file name (Kaldi writers, ``np.save``, Lhotse's ``to_file``). The
    temporary name keeps the target's suffix(es) so suffix-sniffing writers (``.jsonl.gz``) behave,
    and carries this process's id so that a later writer of the same file removes what a killed one
    left (:func:`remove_stale_temporaries`).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    suffix = "".join(path.suffixes)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=f".tmp{suffix}", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    os.chmod(tmp_path, 0o666 & ~_UMASK)  # mkstemp makes 0600; outputs should look like any other file
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO]:
    """Open a temporary file for writing that replaces ``path`` atomically when closed cleanly."""
    if "b" in mode:
        encoding = None
    with atomic_path(path) as tmp:
        with open(tmp, mode, encoding=encoding) as f:
            yield f


def write_text(path: str | os.PathLike, text: str) -> None:
    """Atomically write a text file."""
    with atomic_open(path) as f:
        f.write(text)


def write_json(path: str | os.PathLike, obj: object) -> None:
    """Atomically write pretty-printed JSON (UTF-8, non-ASCII kept readable)."""
    write_text(path, json.dumps(obj, ensure_ascii=False, indent=2, sort_keys=False) + "\n")


def read_utf8(path: str | os.PathLike, what: str) -> str:
    """The text of a user's file (lexicon, split list...), with one clear line if it is not UTF-8.

    Why: Python's bare ``UnicodeDecodeError`` names neither the file nor a fix; a lexicon saved by a
    Windows editor in GBK or Latin-1 is a common mistake, so the error says where the first bad
    byte is and how to convert the file.
    """
    path = Path(path)
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise SenoneError(f"{path}: {what} is not UTF-8 text (byte 0x{data[exc.start]:02x} at line {line}, column "
                          f"{column}); save it as UTF-8, e.g. iconv -f GB18030 -t UTF-8 (or -f LATIN1) "
                          f"{path.name} > {path.stem}.utf8{path.suffix}") from None


def read_symbol_table(path: str | os.PathLike) -> dict[str, int]:
    """Read a Kaldi/OpenFst symbol table (``symbol id`` per line) into a dict."""
    path = Path(path)
    if not path.is_file():
        raise SenoneError(f"{path}: symbol table not found; run the stage that builds it (lang) first")
    table: dict[str, int] = {}
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 2:
                raise SenoneError(f"{path}:{lineno}: expected 'symbol id', got {line.rstrip()!r}")
            table[parts[0]] = int(parts[1])
    return table


def write_symbol_table(path: str | os.PathLike, table: Mapping[str, int]) -> None:
    """Atomically write a symbol table sorted by id."""
    lines = [f"{sym} {idx}\n" for sym, idx in sorted(table.items(), key=lambda kv: kv[1])]
    write_text(path, "".join(lines))


def require_file(path: str | os.PathLike, produced_by: str) -> Path:
    """Return ``path`` if it exists, else raise a one-line error naming the stage that makes it."""
    path = Path(path)
    if not path.exists():
        raise SenoneError(f"{path}: missing; it is written by the '{produced_by}' stage — run that stage first")
    return path


def write_alignments(path: str | os.PathLike, alignments: Mapping[str, "Sequence[int]"]) -> None:
    """Write per-utterance transition-id alignments as a Kaldi int32-vector archive (``ali.ark``).

    This is the format of Kaldi's ``ali.*.gz`` (uncompressed), readable by ``show-alignments`` and
    ``ali-to-pdf``; utterances are written in sorted order so the file is deterministic.
    """
    import kaldi_native_io as kio

    with atomic_path(path) as tmp:
        writer = kio.Int32VectorWriter(f"ark:{tmp}")
        for utt in sorted(alignments):
            writer.write(utt, [int(t) for t in alignments[utt]])
        writer.close()


def read_alignments(path: str | os.PathLike) -> dict[str, "np.ndarray"]:
    """Read a Kaldi int32-vector archive written by :func:`write_alignments` (or by Kaldi)."""
    import kaldi_native_io as kio
    import numpy as np

    path = require_file(path, "alignment")
    out = {}
    reader = kio.SequentialInt32VectorReader(f"ark:{path}")
    for utt, ali in reader:
        out[utt] = np.asarray(ali, dtype=np.int32)
    reader.close()
    return out
