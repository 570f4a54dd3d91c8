"""What a build could not use, and why: one row per problem, written next to the output."""
from __future__ import annotations

import csv
import io
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from sv_data.files import write_text

REPORT_NAME = "report.tsv"
REPORT_COLUMNS = ("skipped", "line", "episode", "clip", "video", "reason")


@dataclass(frozen=True)
class Problem:
    """One thing that was skipped: a ``record`` (one row of the description file; its clip may still be used
    through other records), a ``clip``, an ``episode`` or a ``story``. ``line`` is the description file's line (0
    when the problem is not about one line); ``clip`` is None for an entry about a whole episode or a record whose
    clip number could not be read."""

    reason: str
    line: int = 0
    episode: str = ""
    clip: int | None = None
    video: str = ""
    skipped: str = "clip"

    @property
    def kind(self) -> str:
        """The reason without its particulars (the text before the first colon), for counting in a summary."""
        return self.reason.split(":", 1)[0]

    def row(self) -> tuple[str, ...]:
        line = str(self.line) if self.line else ""
        clip = "" if self.clip is None else str(self.clip)
        return (self.skipped, line, printable(self.episode), clip, printable(self.video), printable(self.reason))


def printable(value: str) -> str:
    """``value`` as UTF-8 can hold it: bytes of the description file that were not UTF-8 (kept as surrogate
    escapes when it was read) are written as ``\\xe9``."""
    return value.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def write_report(path: os.PathLike | str, problems: Iterable[Problem], header_notes: Iterable[str] = ()) -> Path:
    """Write the report as tab-separated text (atomically). ``header_notes`` become leading ``#`` lines."""
    buffer = io.StringIO()
    for note in header_notes:
        buffer.write(f"# {note}\n")
    writer = csv.writer(buffer, delimiter="\t", lineterminator="\n")
    writer.writerow(REPORT_COLUMNS)
    writer.writerows(p.row() for p in problems)
    return write_text(path, buffer.getvalue())


def count_kinds(problems: Iterable[Problem]) -> str:
    """``"video not found 2, empty description 1"``, most frequent first."""
    counts = Counter(p.kind for p in problems)
    return ", ".join(f"{kind} {n}" for kind, n in counts.most_common())
