"""Comparing a finalised federated result with its pooled reference, shared by the end-to-end
tests: one definition of "equal" for every analysis (DESIGN: exact for integers, within 1e-9
relative for reals), so the catalogue test and the federation test cannot drift apart."""

from __future__ import annotations

import math
from typing import Any

import pytest


def assert_close(a: Any, b: Any, path: str = "result") -> None:
    """Integers (and everything else) equal; reals within 1e-9 relative; the first difference is
    named by its path in the result (`result.curves.1.points[3].survival`)."""
    if isinstance(a, float) or isinstance(b, float):
        assert isinstance(a, int | float) and isinstance(b, int | float), path
        if math.isnan(a) or math.isnan(b):
            assert math.isnan(a) and math.isnan(b), path
        else:
            assert a == pytest.approx(b, rel=1e-9, abs=1e-12), f"{path}: {a} != {b}"
    elif isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), f"{path}: keys {sorted(a)} != {sorted(b)}"
        for k in a:
            assert_close(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_close(x, y, f"{path}[{i}]")
    else:
        assert a == b, f"{path}: {a!r} != {b!r}"
