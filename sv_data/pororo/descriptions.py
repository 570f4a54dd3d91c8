"""Reading the clip descriptions, in either of the two layouts a build accepts.

- PororoQA's ``descriptions.csv`` as released: no header, columns episode, clip number, description; several rows
  may describe one clip; quoted fields may hold commas and line breaks.
- A table for any other show: a header naming the columns ``episode``, ``clip``, ``video``, ``description`` and
  optionally ``start``, ``end`` (seconds inside the video) and ``characters`` (names separated by ``;``).

A record that cannot be used is dropped and named with its line; a clip left without a usable description, or
with a bad video path or time range, is kept in its episode but marked unusable, so that no story is made across
it. Only a file that cannot be read as CSV at all raises :class:`DescriptionsError`.
"""
from __future__ import annotations

import csv
import hashlib
import io
import math
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

from sv_data.errors import SvkitError
from sv_data.pororo.report import Problem

PORORO_QA = "pororoqa"
DESCRIPTIONS_NAME = "descriptions.csv"
TABLE = "table"
REQUIRED_COLUMNS = ("episode", "clip", "video", "description")
OPTIONAL_COLUMNS = ("start", "end", "characters")
_SURROGATE = re.compile("[\udc80-\udcff]")  # bytes that are not UTF-8, as decoding with surrogateescape keeps them


class DescriptionsError(SvkitError):
    """The description file cannot be used at all; the message names the file and the line."""


@dataclass(frozen=True)
class Clip:
    """One clip as the description file defines it. ``problem`` is set when the clip cannot be used."""

    episode: str
    number: int
    line: int  # the line of its first record
    descriptions: tuple[str, ...] = ()
    video: str | None = None  # relative to the videos folder; PororoQA clips get theirs from the folder layout
    start: float | None = None
    end: float | None = None
    characters: tuple[str, ...] | None = None  # from the characters column; None: detect them in the descriptions
    problem: str | None = None

    @property
    def key(self) -> str:
        return f"{self.episode}/{self.number}"


@dataclass
class Descriptions:
    path: Path
    layout: str  # PORORO_QA or TABLE
    sha256: str  # of the file's bytes, so that a resumed build can tell the file changed
    records: int
    clips: list[Clip]  # every clip the file names, episode by episode (natural order), then by clip number
    problems: list[Problem] = field(default_factory=list)

    def episodes(self) -> dict[str, list[int]]:
        """Episode -> indices into ``clips``, in clip order."""
        out: dict[str, list[int]] = {}
        for i, clip in enumerate(self.clips):
            out.setdefault(clip.episode, []).append(i)
        return out


def natural_key(text: str) -> tuple:
    """Sort key that puts ``ep2`` before ``ep10``."""
    parts = re.split(r"(\d+)", text)
    return tuple(int(p) if i % 2 else p.lower() for i, p in enumerate(parts))


def find_descriptions(videos: Path | str) -> Path:
    """The description file for a build given only ``--videos``: ``descriptions.csv`` in that folder, else beside
    it (PororoQA keeps it next to ``Scenes_Dialogues/``)."""
    videos = Path(videos)
    places = [videos / DESCRIPTIONS_NAME, videos.absolute().parent / DESCRIPTIONS_NAME]
    for place in places:
        if place.is_file():
            return place
    raise SvkitError(f"no {DESCRIPTIONS_NAME} in {videos} or beside it ({places[1]}): pass the description file "
                     "with --descriptions FILE")


def read_descriptions(path: Path | str) -> Descriptions:
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DescriptionsError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise DescriptionsError(f"{path}: is a folder, not a CSV file") from None
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise DescriptionsError(f"{path} line 1: the file is UTF-16 text; save it as UTF-8")
    text = raw.decode("utf-8", errors="surrogateescape").removeprefix("\ufeff")
    rows = _csv_rows(path, text)
    if not rows:
        raise DescriptionsError(f"{path}: holds no records")
    first_line, first = rows[0]
    layout, columns = _layout(path, first_line, first)
    if layout == TABLE:
        rows = rows[1:]
    parser = _ClipCollector()
    for line, fields in rows:
        values = dict(zip(columns, fields)) if layout == TABLE else _pororoqa_values(fields)
        if values is None:
            parser.problems.append(
                Problem(f"wrong number of fields: expected 3 (episode, clip, description), found {len(fields)}",
                        line=line, skipped="record")
            )
            continue
        parser.add(line, values, layout)
    return Descriptions(path, layout, hashlib.sha256(raw).hexdigest(), len(rows), *parser.finish())


def _csv_rows(path: Path, text: str) -> list[tuple[int, list[str]]]:
    """Non-blank records with the line each starts on."""
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    rows = []
    line = 1
    while True:
        try:
            fields = next(reader)
        except StopIteration:
            return rows
        except csv.Error as exc:
            raise DescriptionsError(f"{path} line {line}: not valid CSV ({exc})") from None
        if any(f.strip() for f in fields):
            rows.append((line, fields))
        line = reader.line_num + 1


def _layout(path: Path, line: int, fields: list[str]) -> tuple[str, list[str]]:
    names = [f.strip().lower() for f in fields]
    known = set(REQUIRED_COLUMNS + OPTIONAL_COLUMNS)
    if known.intersection(names):
        missing = [c for c in REQUIRED_COLUMNS if c not in names]
        if missing:
            raise DescriptionsError(
                f"{path} line {line}: the header lacks the required column{'s' if len(missing) > 1 else ''} "
                f"{', '.join(missing)} (it has: {', '.join(n for n in names if n)})"
            )
        duplicates = sorted({n for n in names if n in known and names.count(n) > 1})
        if duplicates:
            raise DescriptionsError(f"{path} line {line}: the header names the column {duplicates[0]} twice")
        return TABLE, names
    if len(fields) == 3 and fields[1].strip().isdigit():
        return PORORO_QA, ["episode", "clip", "description"]
    raise DescriptionsError(
        f"{path} line {line}: neither a header naming the columns {', '.join(REQUIRED_COLUMNS)} nor PororoQA's "
        "headerless rows of episode, clip number, description"
    )


def _pororoqa_values(fields: list[str]) -> dict[str, str] | None:
    if len(fields) != 3:
        return None
    return dict(zip(("episode", "clip", "description"), fields))


def _not_utf8(value: str) -> str | None:
    """The first byte of ``value`` that was not UTF-8, as ``0x..``, or None."""
    match = _SURROGATE.search(value)
    return None if match is None else f"0x{ord(match.group()) - 0xDC00:02x}"


def _seconds(name: str, value: str) -> tuple[float | None, str | None]:
    value = value.strip()
    if not value:
        return None, None
    try:
        seconds = float(value)
    except ValueError:
        return None, f"bad time range: {name} {value!r} is not a number of seconds"
    if not math.isfinite(seconds) or seconds < 0:
        return None, f"bad time range: {name} {value!r} is not a number of seconds >= 0"
    return seconds, None


@dataclass
class _Pending:
    clip: Clip
    descriptions: list[str] = field(default_factory=list)
    characters: set[str] | None = None
    problems: list[Problem] = field(default_factory=list)


class _ClipCollector:
    """Gathers records into clips; a record's problems stay with its clip until we know whether the clip is lost."""

    def __init__(self):
        self.pending: dict[tuple[str, int], _Pending] = {}
        self.problems: list[Problem] = []

    def add(self, line: int, values: dict[str, str], layout: str) -> None:
        episode = values.get("episode", "").strip()
        number_text = values.get("clip", "").strip()
        if not episode or _not_utf8(episode):
            self.problems.append(Problem("no episode name" if not episode else "not UTF-8: in the episode name",
                                         line=line, skipped="record"))
            return
        if not number_text.isdigit():
            shown = "the field (not UTF-8)" if _not_utf8(number_text) else repr(number_text)
            self.problems.append(Problem(f"bad clip number: {shown} is not a whole number", line=line,
                                         episode=episode, skipped="record"))
            return
        number = int(number_text)
        video = values.get("video", "").strip() if layout == TABLE else None
        pending = self.pending.get((episode, number))
        if pending is None:
            start, start_problem = _seconds("start", values.get("start", ""))
            end, end_problem = _seconds("end", values.get("end", ""))
            problem = start_problem or end_problem
            if problem is None and start is not None and end is not None and end <= start:
                problem = f"bad time range: end {end:g} s is not after start {start:g} s"
            if layout == TABLE and not video:
                problem = "no video path"
            elif video and _not_utf8(video):
                problem = "not UTF-8: in the video path"
            clip = Clip(episode, number, line, video=video, start=start, end=end, problem=problem)
            pending = self.pending[(episode, number)] = _Pending(clip)
            if problem:
                pending.problems.append(Problem(problem, line=line, episode=episode, clip=number,
                                                video=video or ""))
        elif layout == TABLE and _defines_other_clip(pending.clip, values):
            pending.problems.append(Problem(
                f"conflicting records: another video, start or end than line {pending.clip.line} gives for this clip",
                line=line, episode=episode, clip=number, video=video or ""))
            return

        description = values.get("description", "").strip().replace("\r\n", "\n")
        bad_byte = _not_utf8(description)
        if bad_byte or not description:
            reason = f"not UTF-8: byte {bad_byte} in the description" if bad_byte else "empty description"
            pending.problems.append(Problem(reason, line=line, episode=episode, clip=number, video=video or ""))
            return
        pending.descriptions.append(description)
        names = [n.strip() for n in values.get("characters", "").split(";") if n.strip()]
        if names:
            pending.characters = (pending.characters or set()) | set(names)

    def finish(self) -> tuple[list[Clip], list[Problem]]:
        clips = []
        problems = list(self.problems)
        for pending in self.pending.values():
            clip = pending.clip
            if clip.problem is None and not pending.descriptions:
                clip = replace(clip, problem=pending.problems[0].reason)
            lost = clip.problem is not None
            problems += [replace(p, skipped="clip" if lost else "record") for p in pending.problems]
            characters = tuple(sorted(pending.characters)) if pending.characters is not None else None
            clips.append(replace(clip, descriptions=tuple(pending.descriptions), characters=characters))
        clips.sort(key=lambda c: (natural_key(c.episode), c.number))
        return clips, problems


def _defines_other_clip(clip: Clip, values: dict[str, str]) -> bool:
    start, _ = _seconds("start", values.get("start", ""))
    end, _ = _seconds("end", values.get("end", ""))
    return (values.get("video", "").strip(), start, end) != (clip.video, clip.start, clip.end)
