"""NIST SPHERE headers: what an LDC audio file holds, read without decoding it.

LDC telephone corpora (HKUST, CallHome, Switchboard) ship NIST SPHERE files. libsndfile (the
``soundfile`` package) reads uncompressed SPHERE — 16-bit PCM, μ-law and a-law, one or two
channels — but not the ``shorten``-compressed variant some LDC releases use; that needs
``sph2pipe``. The header is plain text (``NIST_1A``, its size, ``name -type value`` lines,
``end_head``), so a recipe can check sample rate, channels, length and coding of every file in
milliseconds, and say which tool is missing before any audio is read.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from senone import SenoneError

#: Codings libsndfile cannot decode (``sample_coding`` like ``ulaw,embedded-shorten-v2.00``).
COMPRESSED_CODINGS = ("shorten", "wavpack", "shortpack")


class SphereError(SenoneError):
    """The file is not a readable NIST SPHERE file (empty, truncated header, other format)."""


@dataclass(frozen=True)
class SphereHeader:
    """The header fields of one SPHERE file, and how much sample data really follows it."""

    path: Path
    fields: dict[str, str | int | float]
    header_bytes: int
    data_bytes: int

    @property
    def sample_rate(self) -> int:
        return int(self.fields.get("sample_rate", 0))

    @property
    def channel_count(self) -> int:
        return int(self.fields.get("channel_count", 1))

    @property
    def sample_coding(self) -> str:
        """``pcm`` unless the header says otherwise (SPHERE's default)."""
        return str(self.fields.get("sample_coding", "pcm")).lower()

    @property
    def sample_n_bytes(self) -> int:
        return int(self.fields.get("sample_n_bytes", 1 if self.sample_coding[:4] in ("alaw", "ulaw", "mu-l") else 2))

    @property
    def compressed(self) -> bool:
        return any(c in self.sample_coding for c in COMPRESSED_CODINGS)

    @property
    def header_samples(self) -> int:
        """Samples per channel the header announces (``sample_count``)."""
        return int(self.fields.get("sample_count", 0))

    @property
    def num_samples(self) -> int:
        """Samples per channel that are really there: the header's count, or fewer if the file is cut short.

        Only meaningful for uncompressed files (a compressed file's data is smaller by design).
        """
        frame = self.channel_count * self.sample_n_bytes
        available = self.data_bytes // frame if frame > 0 else 0
        return min(self.header_samples, available) if self.header_samples else available

    @property
    def truncated(self) -> bool:
        return not self.compressed and self.num_samples < self.header_samples


def _parse_value(kind: str, value: str) -> str | int | float:
    if kind == "-i":
        return int(value)
    if kind == "-r":
        return float(value)
    return value


def read_sphere_header(path: str | os.PathLike) -> SphereHeader:
    """Parse the header of a SPHERE file; :class:`SphereError` if it is not one (or empty)."""
    path = Path(path)
    size = path.stat().st_size
    if size == 0:
        raise SphereError(f"{path}: empty file (0 bytes)")
    with open(path, "rb") as f:
        start = f.read(16)
        lines = start.split(b"\n")
        if len(lines) < 2 or lines[0].strip() != b"NIST_1A":
            raise SphereError(f"{path}: not a NIST SPHERE file (no NIST_1A header)")
        try:
            header_bytes = int(lines[1].strip())
        except ValueError:
            raise SphereError(f"{path}: SPHERE header size unreadable ({lines[1][:8]!r})") from None
        if header_bytes < 16 or header_bytes > size:
            raise SphereError(f"{path}: SPHERE header claims {header_bytes} bytes, file has {size}")
        f.seek(0)
        raw = f.read(header_bytes)
    text = raw.decode("latin-1")
    if "end_head" not in text:
        raise SphereError(f"{path}: SPHERE header has no end_head line (truncated or corrupt)")
    fields: dict[str, str | int | float] = {}
    for line in text.split("end_head")[0].splitlines()[2:]:
        parts = line.strip().split(None, 2)
        if len(parts) != 3 or not parts[1].startswith("-"):
            continue  # comments (';' lines) and blank padding
        name, kind, value = parts
        try:
            fields[name] = _parse_value(kind[:2], value)
        except ValueError:
            raise SphereError(f"{path}: SPHERE header field {name} has an unreadable value {value!r}") from None
    return SphereHeader(path=path, fields=fields, header_bytes=header_bytes, data_bytes=size - header_bytes)
