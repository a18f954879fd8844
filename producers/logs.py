"""Read interaction logs (MovieLens, CSV, JSONL) into timestamp-ordered click events.

Replay evaluation and the log replayer both need the same thing: every event of a file,
validated, in event-time order. ``read_log`` returns them sorted by ``ts`` with ties kept
in file order (a stable sort), so a replay is deterministic for a given file.

A malformed line raises ``LogFormatError`` naming the file, the line and the reason: a log
that silently loses rows gives evaluation numbers nobody can trust. Pass
``on_error="skip"`` to drop bad lines instead; they are counted in a ``ReadStats``.

>>> import pathlib, tempfile
>>> path = pathlib.Path(tempfile.mkdtemp()) / "u.data"
>>> _ = path.write_text("1\\t10\\t4\\t200\\n2\\t20\\t5\\t100\\n")
>>> [(e.user_id, e.item_id, e.value, e.ts) for e in read_log(path, "movielens")]
[('2', '20', 5.0, 100.0), ('1', '10', 4.0, 200.0)]
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from operator import attrgetter
from pathlib import Path
from typing import Iterator, Literal

import msgspec

from streamrec.events import BadEvent, ClickEvent, decode_click

LogFormat = Literal["movielens", "csv", "jsonl"]
FORMATS: tuple[str, ...] = ("movielens", "csv", "jsonl")
OnError = Literal["raise", "skip"]

# Columns of a CSV log that are event fields; any other column goes into ``context``.
_EVENT_FIELDS = ("event_id", "user_id", "item_id", "type", "ts", "value")


class LogFormatError(ValueError):
    """A line of a log file is not a valid event; says which file, which line and why."""

    def __init__(self, path: str | Path, line_no: int, reason: str) -> None:
        super().__init__(f"{path}:{line_no}: {reason}")
        self.path = str(path)
        self.line_no = line_no
        self.reason = reason


@dataclass
class ReadStats:
    """What a read saw: lines with data, events returned, and lines skipped (with why).

    Only the first ``max_examples`` skipped lines keep their ``LogFormatError``, so a
    badly broken file cannot fill memory with error objects.
    """

    lines: int = 0
    events: int = 0
    skipped: int = 0
    errors: list[LogFormatError] = field(default_factory=list)
    max_examples: int = 20

    def _skip(self, error: LogFormatError) -> None:
        self.skipped += 1
        if len(self.errors) < self.max_examples:
            self.errors.append(error)


def read_log(path: str | Path, fmt: LogFormat, *, on_error: OnError = "raise",
             stats: ReadStats | None = None, limit: int | None = None) -> list[ClickEvent]:
    """All events of a log file, sorted by event time; ties keep file order.

    Parameters
    ----------
    path
        The log file.
    fmt
        ``"movielens"`` (``u.data`` tab-separated, ``ratings.csv`` with header, or
        ``ratings.dat`` with ``::``; detected from the content), ``"csv"`` (header of event
        field names; extra columns become ``context``) or ``"jsonl"`` (one v1 event per line).
    on_error
        ``"raise"`` (default) raises ``LogFormatError`` at the first bad line; ``"skip"``
        drops bad lines and counts them in ``stats``.
    stats
        Filled in with line, event and skip counts when given.
    limit
        Read at most this many events (in file order, before sorting).
    """
    events = list(iter_log(path, fmt, on_error=on_error, stats=stats, limit=limit))
    events.sort(key=attrgetter("ts"))  # list.sort is stable: ties keep file order
    return events


def iter_log(path: str | Path, fmt: LogFormat, *, on_error: OnError = "raise",
             stats: ReadStats | None = None, limit: int | None = None) -> Iterator[ClickEvent]:
    """Events of a log file in *file* order (not sorted); see ``read_log`` for parameters."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown log format {fmt!r}; expected one of {', '.join(FORMATS)}")
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    stats = stats if stats is not None else ReadStats()
    path = Path(path)
    parse = {"movielens": _parse_movielens, "csv": _parse_csv, "jsonl": _parse_jsonl}[fmt]
    for line_no, item in parse(path):
        if isinstance(item, LogFormatError):
            if on_error == "raise":
                raise item
            stats.lines += 1
            stats._skip(item)
            continue
        if item is None:  # a header or blank line: not data
            continue
        stats.lines += 1
        stats.events += 1
        yield item
        if limit is not None and stats.events >= limit:
            return


_Parsed = Iterator[tuple[int, "ClickEvent | LogFormatError | None"]]


def _parse_movielens(path: Path) -> _Parsed:
    # Read the whole file at once and split by hand: csv.reader is ~3x slower on u.data and
    # ML-100K must load in well under a second.
    text = path.read_text(encoding="utf-8", errors="replace")
    lines = text.splitlines()
    first_index = next((i for i, line in enumerate(lines) if line.strip()), 0)
    first = lines[first_index] if lines else ""
    if "::" in first:
        sep = "::"
    elif "\t" in first:
        sep = "\t"
    else:
        sep = ","
    header = first.replace(" ", "").lower().startswith("userid")
    make = ClickEvent
    for index, line in enumerate(lines):
        line_no = index + 1
        if not line.strip() or (header and index == first_index):
            yield line_no, None
            continue
        parts = line.split(sep)
        if len(parts) != 4:
            yield line_no, LogFormatError(
                path, line_no, f"expected 4 fields 'user{sep!r}item{sep!r}rating{sep!r}"
                f"timestamp', got {len(parts)}")
            continue
        user, item, rating, stamp = (p.strip() for p in parts)
        try:
            value = float(rating)
            ts = float(stamp)
        except ValueError:
            yield line_no, LogFormatError(
                path, line_no, f"rating {rating!r} and timestamp {stamp!r} must be numbers")
            continue
        if not user or not item or not math.isfinite(ts) or not math.isfinite(value):
            yield line_no, LogFormatError(
                path, line_no, "empty user or item, or non-finite rating/timestamp")
            continue
        yield line_no, make(event_id=f"{user}-{item}-{stamp}-{line_no}", user_id=user,
                            item_id=item, type="rating", ts=ts, value=value)


def _parse_csv(path: Path) -> _Parsed:
    with path.open(newline="", encoding="utf-8", errors="replace") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None:
            return
        columns = [name.strip() for name in header]
        missing = [name for name in ("user_id", "item_id", "ts") if name not in columns]
        if missing:
            yield 1, LogFormatError(path, 1, f"header lacks required column(s) {missing}; "
                                             f"got {columns}")
            return
        if len(set(columns)) != len(columns):
            yield 1, LogFormatError(path, 1, f"header has duplicate columns: {columns}")
            return
        yield 1, None
        for row in reader:
            line_no = reader.line_num
            if not row or all(not cell.strip() for cell in row):
                yield line_no, None
                continue
            if len(row) != len(columns):
                yield line_no, LogFormatError(
                    path, line_no, f"expected {len(columns)} columns, got {len(row)}")
                continue
            yield line_no, _csv_event(path, line_no, columns, row)


def _csv_event(path: Path, line_no: int, columns: list[str],
               row: list[str]) -> ClickEvent | LogFormatError:
    raw: dict[str, object] = {}
    context: dict[str, str] = {}
    for name, cell in zip(columns, row):
        cell = cell.strip()
        if name in _EVENT_FIELDS:
            if cell:
                raw[name] = cell
        elif cell:
            context[name] = cell
    try:
        raw["ts"] = float(raw["ts"])  # type: ignore[arg-type]
        if "value" in raw:
            raw["value"] = float(raw["value"])  # type: ignore[arg-type]
    except KeyError:
        return LogFormatError(path, line_no, "empty `ts`")
    except ValueError:
        return LogFormatError(path, line_no, f"`ts`/`value` must be numbers, got "
                                             f"{raw.get('ts')!r}/{raw.get('value')!r}")
    if not math.isfinite(raw["ts"]):  # type: ignore[arg-type]
        return LogFormatError(path, line_no, "`ts` must be a finite number")
    raw.setdefault("type", "click")
    raw.setdefault("event_id", f"{raw.get('user_id', '')}-{raw.get('item_id', '')}-"
                               f"{row[columns.index('ts')].strip()}-{line_no}")
    raw["context"] = context
    try:
        # msgspec.convert validates like decode_click does (types, literals, lengths).
        return msgspec.convert(raw, ClickEvent)
    except msgspec.ValidationError as exc:
        return LogFormatError(path, line_no, str(exc))


def _parse_jsonl(path: Path) -> _Parsed:
    with path.open("rb") as handle:
        for line_no, line in enumerate(handle, start=1):
            line = line.strip()
            if not line:
                yield line_no, None
                continue
            try:
                yield line_no, decode_click(line)
            except BadEvent as exc:
                yield line_no, LogFormatError(path, line_no, str(exc))


def sniff_format(path: str | Path) -> LogFormat:
    """Guess a log's format from its name and first line (for CLIs offering ``auto``)."""
    path = Path(path)
    with path.open("r", encoding="utf-8", errors="replace") as handle:
        first = next((line for line in handle if line.strip()), "")
    if first.lstrip().startswith("{"):
        return "jsonl"
    if "\t" in first or "::" in first or first.replace(" ", "").lower().startswith("userid"):
        return "movielens"
    return "csv"


__all__ = ["FORMATS", "LogFormat", "LogFormatError", "ReadStats", "iter_log", "read_log",
           "sniff_format"]
