"""Public datasets mapped onto registry rows, for the regression exactness tests.

A dataset row becomes one primary tumour: diagnosed here on an incidence date, a survival time
T (days) as a death on incidence + T (event) or as alive with a vital-status date of
incidence + T (censored, active follow-up), so the node derives OS = T exactly; covariates go
into the core's age and sex or the test extension's fields (tests/data/regression-test-1.0.toml).
Rows are split across centres by a column, then ingested into real nodes through real ingest.
"""

from __future__ import annotations

import csv
import datetime as dt
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

EXTENSION = Path(__file__).resolve().parent.parent / "data" / "regression-test-1.0.toml"
ORIGIN = dt.date(2012, 1, 1)
CUTOFF = "2025-12-31"
REQUIRED = ["patient_id", "tumour_id", "birth_date", "tumour_seq", "centre_role", "first_contact_date", "sex",
            "incidence_date", "incidence_date_precision", "topography", "icdo_version", "morphology", "behaviour",
            "basis_of_diagnosis", "bod_scheme", "dco", "vital_status", "vital_status_date", "vs_source",
            "death_date"]
EXT_FIELDS = ["x1", "x2", "x3", "x4", "x5", "h1", "h2", "s1", "w1", "k1", "k2",
    "b1", "b2", "b3", "b4", "b5", "b6", "c1", "c2"]


def registry_rows(records: Sequence[Mapping[str, Any]], *, prefix: str, time: str | None = None,
                  event: str | None = None, mapping: Mapping[str, str], age: str | None = None,
                  sex: str | None = None, entry: str | None = None) -> list[dict[str, str]]:
    """One registry row per record. `mapping` sends dataset columns to extension fields
    (None/NaN → empty, i.e. missing); `age` to age at incidence (whole years, via the birth date);
    `sex` (1/2) to sex; `entry` (days after incidence) to a first contact of a referred tumour."""
    out = []
    for i, r in enumerate(records):
        days = int(r[time]) if time else 365
        dead = bool(int(r[event])) if event else False
        inc = ORIGIN + dt.timedelta(days=i % 97)           # incidence dates spread, times unchanged
        years = int(r[age]) if age else 60
        day = 28 if (inc.month, inc.day) == (2, 29) else inc.day
        birth = dt.date(inc.year - years, inc.month, day)     # completed years at incidence = years
        end = inc + dt.timedelta(days=days)
        row = {"patient_id": f"{prefix}-P{i:06d}", "tumour_id": f"{prefix}-T{i:06d}", "birth_date": birth.isoformat(),
               "tumour_seq": "1", "centre_role": "diagnosed_here", "first_contact_date": "",
               "sex": str(int(r[sex])) if sex else "2", "incidence_date": inc.isoformat(),
               "incidence_date_precision": "day", "topography": "C34.1", "icdo_version": "3.1",
               "morphology": "8140", "behaviour": "3", "basis_of_diagnosis": "7", "bod_scheme": "ENCR1999",
               "dco": "0", "vital_status": "dead" if dead else "alive", "vital_status_date": end.isoformat(),
               "vs_source": "active", "death_date": end.isoformat() if dead else ""}
        if entry is not None and r.get(entry):
            row["centre_role"] = "referred"
            row["first_contact_date"] = (inc + dt.timedelta(days=int(r[entry]))).isoformat()
        for column, fieldname in mapping.items():
            v = r[column]
            row[fieldname] = "" if v is None or v != v else _text(v)
        out.append(row)
    return out


def _text(v: Any) -> str:
    if isinstance(v, bool):
        return "1" if v else "0"
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def write_csv(rows: Sequence[Mapping[str, str]], path: Path) -> Path:
    columns = REQUIRED + EXT_FIELDS
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=columns)
        w.writeheader()
        for r in rows:
            w.writerow({c: r.get(c, "") for c in columns})
    return path
