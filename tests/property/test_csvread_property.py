"""The CSV reader's limits and the parallel splitter's cuts, against Python's csv module.

Every cut the splitter makes must be a true record boundary: parsing the chunks one by one gives
exactly the records of parsing the whole text. The reader must give csv's records, skip only
blank lines, and refuse what passes its limits with the line where the record starts.
"""

from __future__ import annotations

import csv
import io

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from oncofed.node.store import csvread
from oncofed.node.store.csvread import MAX_RECORD_BYTES, LineSource, RecordFault, RecordSplitter, records, resync

# Fields with the characters that matter: quotes (doubled inside quoted fields), commas and
# line breaks inside quoted fields, non-ASCII text.
plain = st.text(alphabet="ab1é ", max_size=6)
quoted = st.text(alphabet='ab,"\n\r é', max_size=8).map(lambda s: '"' + s.replace('"', '""') + '"')
row = st.lists(st.one_of(plain, quoted), min_size=1, max_size=5).map(",".join)
document = st.lists(row, min_size=1, max_size=30).map(lambda rows: "".join(r + "\n" for r in rows))


def parse(data: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(data.decode("utf-8"), newline=""), strict=True))


def ours(data: bytes, first_line: int = 1) -> list[tuple[int, list[str]]]:
    return list(records(LineSource(io.BytesIO(data), first_line)))


@settings(max_examples=300, deadline=None)
@given(document, st.lists(st.integers(1, 40), min_size=1, max_size=20))
def test_every_cut_is_a_record_boundary(text: str, sizes: list[int]):
    data = text.encode("utf-8")
    splitter = RecordSplitter()
    chunks, pos, i = [], 0, 0
    while pos < len(data):
        size = sizes[i % len(sizes)]
        splitter.feed(data[pos:pos + size])
        pos, i = pos + size, i + 1
        chunks.append(splitter.take())
    chunks.append(splitter.take(len(splitter.buf)))
    assert b"".join(chunks) == data
    assert [r for c in chunks if c for r in parse(c)] == parse(data)


@settings(max_examples=200, deadline=None)
@given(document)
def test_reader_gives_csv_records_with_their_first_line(text: str):
    data = text.encode("utf-8")
    parts = data.split(b"\n")  # physical lines end in LF (CR alone is data csv may split on)
    lines = [(p + b"\n").decode("utf-8") for p in parts[:-1]] + ([parts[-1].decode("utf-8")] if parts[-1] else [])
    reader = csv.reader(lines, strict=True)
    expected, end = [], 0
    for fields in reader:  # a record starts on the line after the one the previous record ended on
        if fields:
            expected.append((end + 1, fields))
        end = reader.line_num
    assert ours(data) == expected


def test_blank_lines_are_skipped_but_a_line_of_commas_is_a_record():
    assert ours(b"a,b\n\n\r\n,,\nc,d\n") == [(1, ["a", "b"]), (4, ["", "", ""]), (5, ["c", "d"])]


def test_lines_ending_in_cr_only_are_refused_but_crlf_and_a_stray_cr_are_not():
    with pytest.raises(RecordFault, match="line 1: lines end in CR only"):
        ours(b"a,b\rc,d\re,f\r")
    assert ours(b"a,b\r\nc,d\r\n") == [(1, ["a", "b"]), (2, ["c", "d"])]
    assert ours(b"a,b\r\r\nc,d\n") == [(1, ["a", "b"]), (2, ["c", "d"])]  # CR doubled by a converter


def test_bom_is_dropped_only_at_the_start():
    assert ours(b"\xef\xbb\xbfa,b\n") == [(1, ["a", "b"])]
    assert ours(b"\xef\xbb\xbfa,b\n", first_line=1)[0][1][0] == "a"


@pytest.mark.parametrize(("data", "line", "message"), [
    (b"a,b\n" + b"," * (MAX_RECORD_BYTES + 10) + b"\n", 2, "line 2: the record is longer than 1,048,576 bytes"),
    # a record of many short lines (quoted line breaks) passes the limit too
    (b"h\n" + b'"' + b"x\n" * (MAX_RECORD_BYTES // 2 + 10) + b'"\n', 2, "line 2: "),
    (b"h\n" + b"x\r" * (MAX_RECORD_BYTES // 2 + 10), 2, "lines end in CR only"),
    (b'h\n"' + b"x" * 200_000 + b'"\n', 2, "a field is longer than 131,072 characters"),
    (b'h\nok\n"open\nmore\n', 3, "line 3: a quoted field is not closed before the end of the file"),
    (b"h\nok\nthree ok\n4th caf\xe9\n", 4, "line 4, character 8: not valid UTF-8 text (byte 0xE9)"),
    (b'h\nok\n"x"y\n', 3, "line 3: malformed CSV"),
])
def test_limits_and_faults_name_the_line(data: bytes, line: int, message: str):
    with pytest.raises(RecordFault, match=message.replace("(", r"\(").replace(")", r"\)")) as info:
        ours(data)
    assert str(info.value).startswith(f"line {line}")


def test_too_long_is_refused_before_the_line_is_held_whole():
    """The reader asks for at most the room left under the limit (plus one byte)."""
    asked: list[int] = []

    class Stream(io.BytesIO):
        def readline(self, size: int = -1, /) -> bytes:
            asked.append(size)
            return super().readline(size)

    source = LineSource(Stream(b"a\n" + b"," * (5 * MAX_RECORD_BYTES)))
    with pytest.raises(RecordFault):
        list(records(source))
    assert asked and all(0 < n <= MAX_RECORD_BYTES + 1 for n in asked)


def test_unclosed_quote_is_never_cut_and_resync_refuses_it():
    splitter = RecordSplitter()
    splitter.feed(b"a,b\n")
    splitter.feed(b'"open\n')
    for _ in range(3000):
        splitter.feed(b"more text\n")
    assert splitter.cut == 4, "no newline after the open quote is a record boundary"
    whole = splitter.take()
    assert whole == b"a,b\n"
    splitter.feed(b"x" * MAX_RECORD_BYTES)
    with pytest.raises(RecordFault, match="line 2: "):
        resync(splitter.buf, 2)


def test_stray_quote_fools_the_parity_and_resync_finds_the_true_boundary():
    """csv reads a quote inside an unquoted field as text; the parity thinks a field is open."""
    tail = b'ab"c,d\n' + b"e,f\n" * 10 + b"partial"
    assert parse(tail[:-7]) == [['ab"c', "d"], *[["e", "f"]] * 10]
    boundary = resync(tail, first_line=7)
    assert tail[:boundary] == tail[:-7]


def test_field_limit_is_csvs(monkeypatch):
    """The message states the limit csv enforces, whatever it is set to."""
    old = csv.field_size_limit(1000)
    try:
        with pytest.raises(RecordFault, match="1,000 characters"):
            ours(b'h\n"' + b"x" * 2000 + b'"\n')
    finally:
        csv.field_size_limit(old)
    assert csvread.MAX_RECORD_BYTES == 1 << 20

