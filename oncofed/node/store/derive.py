"""Fields the node derives from one row at ingest: ICD-10 and summary stage.

They are derived, never entered, so that every centre computes them the same way from the same
primary codes. Survival outcomes are NOT derived here: they depend on the query's cutoff date.
The ICD-O-3 -> ICD-10 conversion follows the usual rules (site from topography; melanoma of skin
C43, mesothelioma C45, Kaposi C46, haematological neoplasms from morphology; in situ D0x; benign
D36, uncertain D48) at category level; it is documented as a coarse conversion in docs/dictionary.md.
"""

from __future__ import annotations

from functools import lru_cache

# ICD-10 categories without a fourth character (written "C61", not "C61.9").
_THREE_CHAR = {1, 7, 12, 19, 20, 23, 33, 37, 52, 55, 56, 58, 61, 64, 65, 66, 73}
_IN_SITU = {50: "D05.9", 53: "D06.9", 44: "D04.9", 18: "D01.0", 19: "D01.1", 20: "D01.2",
            61: "D07.5", 67: "D09.0", 34: "D02.2"}


@lru_cache(maxsize=4096)
def icd10(topography: int, morphology: int, behaviour: str) -> str:
    """ICD-10 code for (topography as site*10+subsite, morphology, behaviour code)."""
    site, sub = divmod(topography, 10)
    melanoma = 8720 <= morphology <= 8790
    if behaviour == "2":
        if melanoma:
            return "D03.9"
        if site == 50 and morphology == 8500:
            return "D05.1"
        if site == 50 and morphology == 8520:
            return "D05.0"
        return _IN_SITU.get(site, "D09.9")
    if behaviour == "0":
        return "D36.9"
    if behaviour == "1":
        return "D48.9"
    if 9590 <= morphology <= 9992:
        return _haematological(morphology)
    if morphology == 9140:
        return "C46.9"
    if 9050 <= morphology <= 9055:
        return "C45.0" if topography == 384 else "C45.9"
    if melanoma and site == 44:
        return f"C43.{sub}"
    if site in _THREE_CHAR:
        return f"C{site:02d}"
    if site in (42, 77):  # haematopoietic system / lymph nodes as primary site without a lymphoma code
        return "C80.9"
    return f"C{site:02d}.{sub}"


def _haematological(m: int) -> str:
    if 9650 <= m <= 9667:
        return "C81.9"
    if 9690 <= m <= 9698:
        return "C82.9"
    if 9680 <= m <= 9688:
        return "C83.3"
    if 9700 <= m <= 9719:
        return "C84.9"
    if 9731 <= m <= 9734:
        return "C90.0" if m == 9732 else "C90.3"
    if 9820 <= m <= 9837:
        return "C91.9"
    if 9840 <= m <= 9931:
        return "C92.9"
    if 9950 <= m <= 9964:
        return "D47.1"
    if 9980 <= m <= 9989:
        return "D46.9"
    if 9800 <= m <= 9948:
        return "C95.9"
    return "C85.9"


@lru_cache(maxsize=8192)
def stage_summary(t: str, n: str, m: str, group: str) -> str:
    """Summary stage from T, N, M (pathological already preferred over clinical by the caller).

    distant if M1*, regional if node-positive, localised if T is known and N0 (M missing is read
    as M0, as registries record cM0 by default); with no TNM, stage group IV* means distant.
    """
    if m.startswith("M1"):
        return "distant"
    if n and n not in ("N0", "NX"):
        return "regional"
    if n == "N0" and t and t != "TX" and m in ("", "M0", "M0(i+)"):
        return "localised"
    if not (t or n or m) and group.startswith("IV"):
        return "distant"
    return "unknown"
