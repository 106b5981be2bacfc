"""count — the number of tumours in the cohort.

Vector: [n], flags (centres, suppressed). Local step: one cell over the cohort. Disclosure: the
cell cell-key perturbed (threshold mode: exact, withheld below k — `release` does that). DP: one
patient moves n by at most L. Finaliser: the summed count.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from google.protobuf.message import Message

from oncofed.analyses import disclosure
from oncofed.analyses.base import Analysis, Reader, Release, Result, Rules
from oncofed.analyses.cells import EMPTY, RawCounts
from oncofed.dictionary import Dictionary


@dataclass(frozen=True)
class CountSpec:
    """Number of tumours in the cohort."""

    kind = "count"
    flags = ("centres", "suppressed")

    @property
    def n_values(self) -> int:
        return 1

    def fields(self) -> tuple[str, ...]:
        return ()


class Count(Analysis[CountSpec, RawCounts]):
    kind = "count"

    def parse(self, msg: Message, d: Dictionary, allowed: Collection[str] | None, path: str) -> CountSpec:
        return CountSpec()

    def local(self, spec: CountSpec, reader: Reader, *, clamp: bool) -> RawCounts:
        cell = EMPTY
        for _, c in reader.groups(()):
            cell = cell + c
        return RawCounts([cell])

    def total(self, raw: RawCounts) -> int:
        return raw.total

    def exact(self, spec: CountSpec, raw: RawCounts) -> list[int]:
        return [c.n for c in raw.cells]

    def protect(self, spec: CountSpec, raw: RawCounts, rules: Rules, meta: dict[str, Any]) -> Release:
        return disclosure.table(raw.cells, rules, meta)

    def plausible(self, spec: Any, values: list[int]) -> bool:
        return all(v >= 0 for v in values)            # counts

    def finalise(self, spec: CountSpec, values: list[int], flags: dict[str, int]) -> Result:
        return {"count": values[0], "suppressed_centres": flags["suppressed"]}

    def render(self, result: Result) -> list[str]:
        from oncofed.analyses.text import num

        return [f"  count: {num(result['count'])}"]


ANALYSIS = Count()
