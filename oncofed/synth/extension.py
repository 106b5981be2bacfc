"""Breast-network extension fields: tumour size, nodes, menopause, receptor percentages, Ki-67,
receptor content in fmol/mg protein.

A layer of `CentreGenerator` (see `state`), used only when the dictionary has the extension's
columns. Kept apart because it is optional and site-specific: values are drawn to agree with the
tumour's T, pN, receptor status and the patient's age, so an extension never contradicts the core.
Receptor content by ligand-binding assay is recorded for about 30 % of breast tumours with a
known status (labs that still quantify it), ≥ 10 fmol/mg exactly when the status is positive or
low, right-skewed as in the GBSG2 trial (positive: median ≈ 110, up to ≈ 800 fmol/mg); it is drawn
from a stream of its own (`fr`), so adding it changed no other value of the generated files.
"""

from __future__ import annotations

from typing import Any

from oncofed.synth.state import EXT_COLUMNS, CentreState, Tumour


class ExtensionDraws(CentreState):
    """Draws the extension columns of one row (blank for non-breast tumours)."""

    def _extension(self, t: Tumour, sex: str, age: float) -> list[str]:
        """Breast-network fields, consistent with T, pN, receptors and age; other sites blank."""
        if not t.is_breast:
            return [""] * len(EXT_COLUMNS)
        r = self.r
        size = ""
        if t.ed and t.stage < 3 and not t.insitu and r() >= 0.03:
            lo, hi = _SIZE_MM.get(t.T, (0, 0))
            if hi:
                size = str(lo + int(r() * (hi - lo + 1)))
        pos = examined = ""
        pn = t.tnm[5]
        if pn:
            lo, hi, extra_lo, extra_hi = _NODES["N1mi" if pn == "N1mi" else pn[:2]]
            k = lo + int(r() * (hi - lo + 1))
            pos = str(k)
            examined = str(min(99, k + extra_lo + int(r() * (extra_hi - extra_lo + 1))))
        if sex != "2":
            meno = ""
        else:
            x = r()
            if x < 0.05:
                meno = "unknown"
            elif age < 45:
                meno = "pre"
            elif age < 55:
                meno = "pre" if x < 0.38 else "peri" if x < 0.62 else "post"
            else:
                meno = "post"
        er_p = _percent(t.er, r)
        pr_p = _percent(t.pr, r)
        if t.insitu or r() < 0.08:
            ki = ""
        elif t.er in ("pos", "low"):
            ki = str(5 + int(r() * r() * 60))
        else:
            ki = str(20 + int(r() * 76))
        er_f = _fmol(t.er, self.fr)
        pr_f = _fmol(t.pr, self.fr)
        return [size, pos, examined, meno, er_p, pr_p, ki, er_f, pr_f]


# Largest invasive diameter (mm) consistent with each breast T category.
_SIZE_MM = {
    "T1mi": (1, 1), "T1a": (2, 5), "T1b": (6, 10), "T1c": (11, 20), "T1": (1, 20),
    "T2": (21, 50), "T3": (51, 120), "T4": (10, 150), "T4a": (10, 150), "T4b": (10, 150),
    "T4c": (10, 150), "T4d": (10, 150),
}
# pN -> positive nodes (lo, hi) and additional nodes examined (lo, hi).
_NODES = {
    "N0": (0, 0, 1, 5), "N1mi": (1, 1, 1, 5), "N1": (1, 3, 5, 15), "N2": (4, 9, 3, 15),
    "N3": (10, 25, 2, 12),
}


def _percent(status: str, r: Any) -> str:
    """Receptor percentage of stained cells, consistent with the status: >=1 iff pos or low."""
    if status == "pos":
        return str(100 - int(r() * r() * 90))   # 11..100, mostly high
    if status == "low":
        return str(1 + int(r() * 10))           # 1..10
    if status == "neg":
        return "0"
    return ""


FMOL_RECORDED = 0.3
FMOL_POSITIVE = 10          # the ligand-binding assays' positivity cut-off, fmol/mg protein


def _fmol(status: str, r: Any) -> str:
    """Receptor content (fmol/mg protein) consistent with the status, for some tumours only."""
    if status not in ("pos", "low", "neg") or r() >= FMOL_RECORDED:
        return ""
    if status == "pos":
        return str(FMOL_POSITIVE + int(800 * r() ** 3))   # 10..809, median ≈ 110
    if status == "low":
        return str(FMOL_POSITIVE + int(20 * r()))          # 10..29
    return str(int(FMOL_POSITIVE * r() ** 2))              # 0..9, mostly low
