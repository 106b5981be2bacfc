"""Shared fixtures: real node directories in tmp_path, real CSV files."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from oncofed import dictionary as dictmod

CORE = dictmod.load()


def valid_row(i: int = 1, **over: str) -> dict[str, str]:
    """One row that passes every rule; tests change one field to provoke one fault."""
    row = {c: "" for c in CORE.input_columns}
    row.update({
        "patient_id": f"PAT-{i:06d}", "tumour_id": f"TUM-{i:06d}", "birth_date": "1960-05-17",
        "tumour_seq": "1", "centre_role": "diagnosed_here", "sex": "2",
        "incidence_date": "2018-03-02", "incidence_date_precision": "day",
        "topography": "C50.4", "icdo_version": "3.2", "morphology": "8500", "behaviour": "3",
        "grade": "2", "basis_of_diagnosis": "7", "bod_scheme": "ENCR2022", "dco": "0",
        "laterality": "2", "tnm_edition": "8", "cT": "T2", "cN": "N1", "cM": "M0",
        "pT": "T2", "pN": "N1a", "pM": "", "stage_group": "IIB", "er": "pos", "pr": "pos",
        "her2": "neg", "surgery": "yes", "surgery_start_date": "2018-04-10",
        "residual_tumour": "R0", "chemotherapy": "yes", "chemotherapy_start_date": "2018-05-01",
        "radiotherapy": "no", "hormone_therapy": "yes", "hormone_therapy_start_date": "2018-10-01",
        "immunotherapy": "no", "vital_status": "alive", "vital_status_date": "2024-12-31",
        "vs_source": "active", "disease_free_after_treatment": "yes",
        "last_disease_assessment_date": "2024-11-30",
    })
    row.update(over)
    return row


def write_csv(path: Path, rows: list[dict[str, str]], columns: list[str] | None = None,
              delimiter: str = ",") -> Path:
    cols = columns or CORE.input_columns
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=cols, delimiter=delimiter, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    return path


@pytest.fixture
def node_dir(tmp_path: Path) -> Path:
    from oncofed.node.node import init_node

    return init_node(tmp_path / "node", "centre-test").root
