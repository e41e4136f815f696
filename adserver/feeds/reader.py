"""Reading a product feed as it arrives: bytes in, in pieces of any size, raw rows out.

Memory is bounded whatever the feed: a JSON array goes through ijson's push parser (events,
from which only the product fields of each row are kept), NDJSON and CSV are cut into
records as they complete, and a record (or a JSON value) longer than MAX_RECORD refuses
the feed. Each call
costs time in proportion to the bytes given, so a caller feeding small pieces can give the
event loop back between them (see `catalog_upload.read_feed`).
"""

from __future__ import annotations

import codecs
import csv
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import ijson
import orjson

MAX_RECORD = 256 * 1024  # bytes of one NDJSON line, characters of one CSV record
DELIMITERS = (",", ";", "\t", "|")
BOM = codecs.BOM_UTF8
LONE_SURROGATE = "invalid JSON: a string holds a lone surrogate escape such as \\udc00"
FIELDS = frozenset(
    (
        "id",
        "title",
        "link",
        "image_link",
        "price",
        "sale_price",
        "currency",
        "availability",
        "category",
        "brand",
    )
)


class FeedError(ValueError):
    """The feed as a whole cannot be read (not a row problem)."""


@dataclass(frozen=True, slots=True)
class UnreadableRow:
    reason: str


def detect_format(body: bytes, content_type: str = "") -> str:
    """'json', 'ndjson' or 'csv', from the content type, else from the first character."""
    content_type = content_type.lower()
    if "ndjson" in content_type or "jsonlines" in content_type:
        return "ndjson"
    if "csv" in content_type:
        return "csv"
    head = body.lstrip()[:1]
    if head == b"[":
        return "json"
    if head == b"{":
        return "ndjson"
    return "csv"


class _Nested:
    """A field whose value is an object or a list: reads as empty, so it fails validation."""

    def __str__(self) -> str:
        return ""


NESTED = _Nested()
NOT_AN_OBJECT: list[object] = []  # a row that is a JSON array


class RowSource(Protocol):
    def feed(self, data: bytes) -> list[object]: ...
    def close(self) -> list[object]: ...


def row_source(head: bytes, content_type: str) -> RowSource:
    """The parser for a feed whose first bytes (BOM stripped) are `head`."""
    kind = detect_format(head, content_type)
    if kind == "json":
        return JsonArrayRows()
    if kind == "ndjson":
        return NdjsonRows()
    return CsvRows()


class JsonArrayRows:
    """A JSON array of objects, from ijson's events; nested values are not built."""

    def __init__(self) -> None:
        self._events: Any = ijson.sendable_list()
        self._parser = ijson.basic_parse_coro(self._events, use_float=True)
        self._depth = 0
        self._row: dict[str, object] | None = None
        self._key = ""
        self._quiet = 0  # bytes fed since the parser last completed a token

    def feed(self, data: bytes) -> list[object]:
        try:
            self._parser.send(data)
        except ijson.JSONError as exc:
            raise FeedError(f"invalid JSON: {_first_line(exc)}") from None
        except UnicodeDecodeError:  # yajl turns a lone surrogate escape into invalid UTF-8
            raise FeedError(LONE_SURROGATE) from None
        # yajl lexes a token that spans pieces again from its start with each piece: a string
        # of n bytes fed in small pieces costs O(n^2) (60 MB: half an hour of CPU). So, as a
        # NDJSON line, no token may be longer than MAX_RECORD: bytes without an event are one.
        self._quiet = 0 if self._events else self._quiet + len(data)
        if self._quiet > MAX_RECORD:
            raise FeedError(f"a JSON value is longer than {_kb(MAX_RECORD)}")
        return self._rows()

    def close(self) -> list[object]:
        try:
            self._parser.close()
        except ijson.JSONError as exc:
            raise FeedError(f"invalid JSON: {_first_line(exc)}") from None
        except UnicodeDecodeError:
            raise FeedError(LONE_SURROGATE) from None
        return self._rows()

    def _rows(self) -> list[object]:
        rows: list[object] = []
        for event, value in self._events:
            self._event(event, value, rows)
        del self._events[:]
        return rows

    def _event(self, event: str, value: object, rows: list[object]) -> None:
        if isinstance(value, str) and len(value) > MAX_RECORD:  # given whole, in one piece
            raise FeedError(f"a JSON value is longer than {_kb(MAX_RECORD)}")
        if event in ("start_map", "start_array"):
            self._depth += 1
            if self._depth == 1 and event == "start_map":
                raise FeedError("a JSON feed must be an array of products")
            if self._depth == 2:
                self._row = {} if event == "start_map" else None
                if self._row is None:
                    rows.append(NOT_AN_OBJECT)
            elif self._depth == 3 and self._row is not None and self._key in FIELDS:
                self._row[self._key] = NESTED
        elif event in ("end_map", "end_array"):
            if self._depth == 2 and self._row is not None:
                rows.append(self._row)
                self._row = None
            self._depth -= 1
        elif event == "map_key":
            if self._depth == 2:
                self._key = str(value)
        elif self._depth == 1:
            rows.append(value)  # a number or a string where a product should be
        elif self._depth == 2 and self._row is not None and self._key in FIELDS:
            self._row[self._key] = value


class NdjsonRows:
    """One JSON object per line; a line that is not JSON is a rejected row."""

    def __init__(self) -> None:
        self._buffer = b""
        self._line = 0

    def feed(self, data: bytes) -> list[object]:
        self._buffer += data
        *lines, self._buffer = self._buffer.split(b"\n")
        if len(self._buffer) > MAX_RECORD:
            raise FeedError(f"line {self._line + len(lines) + 1} is longer than {_kb(MAX_RECORD)}")
        return self._rows(lines)

    def close(self) -> list[object]:
        rest, self._buffer = self._buffer, b""
        return self._rows([rest])

    def _rows(self, lines: list[bytes]) -> list[object]:
        rows: list[object] = []
        for line in lines:
            self._line += 1
            if len(line) > MAX_RECORD:
                raise FeedError(f"line {self._line} is longer than {_kb(MAX_RECORD)}")
            try:
                text = line.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise FeedError(
                    f"feed is not UTF-8 (line {self._line}, byte {exc.start})"
                ) from None
            if text.strip():
                try:
                    rows.append(orjson.loads(text))
                except orjson.JSONDecodeError:
                    rows.append(UnreadableRow(f"line {self._line} is not valid JSON"))
        return rows


class _NeedMore(Exception):
    """The csv reader wants the next line of a record that has not arrived yet."""


class _Lines:
    """What a csv.reader reads: lines as they complete. When it asks for a line that has not
    arrived, it gets _NeedMore, and the lines of the record it was reading are put back to be
    read again (whole) once more has come; only at the end does it see StopIteration."""

    def __init__(self) -> None:
        self.pending: deque[str] = deque()
        self.taken: list[str] = []  # the lines of the record being read
        self.final = False
        self.consumed = 0  # lines of the records read whole
        self.size = 0  # characters in `pending`
        # The record put back is inside a quoted field, which only a line holding a quote
        # can close: until one comes, reading it again (from its start) would be in vain, and
        # doing so for every piece cost O(n^2) for a field of n short lines.
        self.blocked = False

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        if not self.pending:
            if self.final:
                raise StopIteration
            raise _NeedMore
        line = self.pending.popleft()
        self.size -= len(line)
        self.taken.append(line)
        return line

    def add(self, lines: list[str]) -> None:
        self.pending.extend(lines)
        self.size += sum(map(len, lines))
        if self.blocked and any('"' in line for line in lines):
            self.blocked = False
        self._check_size()

    def record_done(self) -> None:
        self.consumed += len(self.taken)
        self.taken = []

    def put_back(self) -> None:
        self.pending.extendleft(reversed(self.taken))
        self.size += sum(map(len, self.taken))
        self.blocked = bool(self.taken)  # asked for a line inside a record: a quoted field
        self.taken = []
        self._check_size()

    def _check_size(self) -> None:
        if self.blocked and self.size > MAX_RECORD:
            raise FeedError(f"a CSV row is longer than {_kb(MAX_RECORD)}")


class CsvRows:
    """CSV with a header row, whose delimiter is that of the header row. Line endings are
    read as universal newlines (CR-only exports too), as `open(newline=None)` would."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")()
        self._bytes = 0
        self._text = ""  # the start of a line whose end has not arrived
        self._cr = False  # the last piece ended in a CR (maybe half of a CRLF)
        self._lines = _Lines()
        self._reader: Any = None
        self._fields: list[str] | None = None

    def feed(self, data: bytes) -> list[object]:
        self._add_text(self._decode(data, final=False))
        if self._reader is None and not self._lines.pending:
            return []  # the header row is not complete yet
        return self._rows()

    def close(self) -> list[object]:
        self._add_text(self._decode(b"", final=True))
        if self._cr or self._text:
            self._lines.add([self._text + "\n"])
            self._text, self._cr = "", False
        self._lines.final = True
        rows = self._rows()
        if self._fields is None:
            self._header([])
        return rows

    def _decode(self, data: bytes, final: bool) -> str:
        try:
            text = self._decoder.decode(data, final)
        except UnicodeDecodeError as exc:
            raise FeedError(f"feed is not UTF-8 (byte {self._bytes + exc.start})") from None
        self._bytes += len(data)
        return text

    def _add_text(self, text: str) -> None:
        if self._cr:
            text = "\r" + text
        self._cr = text.endswith("\r")
        if self._cr:
            text = text[:-1]
        *lines, self._text = (self._text + text.replace("\r\n", "\n").replace("\r", "\n")).split(
            "\n"
        )
        self._lines.add([line + "\n" for line in lines])
        if len(self._text) > MAX_RECORD:
            raise FeedError(f"a CSV row is longer than {_kb(MAX_RECORD)}")

    def _rows(self) -> list[object]:
        if self._lines.blocked and not self._lines.final:
            return []  # still inside a quoted field: no line since could close it
        if self._reader is None:
            self._start()
        rows: list[object] = []
        try:
            for record in self._reader:
                self._lines.record_done()
                if self._fields is None:
                    self._header(record)
                elif record:
                    named = dict(zip(self._fields, record, strict=False))
                    rows.append({k: v.strip() for k, v in named.items() if k in FIELDS})
        except _NeedMore:
            self._lines.put_back()
        except csv.Error as exc:  # e.g. a field over csv.field_size_limit() (128 KB)
            line = self._lines.consumed + len(self._lines.taken)
            raise FeedError(f"unreadable CSV at line {line}: {exc}") from None
        return rows

    def _start(self) -> None:
        header = self._lines.pending[0] if self._lines.pending else self._text
        self._reader = csv.reader(self._lines, delimiter=header_delimiter(header))

    def _header(self, record: list[str]) -> None:
        fields = [f.strip().lower() for f in record]
        if "id" not in fields:
            raise FeedError("CSV feed needs a header row with at least an 'id' column")
        self._fields = fields


def header_delimiter(header: str) -> str:
    """The delimiter of a CSV feed, from its header row (which names an `id` column): the
    candidate it holds most of, a comma if none. (csv.Sniffer takes tens of milliseconds on
    4 KB and guesses escaping rules a feed does not need.)"""
    return max(DELIMITERS, key=header.count) if any(d in header for d in DELIMITERS) else ","


def _first_line(exc: Exception) -> str:
    message = exc.args[0] if exc.args else exc
    if isinstance(message, bytes):
        message = message.decode("utf-8", "replace")
    return str(message).strip().splitlines()[0] if str(message).strip() else "broken"


def _kb(size: int) -> str:
    return f"{size // 1024} KB"
