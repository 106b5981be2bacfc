"""histogram — counts per dictionary bin of a numeric field.

Vector: one count per bin [e_i, e_i+1) (values beyond the edges go to the end bins), then one for
missing values; flags (centres, suppressed). The bins come from the dictionary, never from the
data. Local step: the cohort grouped by the field's values, binned. Disclosure: every cell
cell-key perturbed (threshold mode: the table withheld whole when any cell is 0 < n < k). DP: one
patient moves the table by at most L. Finaliser: the bins with their edges.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from google.protobuf.message import Message

from oncofed.analyses import disclosure
from oncofed.analyses.base import Analysis, Reader, Release, Result, Rules, scalar_row
from oncofed.analyses.cells import EMPTY, RawCounts
from oncofed.dictionary import Dictionary
from oncofed.query.errors import invalid
from oncofed.query.values import numeric_field
from oncofed.v1 import query_pb2 as pb


@dataclass(frozen=True)
class HistogramSpec:
    """Counts per dictionary bin [e_i, e_i+1), then one cell for missing values."""

    kind = "histogram"
    flags = ("centres", "suppressed")
    field: str
    edges: tuple[int | float, ...]

    @property
    def n_values(self) -> int:
        return len(self.edges)

    def fields(self) -> tuple[str, ...]:
        return (self.field,)


def bin_of(edges: tuple[int | float, ...], x: float) -> int:
    """Index of the bin [e_i, e_i+1) holding x; values beyond the edges go to the end bins."""
    return min(max(bisect_right(edges, x) - 1, 0), len(edges) - 2)


class Histogram(Analysis[HistogramSpec, RawCounts]):
    kind = "histogram"

    def parse(self, msg: Message, d: Dictionary, allowed: Collection[str] | None, path: str) -> HistogramSpec:
        assert isinstance(msg, pb.Histogram)
        f = numeric_field(d, msg.field, f"{path}.field", allowed)
        if len(f.bins) < 2:
            raise invalid(f"{path}.field", f"field {f.name!r} has no bins in the dictionary "
                          "(histogram bins come from the dictionary, never from data)")
        return HistogramSpec(field=f.name, edges=tuple(f.bins))

    def local(self, spec: HistogramSpec, reader: Reader, *, clamp: bool) -> RawCounts:
        n_bins = len(spec.edges) - 1
        cells = [EMPTY] * (n_bins + 1)
        for (x,), cell in reader.groups((spec.field,)):
            i = n_bins if x is None else bin_of(spec.edges, x)
            cells[i] = cells[i] + cell
        return RawCounts(cells)

    def total(self, raw: RawCounts) -> int:
        return raw.total

    def exact(self, spec: HistogramSpec, raw: RawCounts) -> list[int]:
        return [c.n for c in raw.cells]

    def protect(self, spec: HistogramSpec, raw: RawCounts, rules: Rules, meta: dict[str, Any]) -> Release:
        return disclosure.table(raw.cells, rules, meta)

    def plausible(self, spec: Any, values: list[int]) -> bool:
        return all(v >= 0 for v in values)            # counts

    def finalise(self, spec: HistogramSpec, values: list[int], flags: dict[str, int]) -> Result:
        bins = [{"from": spec.edges[i], "to": spec.edges[i + 1], "count": values[i]}
                for i in range(len(spec.edges) - 1)]
        return {"field": spec.field, "bins": bins, "missing": values[-1], "total": sum(values),
                "bins_definition": "[from, to) from the dictionary; values beyond the edges in the end bins",
                "suppressed_centres": flags["suppressed"]}

    def table(self, result: Result) -> list[dict[str, Any]]:
        """One row per bin (from, to, count); the scalars when there are no bins."""
        return [dict(b) for b in result["bins"]] if result.get("bins") else scalar_row(result)

    def render(self, result: Result) -> list[str]:
        from oncofed.analyses.text import num

        lines = [f"  {result['field']}"]
        lines += [f"  [{b['from']}, {b['to']})".ljust(16) + num(b["count"]) for b in result["bins"]]
        lines.append("  missing".ljust(16) + num(result["missing"]))
        return lines


ANALYSIS = Histogram()
