"""A real public clinical dataset loaded into a node through the real ingest path.

GBSG2 (German Breast Cancer Study Group 2; Schumacher et al. 1994, shipped with lifelines as
`lifelines.datasets.load_gbsg2`): 686 node-positive women, hormone therapy yes/no, age,
menopausal status, tumour size, grade, positive nodes, progesterone and oestrogen receptor in
fmol/mg protein, and recurrence-free survival in days (`cens` 1: recurrence or death).

The dataset holds durations, not dates: each row's dates are laid out from a fixed calendar
(surgery at a public offset per row, follow-up = surgery + time), so every duration is the
dataset's own, to the day. Column mapping (the breast-network extension carries the rest):

    horTh → hormone_therapy        tgrade I/II/III → grade 1/2/3     menostat → menopausal_status
    tsize → tumour_size_mm, pT      pnodes → positive_nodes, pN       estrec/progrec → er_fmol/pr_fmol
    er/pr status: ≥ 10 fmol/mg positive (the ligand-binding assays' cut-off)
    cens = 1 → recurrence_date = surgery + time;  cens = 0 → follow-up ends at surgery + time

`followup` says which date carries the censored patients' last follow-up: "assessment" (the
last_disease_assessment_date) or "vital_status" (only the vital_status_date, as in the extract
that lost every censored patient before the RFS fallback existed); `vs_source` how vital status
was followed ("active", or "passive": a linkage, which says nothing about recurrence).
"""

from __future__ import annotations

import csv
import datetime as dt
from pathlib import Path
from typing import Any

from oncofed import dictionary as dictmod

FIRST_SURGERY = dt.date(2012, 1, 9)
CUTOFF = "2025-12-31"
BREAST_EXTENSION = next(p for p in dictmod.bundled_extensions() if p.name.startswith("breast-network"))


def gbsg2_rows(followup: str = "assessment", vs_source: str = "active") -> list[dict[str, str]]:
    """GBSG2 as rows of the core dictionary plus the breast-network extension."""
    from lifelines.datasets import load_gbsg2

    rows = []
    for i, r in enumerate(load_gbsg2().itertuples(index=False), start=1):
        surgery = FIRST_SURGERY + dt.timedelta(days=2 * i)
        incidence = surgery - dt.timedelta(days=21)
        birth = incidence - dt.timedelta(days=365 * int(r.age) + int(r.age) // 4 + 100)
        end = surgery + dt.timedelta(days=int(r.time))
        rows.append({**_row(i, r, birth, incidence, surgery, end, followup), "vs_source": vs_source})
    return rows


def _row(i: int, r: Any, birth: dt.date, incidence: dt.date, surgery: dt.date, end: dt.date,
         followup: str) -> dict[str, str]:
    size, nodes = int(r.tsize), int(r.pnodes)
    event = int(r.cens) == 1
    return {
        "patient_id": f"GBSG2-{i:04d}", "tumour_id": f"GBSG2-T{i:04d}", "birth_date": birth.isoformat(),
        "tumour_seq": "1", "centre_role": "diagnosed_here", "sex": "2",
        "incidence_date": incidence.isoformat(), "incidence_date_precision": "day",
        "topography": "C50.9", "icdo_version": "3.2", "morphology": "8500", "behaviour": "3",
        "grade": {"I": "1", "II": "2", "III": "3"}[str(r.tgrade)], "basis_of_diagnosis": "7",
        "bod_scheme": "ENCR2022", "dco": "0", "laterality": "9", "tnm_edition": "8",
        "pT": "T1" if size <= 20 else "T2" if size <= 50 else "T3",
        "pN": "N0" if nodes == 0 else "N1" if nodes <= 3 else "N2" if nodes <= 9 else "N3", "cM": "M0",
        "er": "pos" if int(r.estrec) >= 10 else "neg", "pr": "pos" if int(r.progrec) >= 10 else "neg",
        "her2": "unknown", "surgery": "yes", "surgery_start_date": surgery.isoformat(),
        "hormone_therapy": str(r.horTh), "chemotherapy": "unknown", "radiotherapy": "unknown",
        "immunotherapy": "unknown", "vital_status": "alive", "vital_status_date": end.isoformat(),
        "vs_source": "active", "disease_free_after_treatment": "yes",
        "recurrence_date": end.isoformat() if event else "",
        "last_disease_assessment_date": end.isoformat() if followup == "assessment" else "",
        "tumour_size_mm": str(size), "positive_nodes": str(nodes),
        "menopausal_status": {"Pre": "pre", "Post": "post"}[str(r.menostat)],
        "er_fmol": str(int(r.estrec)), "pr_fmol": str(int(r.progrec)),
    }


def write_gbsg2(path: Path, followup: str = "assessment", vs_source: str = "active") -> Path:
    """The dataset as a centre's CSV file (the extension's columns included)."""
    d = dictmod.load(BREAST_EXTENSION)
    rows = gbsg2_rows(followup, vs_source)
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=d.input_columns, extrasaction="raise")
        w.writeheader()
        for row in rows:
            w.writerow({c: row.get(c, "") for c in d.input_columns})
    return path


def seeded_node(root: Path, centre: str, csv_path: Path, key_seed: str) -> Any:
    """A real node directory holding `csv_path`, whose perturbation and pseudonymisation keys are
    SHA-256(key_seed ‖ name) instead of random bytes — a row's record key is keyed by the first
    over its pseudonym, made with the second —, so a spread over perturbation keys is
    reproducible. The keys are made at run time, like every other secret of a test, and written
    with the node's own private-file rule before the ingest computes pseudonyms and record keys."""
    import hashlib

    from oncofed.keys.secrets import write_private_file
    from oncofed.node.config import PERTURBATION_KEY, PSEUDONYM_KEY
    from oncofed.node.node import init_node, open_node

    paths = init_node(root, centre, BREAST_EXTENSION)
    for name in (PERTURBATION_KEY, PSEUDONYM_KEY):
        key_file = paths.secret(name)
        key_file.unlink()
        write_private_file(key_file, hashlib.sha256(f"{key_seed}/{name}".encode()).digest())
    node = open_node(paths.root)
    node.ingest(csv_path)
    return node
