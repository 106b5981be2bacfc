"""The centre admin's own overview of the store: what was loaded, by site, stage, sex, year.

This is the admin looking at their own data on their own machine, so no disclosure control
applies; nothing here is ever sent to the federation (researchers get only query answers).
Coded fields carry their dictionary label beside the code, so "1 1,112" reads "male 1,112".
"""

from __future__ import annotations

import sqlite3
from typing import Any

from oncofed.dictionary import Dictionary
from oncofed.node.store.encoding import iso_of
from oncofed.node.store.schema import quote

MISSING = "(missing)"
#: The coded fields broken down, in the order the overview shows them.
BREAKDOWNS = (("by_stage", "stage_summary"), ("by_sex", "sex"), ("by_vital_status", "vital_status"),
              ("by_centre_role", "centre_role"))


def local_summary(conn: sqlite3.Connection, dictionary: Dictionary) -> dict[str, Any]:
    """Counts for the admin: totals, incidence range, median age, top sites, coded fields with
    labels, and tumours per incidence year."""
    total = conn.execute("SELECT count(*), count(DISTINCT patient_pid) FROM tumours").fetchone()
    first, last = conn.execute("SELECT min(incidence_date), max(incidence_date) FROM tumours").fetchone()
    ages = [r[0] for r in conn.execute(
        "SELECT age_at_incidence FROM tumours WHERE age_at_incidence IS NOT NULL "
        "ORDER BY age_at_incidence").fetchall()]
    median_age = None
    if ages:
        mid = len(ages) // 2
        median_age = ages[mid] if len(ages) % 2 else (ages[mid - 1] + ages[mid]) / 2
    out: dict[str, Any] = {
        "tumours": total[0],
        "patients": total[1],
        "incidence_from": iso_of(first) if first is not None else None,
        "incidence_to": iso_of(last) if last is not None else None,
        "median_age_at_incidence": median_age,
        "by_site": [{"value": site or MISSING, "label": site or MISSING, "tumours": n}
                    for site, n in conn.execute(
                        "SELECT substr(icd10, 1, 3) AS site, count(*) AS n FROM tumours "
                        "GROUP BY site ORDER BY n DESC, site LIMIT 10")],
    }
    for key, name in BREAKDOWNS:
        labels = dictionary.fields[name].codes
        col = quote(name)  # a dictionary field name, never user input
        rows = conn.execute(f"SELECT {col}, count(*) FROM tumours_labelled GROUP BY 1 ORDER BY 1").fetchall()
        order = list(labels)
        rows.sort(key=lambda r: order.index(r[0]) if r[0] in labels else len(order))
        out[key] = [{"value": code if code is not None else MISSING,
                     "label": labels.get(code, code) if code is not None else MISSING, "tumours": n}
                    for code, n in rows]
    out["by_year"] = [{"year": int(year) if year is not None else None, "tumours": n}
                      for year, n in conn.execute(
                          "SELECT CAST(strftime('%Y', incidence_date * 86400, 'unixepoch') AS INTEGER) AS y, "
                          "count(*) FROM tumours GROUP BY y ORDER BY y")]
    out["multiple_primaries"] = conn.execute("SELECT count(*) FROM tumours WHERE tumour_seq > 1").fetchone()[0]
    return out
