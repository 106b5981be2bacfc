"""crosstab — counts per cell of 1–3 categorical fields.

Vector: one count per cell, each field's codes then (missing), the last field fastest; flags
(centres, suppressed). Local step: the cohort grouped by the fields. Disclosure: every cell
cell-key perturbed; threshold mode withholds the whole table when any cell is 0 < n < k. DP: one
patient moves the table by at most L in total. Finaliser: the cells and one-way margins summed
from the interior cells (never separately released totals).
"""

from __future__ import annotations

import math
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from google.protobuf.message import Message

from oncofed.analyses import disclosure
from oncofed.analyses.base import Analysis, Reader, Release, Result, Rules
from oncofed.analyses.cells import EMPTY, RawCounts
from oncofed.dictionary import Dictionary
from oncofed.query.errors import invalid
from oncofed.query.values import categorical_field, levels_of
from oncofed.v1 import query_pb2 as pb


@dataclass(frozen=True)
class CrosstabSpec:
    """Counts per cell of 1–3 categorical fields; each field's codes then MISSING, last fastest."""

    kind = "crosstab"
    flags = ("centres", "suppressed")
    field_names: tuple[str, ...]
    levels: tuple[tuple[str, ...], ...]

    @property
    def n_values(self) -> int:
        return math.prod(len(lv) for lv in self.levels)

    def fields(self) -> tuple[str, ...]:
        return self.field_names

    def cell_labels(self) -> list[tuple[str, ...]]:
        cells: list[tuple[str, ...]] = [()]
        for lv in self.levels:
            cells = [(*c, x) for c in cells for x in lv]
        return cells


class Crosstab(Analysis[CrosstabSpec, RawCounts]):
    kind = "crosstab"

    def parse(self, msg: Message, d: Dictionary, allowed: Collection[str] | None, path: str) -> CrosstabSpec:
        assert isinstance(msg, pb.Crosstab)
        if not 1 <= len(msg.fields) <= 3:
            raise invalid(f"{path}.fields", f"a crosstab takes 1 to 3 fields, got {len(msg.fields)}")
        if len(set(msg.fields)) != len(msg.fields):
            raise invalid(f"{path}.fields", "a field is named twice")
        fs = [categorical_field(d, name, f"{path}.fields[{i}]", allowed) for i, name in enumerate(msg.fields)]
        return CrosstabSpec(field_names=tuple(f.name for f in fs), levels=tuple(levels_of(f) for f in fs))

    def local(self, spec: CrosstabSpec, reader: Reader, *, clamp: bool) -> RawCounts:
        sizes = [len(lv) for lv in spec.levels]
        cells = [EMPTY] * spec.n_values
        for values, cell in reader.groups(spec.field_names):
            pos = 0
            for value, size in zip(values, sizes, strict=True):
                pos = pos * size + (size - 1 if value is None or not 0 <= value < size - 1 else value)
            cells[pos] = cells[pos] + cell
        return RawCounts(cells)

    def total(self, raw: RawCounts) -> int:
        return raw.total

    def exact(self, spec: CrosstabSpec, raw: RawCounts) -> list[int]:
        return [c.n for c in raw.cells]

    def protect(self, spec: CrosstabSpec, raw: RawCounts, rules: Rules, meta: dict[str, Any]) -> Release:
        return disclosure.table(raw.cells, rules, meta)

    def plausible(self, spec: Any, values: list[int]) -> bool:
        return all(v >= 0 for v in values)            # counts

    def finalise(self, spec: CrosstabSpec, values: list[int], flags: dict[str, int]) -> Result:
        """Cells with their levels, and one-way margins summed from the interior cells."""
        labels = spec.cell_labels()
        margins: dict[str, dict[str, int]] = {f: dict.fromkeys(lv, 0)
                                              for f, lv in zip(spec.field_names, spec.levels, strict=True)}
        for cell, n in zip(labels, values, strict=True):
            for f, level in zip(spec.field_names, cell, strict=True):
                margins[f][level] += n
        cells = [{"levels": dict(zip(spec.field_names, cell, strict=True)), "count": n}
                 for cell, n in zip(labels, values, strict=True)]
        return {"fields": list(spec.field_names), "cells": cells, "margins": margins, "total": sum(values),
                "margins_definition": "sums of interior cells", "suppressed_centres": flags["suppressed"]}

    def table(self, result: Result) -> list[dict[str, Any]]:
        """One row per interior cell: its levels and count (margins are derived, not rows)."""
        return [{**cell["levels"], "count": cell["count"]} for cell in result["cells"]]

    def render(self, result: Result) -> list[str]:
        from oncofed.analyses.text import num

        fields = result["fields"]
        widths = [max(len(f), 9) for f in fields]
        lines = ["  " + "  ".join(f.ljust(w) for f, w in zip(fields, widths, strict=True)) + "  count"]
        for cell in result["cells"]:
            if cell["count"]:
                lv = cell["levels"]
                lines.append("  " + "  ".join(lv[f].ljust(w) for f, w in zip(fields, widths, strict=True))
                             + f"  {num(cell['count'])}")
        lines.append(f"  total {num(result['total'])}  (margins: {result['margins_definition']})")
        for f, m in result["margins"].items():
            lines.append(f"  {f}: " + ", ".join(f"{k} {num(v)}" for k, v in m.items() if v))
        return lines


ANALYSIS = Crosstab()
