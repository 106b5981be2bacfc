"""The centre admin's own overview of the store: what was loaded, by site, stage and year.

This is the admin looking at their own data on their own machine, so no disclosure control
applies; nothing here is ever sent to the federation (researchers get only query answers).
"""

from __future__ import annotations

import sqlite3
from typing import Any

from oncofed.node.store.encoding import iso_of


def local_summary(conn: sqlite3.Connection) -> dict[str, Any]:
    def pairs(sql: str) -> list[list[Any]]:
        return [list(r) for r in conn.execute(sql).fetchall()]

    total = conn.execute("SELECT count(*), count(DISTINCT patient_pid) FROM tumours").fetchone()
    first, last = conn.execute("SELECT min(incidence_date), max(incidence_date) FROM tumours").fetchone()
    ages = [r[0] for r in conn.execute(
        "SELECT age_at_incidence FROM tumours ORDER BY age_at_incidence").fetchall()]
    median_age = None
    if ages:
        mid = len(ages) // 2
        median_age = ages[mid] if len(ages) % 2 else (ages[mid - 1] + ages[mid]) / 2
    return {
        "tumours": total[0],
        "patients": total[1],
        "incidence_from": iso_of(first) if first is not None else None,
        "incidence_to": iso_of(last) if last is not None else None,
        "median_age_at_incidence": median_age,
        "by_site": pairs(
            "SELECT substr(icd10, 1, 3) AS site, count(*) AS n FROM tumours "
            "GROUP BY site ORDER BY n DESC, site LIMIT 10"
        ),
        "by_stage": pairs(
            "SELECT stage_summary, count(*) FROM tumours_labelled GROUP BY 1 ORDER BY 2 DESC"
        ),
        "by_sex": pairs("SELECT sex, count(*) FROM tumours_labelled GROUP BY 1 ORDER BY 1"),
        "by_vital_status": pairs("SELECT vital_status, count(*) FROM tumours_labelled GROUP BY 1 ORDER BY 2 DESC"),
        "by_centre_role": pairs("SELECT centre_role, count(*) FROM tumours_labelled GROUP BY 1 ORDER BY 2 DESC"),
        "multiple_primaries": conn.execute("SELECT count(*) FROM tumours WHERE tumour_seq > 1").fetchone()[0],
    }
