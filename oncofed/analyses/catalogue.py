"""The one catalogue: the `Analysis` oneof member → the module that implements it.

Nothing else in oncofed switches on an analysis' kind: drivers look the analysis up here and call
its methods (oncofed.analyses.base). To add an analysis, write its module, add its proto message
to the oneof and its entry below; the catalogue test (tests/integration/test_catalogue.py) then
runs it through three real nodes and compares the federated result with the pooled rows.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any

from oncofed.analyses import (
    count,
    cox,
    cox_pooled,
    crosstab,
    fedavg,
    histogram,
    kaplan_meier,
    logistic,
    logrank,
    poisson,
    summary,
)
from oncofed.analyses.base import Analysis, Result, scalar_row
from oncofed.dictionary import Dictionary
from oncofed.query.errors import invalid
from oncofed.query.vector import decode, n_total
from oncofed.v1 import query_pb2 as pb

CATALOGUE: Mapping[str, Analysis[Any, Any]] = {
    m.ANALYSIS.kind: m.ANALYSIS for m in (count, crosstab, summary, histogram, kaplan_meier, logrank, logistic, cox,
                                           poisson, cox_pooled, fedavg)
}
KINDS = tuple(CATALOGUE)


def _oneof_members() -> tuple[str, ...]:
    return tuple(f.name for f in pb.Analysis.DESCRIPTOR.oneofs_by_name["kind"].fields)


def analysis(kind: str) -> Analysis[Any, Any]:
    """The analysis of catalogue name `kind` (KeyError when there is none)."""
    return CATALOGUE[kind]


def parse_analysis(a: pb.Analysis, d: Dictionary, allowed: Collection[str] | None = None) -> Any:
    """Check an analysis message against the dictionary (and the permit's fields) → its spec."""
    kind = a.WhichOneof("kind")
    if kind is None or kind not in CATALOGUE:
        raise invalid("analysis", f"no analysis given ({', '.join(KINDS[:-1])} or {KINDS[-1]})" if kind is None else
                      f"this release does not implement {kind!r}")
    return CATALOGUE[kind].parse(getattr(a, kind), d, allowed, f"analysis.{kind}")


def finalise(spec: Any, summed: Sequence[int], *, members: int | None = None) -> Result:
    """Decode the summed vector (values, then flags) and compute the analysis' statistic. With
    `members` (the participant set's size), refuse a sum no honest centres could have released:
    a centre count other than |S|, flags beyond |S|, values the analysis finds implausible."""
    if len(summed) != n_total(spec):
        raise invalid("answer", f"expected a vector of {n_total(spec)} values, got {len(summed)}")
    decoded = [decode(v) for v in summed]
    values, flag_values = decoded[:spec.n_values], decoded[spec.n_values:]
    flags = dict(zip(spec.flags, flag_values, strict=True))
    if members is not None and (flags["centres"] != members or any(not 0 <= f <= members for f in flag_values)
                                or not CATALOGUE[spec.kind].plausible(spec, values)):
        raise invalid("answer", "the summed answers are inconsistent (a centre sent a malformed or shifted "
                      "answer); nothing is finalised")
    head: Result = {"analysis": spec.kind, "centres": flags["centres"]}
    return {**head, **CATALOGUE[spec.kind].finalise(spec, values, flags)}


def finalise_query(body: pb.QueryBody, dictionary: Dictionary, summed: Sequence[int]) -> Result:
    """Finalise the summed vector of `body`'s analysis."""
    return finalise(parse_analysis(body.analysis, dictionary), summed)


def render(result: Result) -> str:
    """A finalised result as text for people (the CLI's default output; `--json` prints the dict)."""
    kind = str(result.get("analysis"))
    from oncofed.analyses.text import plural

    head = f"{kind}  ({plural(int(result.get('centres', 0)), 'centre')}"
    suppressed = result.get("suppressed_centres") or result.get("moments_withheld_centres") or 0
    head += f", {suppressed} suppressed)" if suppressed else ")"
    body = CATALOGUE[kind].render(result) if kind in CATALOGUE else [repr(result)]
    return "\n".join([head, *body])



def table(result: Result) -> list[dict[str, Any]]:
    """A finalised result as the rows of one table (CSV, `to_pandas`): its analysis' own table."""
    kind = str(result.get("analysis"))
    return CATALOGUE[kind].table(result) if kind in CATALOGUE else scalar_row(result)


assert set(KINDS) == set(_oneof_members()), "every Analysis oneof member needs a catalogue entry"
