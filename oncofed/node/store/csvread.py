"""Reading a registry CSV file record by record, within fixed limits, with true line numbers.

A broken or hostile file must not hang an ingest, exhaust memory or be misreported, so:
- the file is read one physical line at a time with a bounded `readline`: a record (one line, or
  several when a quoted field holds line breaks) longer than MAX_RECORD_BYTES is refused as soon
  as it passes the limit, before it is held whole; a field is bounded by csv's field limit
  (128 KiB), which also stops an unclosed quote early;
- each line is decoded on its own, so a byte that is not UTF-8 is reported on its own line and
  character, not on the line where a decoder's read-ahead happened to be;
- a blank line is skipped; any other record is handed on, however many fields it has (the
  caller refuses a wrong count);
- lines end at LF (CRLF included); a file whose lines end in CR alone is refused (csv meets a
  line break inside a line), since its line numbers would all be 1.

The serial ingest, the parallel workers and the parallel splitter all read through this module,
so a file gets the same verdict and the same message in either mode (tests run both).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from typing import Protocol

#: The longest record oncofed reads, in bytes (a registry row is well under 2 KB).
MAX_RECORD_BYTES = 1 << 20
_BOM = b"\xef\xbb\xbf"


class RecordFault(Exception):
    """A fault after which the rest of the file cannot be read; the message names the line."""


class _Lines(Protocol):
    def readline(self, size: int = ..., /) -> bytes: ...


class LineSource:
    """The physical lines of a CSV byte stream, as text, for `csv.reader`.

    `record_bytes` counts the bytes of the record being read; `records()` resets it after each
    record (csv.reader never reads ahead, so the lines it has pulled are exactly the record's).
    """

    def __init__(self, stream: _Lines, first_line: int = 1, *, at_start: bool = True) -> None:
        self._readline = stream.readline
        self.line = first_line - 1  # the last line read
        self.record_start = first_line
        self.record_bytes = 0
        self._bom = at_start

    def __iter__(self) -> LineSource:
        return self

    def __next__(self) -> str:
        room = MAX_RECORD_BYTES - self.record_bytes
        raw = self._readline(room + 1)
        if not raw:
            raise StopIteration
        self.line += 1
        if not self.record_bytes:
            self.record_start = self.line
        self.record_bytes += len(raw)
        if len(raw) > room:
            raise RecordFault(too_long(self.record_start, raw))
        if self._bom:
            self._bom = False
            if raw.startswith(_BOM):
                raw = raw[len(_BOM):]
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise RecordFault(not_utf8(self.line, raw, exc.start)) from None


def records(source: LineSource) -> Iterator[tuple[int, list[str]]]:
    """(first line, fields) of each record that is not a blank line; RecordFault on a fault
    that stops the reading."""
    reader = csv.reader(source, strict=True)
    try:
        for fields in reader:
            source.record_bytes = 0
            if fields:
                yield source.record_start, fields
    except csv.Error as exc:
        raise RecordFault(_csv_fault(source, exc)) from None


def too_long(line: int, raw: bytes) -> str:
    why = ("its lines end in CR only: save it with LF or CRLF line ends" if b"\r" in raw.rstrip(b"\r\n")
           else "is a quote left open, or is this not a registry CSV file?")
    return f"line {line}: the record is longer than {MAX_RECORD_BYTES:,} bytes (the most oncofed reads; {why})"


def not_utf8(line: int, raw: bytes, at: int) -> str:
    column = len(raw[:at].decode("utf-8", "replace")) + 1
    return (f"line {line}, character {column}: not valid UTF-8 text (byte 0x{raw[at]:02X}); "
            "save the file as UTF-8")


def _csv_fault(source: LineSource, exc: csv.Error) -> str:
    text = str(exc)
    if "field larger than field limit" in text:
        return (f"line {source.record_start}: a field is longer than {csv.field_size_limit():,} characters "
                "(the most oncofed reads; is a quote left open?)")
    if "new-line character seen in unquoted field" in text:
        return _cr_only(source.line)
    if "unexpected end of data" in text:
        return f"line {source.record_start}: a quoted field is not closed before the end of the file"
    return f"line {source.line}: malformed CSV ({text})"


def _cr_only(line: int) -> str:
    return f"line {line}: lines end in CR only (old Mac line ends); save the file with LF or CRLF line ends"


class RecordSplitter:
    """Cuts a growing buffer at its last record boundary in time linear in the bytes fed.

    A newline ends a record when an even number of quote characters precede it (a quote
    doubled inside a quoted field counts twice, so it never changes the parity). Only the newly
    fed bytes are searched, backwards from their end, so an unclosed quote costs one pass over
    the file, never one per newline. A stray quote inside an unquoted field (which csv accepts)
    fools the parity: `resync` then finds the true boundary by parsing.
    """

    def __init__(self) -> None:
        self.buf = b""
        self.cut = 0        # buf[:cut] holds whole records
        self._searched = 0  # buf[:_searched] has been searched
        self._odd = False   # parity of the quotes in buf[:_searched]

    def feed(self, block: bytes) -> None:
        buf = self.buf = self.buf + block
        end = len(buf)
        odd_end = self._odd ^ bool(buf.count(b'"', self._searched, end) & 1)
        pos, odd = end, odd_end
        while True:
            nl = buf.rfind(b"\n", self._searched, pos)
            if nl < 0:
                break
            odd ^= bool(buf.count(b'"', nl, pos) & 1)  # now the parity of buf[:nl]
            if not odd:
                self.cut = nl + 1
                break
            pos = nl
        self._searched, self._odd = end, odd_end

    @property
    def tail_bytes(self) -> int:
        """Bytes after the last boundary: one incomplete record (or a fooled parity)."""
        return len(self.buf) - self.cut

    def take(self, upto: int | None = None) -> bytes:
        """Remove and return buf[:upto] (default: every whole record); upto must be a boundary."""
        cut = self.cut if upto is None else upto
        chunk, self.buf = self.buf[:cut], self.buf[cut:]
        if upto is None:  # the removed prefix has even parity: the state carries over
            self._searched -= cut
            self.cut = 0
        else:             # a boundary found by parsing: search the rest afresh
            self._searched, self._odd, self.cut = 0, False, 0
            rest, self.buf = self.buf, b""
            self.feed(rest)
        return chunk


def resync(tail: bytes, first_line: int) -> int:
    """The true last record boundary in `tail` (the bytes after the splitter's last boundary,
    starting at line `first_line`, longer than MAX_RECORD_BYTES), found by parsing it as the
    serial reader would. Raises RecordFault with the serial reader's message when the record
    there is too long or malformed."""
    whole_lines = tail[: tail.rfind(b"\n") + 1]
    stream = io.BytesIO(whole_lines)
    source = LineSource(stream, first_line, at_start=False)
    reader = csv.reader(source, strict=True)
    boundary = 0
    try:
        for _ in reader:
            source.record_bytes = 0
            boundary = stream.tell()
    except csv.Error as exc:
        if "unexpected end of data" not in str(exc):  # the end of whole_lines is not the file's end
            raise RecordFault(_csv_fault(source, exc)) from None
    if len(tail) - boundary > MAX_RECORD_BYTES:
        raise RecordFault(too_long(first_line + tail.count(b"\n", 0, boundary), tail[boundary:]))
    return boundary
