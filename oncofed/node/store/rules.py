"""Rules that span fields of one row, and the fields derived from a row, on encoded columns.

They run column-wise on a whole batch (integers from encoding.py), so a rule is one pass over a
few columns; only failing rows are turned into messages. Each message names the line and the
column to fix, never an identifier or the birth date.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from oncofed.node.store import derive
from oncofed.node.store.encoding import MISSING, date_table

if TYPE_CHECKING:
    from oncofed.node.store.ingest import Ingestor

Add = Callable[[int, str, str], None]
M = MISSING
TNM_FIELDS = ("cT", "cN", "cM", "pT", "pN", "pM", "stage_group")
TREATMENTS = ("surgery", "chemotherapy", "radiotherapy", "hormone_therapy", "immunotherapy")


@lru_cache(maxsize=2)
def _calendar(first: str, last: str) -> tuple[int, list[int], list[int]]:
    """(first day number, year of each day, month*100+day of each day) for fast ages."""
    table = date_table(first, last)
    years = [int(s[:4]) for s in table]
    mmdd = [int(s[5:7]) * 100 + int(s[8:10]) for s in table]
    return next(iter(table.values())), years, mmdd


def _dates(ing: Ingestor) -> list[str]:
    return [f.name for f in ing.d.input_fields if f.type == "date" and f.name != "birth_date"]


def check_rows(ing: Ingestor, enc: dict[str, Sequence[Any]], raw: dict[str, Sequence[str]],
               add: Add, line_of: Callable[[int], int], n: int) -> None:
    """Report every cross-field fault of the batch through `add(line, column, reason)`."""
    o = ing._ordinals
    col = {f.name: f.column for f in ing.d.fields.values()}
    birth, inc = enc["birth_date"], enc["incidence_date"]

    def report(rows: list[int], field: str, reason: str) -> None:
        for i in rows:
            add(line_of(i), col.get(field, field), reason)

    after_incidence = [n for n in ("death_date", "vital_status_date", "recurrence_date",
                                   "last_disease_assessment_date", *(f"{t}_start_date" for t in TREATMENTS))
                       if n in enc]
    # A date checked to be on or after the incidence date cannot be before birth once the
    # incidence date is not: only the other dates need their own birth check.
    for name in [n for n in _dates(ing) if n not in after_incidence]:
        values = enc[name]
        report([i for i, (x, b) in enumerate(zip(values, birth, strict=True)) if x != M and b != M and x < b],
               name, "is before birth_date")
    for name in after_incidence:
        values = enc[name]
        report([i for i, (x, s) in enumerate(zip(values, inc, strict=True)) if x != M and s != M and x < s],
               name, "is before incidence_date")

    first, years, mmdd = _calendar(ing.d.earliest_date, ing.today.isoformat())
    ages = [
        (years[s - first] - years[b - first] - (mmdd[s - first] < mmdd[b - first])) if s != M and b != M else M
        for s, b in zip(inc, birth, strict=True)
    ]
    report([i for i, a in enumerate(ages) if a != M and a > 120], "incidence_date",
           "gives an age at incidence over 120 years")
    enc["age_at_incidence"] = ages

    dead = o["vital_status"]["dead"]
    death = enc["death_date"]
    report([i for i, (v, d) in enumerate(zip(enc["vital_status"], death, strict=True)) if v == dead and d == M],
           "death_date", "is required when vital_status is dead")
    report([i for i, (v, d) in enumerate(zip(enc["vital_status"], death, strict=True))
            if v != dead and v != M and d != M],
           "death_date", "is given but vital_status is not dead")

    bod0 = o["basis_of_diagnosis"]["0"]
    report([i for i, (d, b) in enumerate(zip(enc["dco"], enc["basis_of_diagnosis"], strict=True))
            if d != M and b != M and (d == 1) != (b == bod0)],
           "dco", "must be 1 exactly when basis_of_diagnosis is 0 (death certificate only)")
    allowed = _bod_allowed(ing)
    report([i for i, (b, s) in enumerate(zip(enc["basis_of_diagnosis"], enc["bod_scheme"], strict=True))
            if b != M and s != M and b not in allowed[s]],
           "basis_of_diagnosis", "does not exist in the stated bod_scheme")

    referred = o["centre_role"]["referred"]
    report([i for i, (r, c) in enumerate(zip(enc["centre_role"], enc["first_contact_date"], strict=True))
            if r == referred and c == M],
           "first_contact_date", "is required when centre_role is referred")

    edition = enc["tnm_edition"]
    nothing = (M,) * len(TNM_FIELDS)
    tnm_rows = zip(*(enc[f] for f in TNM_FIELDS), strict=True)
    report([i for i, (t, e) in enumerate(zip(tnm_rows, edition, strict=True)) if e == M and t != nothing],
           "tnm_edition",
           "is required when T, N, M or stage_group is given")
    for name, invalid in _tnm_invalid(ing).items():
        report([i for i, (c, e) in enumerate(zip(enc[name], edition, strict=True)) if (c, e) in invalid],
               name, "does not exist in the stated tnm_edition")
    morph_invalid = _icdo_invalid(ing)
    report([i for i, (m, v) in enumerate(zip(enc["morphology"], enc["icdo_version"], strict=True))
            if (m, v) in morph_invalid],
           "morphology", "does not exist in the stated icdo_version")

    yes = o["surgery"]["yes"]
    for t in TREATMENTS:
        starts = enc[f"{t}_start_date"]
        report([i for i, (g, d) in enumerate(zip(enc[t], starts, strict=True)) if d != M and g != yes],
               f"{t}_start_date", f"is given but {t} is not yes")


def derive_fields(ing: Ingestor, enc: dict[str, Sequence[Any]], raw: dict[str, Sequence[str]],
                  n: int) -> dict[str, list[Any]]:
    """birth_year, age_at_incidence, icd10 and stage_summary for every row of the batch."""
    first, years, _ = _calendar(ing.d.earliest_date, ing.today.isoformat())
    labels = ing._labels
    behaviour = labels["behaviour"]
    icd = [
        derive.icd10(t, m, behaviour.get(b, "")) if t != M and m != M else ""
        for t, m, b in zip(enc["topography"], enc["morphology"], enc["behaviour"], strict=True)
    ]
    stage_ord = ing._ordinals["stage_summary"]
    cache: dict[tuple[int, ...], int] = {}
    t_lab, n_lab, m_lab, g_lab = labels["cT"], labels["cN"], labels["cM"], labels["stage_group"]
    stages = []
    for key in zip(*(enc[f] for f in TNM_FIELDS), strict=True):
        got = cache.get(key)
        if got is None:
            ct, cn, cm, pt, pn, pm, g = key
            got = stage_ord[derive.stage_summary(
                t_lab.get(pt if pt != M else ct, ""), n_lab.get(pn if pn != M else cn, ""),
                m_lab.get(pm if pm != M else cm, ""), g_lab.get(g, ""),
            )]
            cache[key] = got
        stages.append(got)
    return {
        "birth_year": [years[b - first] if b != M else M for b in enc["birth_date"]],
        "age_at_incidence": list(enc["age_at_incidence"]),
        "icd10": icd,
        "stage_summary": stages,
    }


def _bod_allowed(ing: Ingestor) -> dict[int, frozenset[int]]:
    o = ing._ordinals
    return {
        o["bod_scheme"][scheme]: frozenset(o["basis_of_diagnosis"][c] for c in codes)
        for scheme, codes in ing.d.bod_schemes.items()
    }


def _tnm_invalid(ing: Ingestor) -> dict[str, frozenset[tuple[int, int]]]:
    """Per TNM field, the (code, edition) ordinal pairs the edition does not define."""
    o = ing._ordinals
    editions = o["tnm_edition"]
    out: dict[str, frozenset[tuple[int, int]]] = {}
    for name in TNM_FIELDS:
        pairs = set()
        for code, ordinal in o[name].items():
            since, until = ing.d.tnm_since.get(code), ing.d.tnm_until.get(code)
            for ed, ed_ord in editions.items():
                if (since is not None and int(ed) < since) or (until is not None and int(ed) > until):
                    pairs.add((ordinal, ed_ord))
        out[name] = frozenset(pairs)
    return out


def _icdo_invalid(ing: Ingestor) -> frozenset[tuple[int, int]]:
    versions = ing._ordinals["icdo_version"]
    return frozenset(
        (int(morph), v_ord)
        for morph, since in ing.d.icdo_since.items()
        for version, v_ord in versions.items()
        if version < since
    )


__all__ = ["check_rows", "derive_fields"]
