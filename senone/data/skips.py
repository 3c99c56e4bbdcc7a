"""What corpus preparation left out, and why: one record per skipped item, a count per reason.

Real corpora always hold some bad items (an unreadable time stamp, a segment past the end of its
audio, a file in another sample rate, an empty transcript, an id listed twice). Preparation skips
them rather than stopping, but never silently: every skip is logged once at DEBUG with its reason,
the counts per reason are logged at INFO/WARNING when preparation ends, and the whole report is
written next to the manifests (``skipped.json``) so a user can see exactly what did not make it in.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from dataclasses import dataclass, field

from senone.io import write_json

#: Examples kept per reason in the written report (the counts are always complete).
MAX_EXAMPLES = 20


@dataclass
class SkipReport:
    """Collects skipped items during preparation of one corpus (all splits together).

    ``add("A001_0012", "segment_past_audio_end", "ends at 612.3 s, audio is 600.0 s")`` records one
    skip; ``summarise(log)`` logs the counts; ``write(path)`` writes the report as JSON.
    """

    corpus: str
    counts: Counter = field(default_factory=Counter)
    examples: dict[str, list[dict[str, str]]] = field(default_factory=dict)

    def add(self, item: str, reason: str, detail: str = "") -> None:
        """Record that ``item`` (an utterance, recording or file) was left out for ``reason``."""
        self.counts[reason] += 1
        kept = self.examples.setdefault(reason, [])
        if len(kept) < MAX_EXAMPLES:
            kept.append({"item": str(item), "detail": detail})
        logging.getLogger(__name__).debug("%s: skipped %s (%s%s)", self.corpus, item, reason,
                                          f": {detail}" if detail else "")

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def summarise(self, log: logging.Logger) -> None:
        """One line per reason (WARNING, so it is seen), or one INFO line saying nothing was skipped."""
        if not self.counts:
            log.info("%s: nothing skipped", self.corpus)
            return
        for reason, n in sorted(self.counts.items()):
            first = self.examples[reason][0]
            log.warning("%s: skipped %d item(s): %s (e.g. %s%s)", self.corpus, n, reason, first["item"],
                        f": {first['detail']}" if first["detail"] else "")

    def to_dict(self) -> dict:
        return {"corpus": self.corpus, "total": self.total, "counts": dict(sorted(self.counts.items())),
                "examples": {r: self.examples[r] for r in sorted(self.examples)}}

    def write(self, path: str | os.PathLike) -> None:
        """Write the report (atomically) as JSON; written even when empty, so its absence means 'not run'."""
        write_json(path, self.to_dict())
