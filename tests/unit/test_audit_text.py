"""What researcher-chosen text may become in the audit log (oncofed.node.audit_text): bounded,
printable on a terminal, inert in a spreadsheet — whatever the input."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from oncofed.node.audit import canonical_json
from oncofed.node.audit_text import (
    MAX_DETAIL_BYTES,
    MAX_FIELDS,
    clean_detail,
    clean_fields,
    clean_text,
    csv_cell,
    field_token,
    printable,
)

UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]")


def test_plain_field_names_are_kept_and_others_become_stable_tokens():
    assert field_token("age_at_incidence") == "age_at_incidence" and field_token("cT") == "cT"
    token = field_token("x" * 900_000)
    assert re.fullmatch(r"\?[0-9a-f]{16}:900000", token) and token == field_token("x" * 900_000)
    assert field_token("=cmd|' /C calc'!A0").startswith("?")
    assert field_token("\x1b[2J").startswith("?") and field_token("a" * 65).startswith("?")


def test_field_lists_are_bounded_sorted_and_distinct():
    names = [f"f{i:04d}" for i in range(1000)] + ["f0001"]
    kept = clean_fields(names)
    assert len(kept) == MAX_FIELDS + 1 and kept[-1] == f"(+{1000 - MAX_FIELDS} more)"
    assert kept[:MAX_FIELDS] == sorted(kept[:MAX_FIELDS])


@pytest.mark.parametrize(("text", "shown"), [
    ("\x1b[31mred", "\\x1b[31mred"), ("bell\x07", "bell\\x07"), ("csi\x9b2J", "csi\\x9b2J"),
    ("rtl\u202eevil", "rtl\\u202eevil"), ("line\nbreak", "line\\nbreak".replace("\\n", "\\x0a")),
    ("plain ünïcode ≤ ×", "plain ünïcode ≤ ×"),
])
def test_control_and_bidi_characters_become_visible_escapes(text, shown):
    assert printable(text) == shown


def test_long_text_is_cut_with_a_note():
    assert clean_text("y" * 10_000, 500) == "y" * 500 + "…(+9500 chars)"


def test_detail_is_bounded_in_every_direction():
    deep = {"a": {"b": {"c": {"d": {"e": "too deep"}}}}}
    assert clean_detail(deep, canonical_json)["a"]["b"]["c"]["d"] == "(nested too deep)"
    wide = clean_detail({"targets": [f"c{i}" for i in range(500)]}, canonical_json)
    assert len(wide["targets"]) == 65 and wide["targets"][-1] == "(+436 more)"
    huge = clean_detail({f"k{i}": ["z" * 500] * 64 for i in range(64)}, canonical_json)
    assert huge["omitted"] == "detail too large to keep" and len(huge["sha256"]) == 64
    odd = clean_detail({"nan": float("nan"), "raw": b"\x00\x01", "n": 3, "ok": True}, canonical_json)
    assert odd == {"n": 3, "nan": "nan", "ok": True, "raw": "0001"}


@pytest.mark.parametrize("start", ["=", "+", "-", "@", "\t", "\r"])
def test_csv_cells_that_could_run_as_formulas_are_neutralised(start):
    cell = csv_cell(f"{start}HYPERLINK(\"http://evil\")")
    assert cell.startswith("'") and not UNSAFE.search(cell)


def test_csv_leaves_ordinary_values_alone():
    assert [csv_cell(v) for v in (3, 0.5, "count", "refused (a-b)")] == [3, 0.5, "count", "refused (a-b)"]


@given(st.text(max_size=2000))
def test_no_input_text_survives_as_a_control_character(text):
    assert not UNSAFE.search(printable(text))
    assert not UNSAFE.search(clean_text(text))
    assert not csv_cell(text).startswith(("=", "+", "-", "@", "\t", "\r"))


@settings(max_examples=40, deadline=None)
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=700),
                    lambda kids: st.lists(kids, max_size=80) | st.dictionaries(st.text(max_size=80), kids,
                                                                             max_size=80),
                    max_leaves=300))
def test_any_detail_stores_as_bounded_printable_canonical_json(value):
    stored = canonical_json(clean_detail({"v": value}, canonical_json))
    assert len(stored.encode()) <= MAX_DETAIL_BYTES + 200
    assert not UNSAFE.search(stored)
