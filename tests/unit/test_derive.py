"""Derived fields and encodings, as pure functions."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from oncofed.node.store import derive, encoding


@pytest.mark.parametrize(
    ("topo", "morph", "beh", "expected"),
    [
        (504, 8500, "3", "C50.4"), (619, 8140, "3", "C61"), (341, 8070, "3", "C34.1"),
        (445, 8720, "3", "C43.5"), (445, 8090, "3", "C44.5"), (384, 9050, "3", "C45.0"),
        (504, 8500, "2", "D05.1"), (445, 8720, "2", "D03.9"), (779, 9680, "3", "C83.3"),
        (189, 8140, "3", "C18.9"), (209, 8140, "3", "C20"), (504, 8000, "0", "D36.9"),
    ],
)
def test_icd10_from_icdo3(topo, morph, beh, expected):
    assert derive.icd10(topo, morph, beh) == expected


@pytest.mark.parametrize(
    ("t", "n", "m", "g", "expected"),
    [
        ("T2", "N0", "M0", "", "localised"), ("T2", "N0", "", "", "localised"),
        ("T1", "N1a", "M0", "", "regional"), ("T4", "N3", "M1b", "", "distant"),
        ("TX", "N0", "M0", "", "unknown"), ("", "", "", "IVB", "distant"), ("", "", "", "II", "unknown"),
        ("T1", "N1mi", "M0", "", "regional"), ("T2", "NX", "M0", "", "unknown"),
    ],
)
def test_stage_summary(t, n, m, g, expected):
    assert derive.stage_summary(t, n, m, g) == expected


@given(st.dates(min_value=dt.date(1900, 1, 1), max_value=dt.date(2100, 12, 31)))
def test_day_numbers_round_trip(d):
    assert encoding.date_of(encoding.day_number(d)) == d


def test_date_table_checks_calendar_and_range():
    table = encoding.date_table("2000-01-01", "2000-12-31")
    assert table["2000-02-29"] == encoding.day_number(dt.date(2000, 2, 29))
    assert "2000-02-30" not in table and "1999-12-31" not in table and "2001-01-01" not in table
    assert len(table) == 366


@given(st.integers(0, 80), st.integers(0, 9))
def test_topography_round_trip(site, sub):
    code = f"C{site:02d}.{sub}"
    assert encoding.topography_text(encoding.topography_code(code)) == code
