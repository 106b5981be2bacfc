"""TNM staging rules for synthetic tumours: stage groups from T, N, M and the TNM edition.

Apart from the site tables because they are logic, not data: each rule is a small decision tree
(UICC/AJCC anatomic stage groups, simplified but code-valid) that the generator evaluates once
per weighted (T, N, M) combination when it builds its joint tables, never in the per-row loop.
"""

from __future__ import annotations


def _rank(code: str) -> int | None:
    """The number in a T or N code (T2b -> 2), or None for X, a and is categories."""
    ch = code[1:2]
    return int(ch) if ch.isdigit() else None


def _breast(t: str, n: str, m: str, ed: int) -> str:
    if m.startswith("M1"):
        return "IV"
    if t == "Tis":
        return "0"
    tr, nr = _rank(t), _rank(n)
    if tr is None or nr is None:
        return ""
    if nr == 0:
        return {1: "IA", 2: "IIA", 3: "IIB", 4: "IIIB"}[tr]
    if n == "N1mi" and tr == 1:
        return "IB" if ed >= 7 else "IIA"
    if nr == 1:
        return {1: "IIA", 2: "IIB", 3: "IIIA", 4: "IIIB"}[tr]
    if nr == 2:
        return "IIIB" if tr == 4 else "IIIA"
    return "IIIC"


def _colorectal(t: str, n: str, m: str, ed: int) -> str:
    if m.startswith("M1"):
        if ed == 6 or m == "M1":
            return "IV"
        return {"M1a": "IVA", "M1b": "IVB", "M1c": "IVC"}[m]
    tr, nr = _rank(t), _rank(n)
    if tr is None or nr is None:
        return ""
    if nr == 0:
        if tr <= 2:
            return "I"
        if tr == 3:
            return "IIA"
        return "IIC" if (t == "T4b" and ed >= 7) else "IIB"
    if nr == 1:
        if tr <= 2:
            return "IIIA"
        return "IIIC" if t == "T4b" else "IIIB"
    if ed == 6:
        return "IIIC"
    return "IIIB" if tr <= 2 else "IIIC"


def _lung(t: str, n: str, m: str, ed: int) -> str:
    if m.startswith("M1"):
        if ed <= 7:
            return "IV"
        return "IVB" if m.startswith("M1c") else "IVA"
    tr, nr = _rank(t), _rank(n)
    if tr is None or nr is None:
        return ""
    if nr == 0:
        if tr == 1:
            if ed >= 8:
                return {"T1a": "IA1", "T1b": "IA2", "T1c": "IA3", "T1mi": "IA1"}.get(t, "IA")
            return "IA"
        if tr == 2:
            return "IIA" if (t == "T2b" and ed >= 7) else "IB"
        if tr == 3:
            return "IIB"
        return "IIIB" if ed == 6 else "IIIA"
    if nr == 1:
        if tr <= 2:
            if ed >= 8:
                return "IIB"
            return "IIB" if (t == "T2b" or (ed == 6 and tr == 2)) else "IIA"
        return "IIIB" if (ed == 6 and tr == 4) else "IIIA"
    if nr == 2:
        return "IIIA" if tr <= 2 or (tr == 3 and ed <= 7) else "IIIB"
    if ed >= 8 and tr >= 3:
        return "IIIC"
    return "IIIB"


def _prostate(t: str, n: str, m: str, ed: int) -> str:
    if m.startswith("M1"):
        return "IVB" if ed >= 8 else "IV"
    tr, nr = _rank(t), _rank(n)
    if tr is None or nr is None:
        return ""
    if nr >= 1:
        return "IVA" if ed >= 8 else "IV"
    if tr == 1 or t == "T2a":
        return "I"
    if tr == 2:
        return "II"
    if tr == 3:
        return "III"
    return "IIIB" if ed >= 8 else "IV"


def _melanoma(t: str, n: str, m: str, ed: int) -> str:
    if m.startswith("M1"):
        return "IV"
    tr, nr = _rank(t), _rank(n)
    if tr is None or nr is None:
        return ""
    if nr == 0:
        return {"T1a": "IA", "T1b": "IA" if ed >= 8 else "IB", "T2a": "IB", "T2b": "IIA",
                "T3a": "IIA", "T3b": "IIB", "T4a": "IIB", "T4b": "IIC", "T2": "IB",
                "T3": "IIA", "T4": "IIB"}.get(t, "II")
    if n in ("N2c", "N3") or n.startswith("N3") or t == "T4b":
        return "IIIC"
    if tr <= 2 and n in ("N1a", "N2a"):
        return "IIIA"
    return "IIIB"


def _generic(t: str, n: str, m: str, ed: int) -> str:
    if m.startswith("M1"):
        return "IV"
    tr, nr = _rank(t), _rank(n)
    if tr is None or nr is None:
        return ""
    if nr >= 1:
        return "III"
    return {0: "I", 1: "I", 2: "II", 3: "II", 4: "III"}[tr]


STAGE_GROUP = {
    "breast": _breast, "colorectal": _colorectal, "lung": _lung, "prostate": _prostate,
    "melanoma": _melanoma, "generic": _generic,
}


def coarse_t(t: str) -> str:
    """A clinical T is usually coarser than the pathological one (T1c -> T1)."""
    if t in ("TX", "Tis", "T0", "Ta") or t == "T1mi":
        return t
    return t[:2]


def coarse_n(n: str) -> str:
    """Clinical N without the pathological sub-category (N1a -> N1); micrometastases look N0."""
    if n in ("NX", "N0"):
        return n
    if n == "N1mi":
        return "N0"
    return n[:2]
