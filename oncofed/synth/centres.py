"""Centre profiles: what makes one synthetic centre's data differ from another's.

Apart from the site tables because a profile is drawn per centre from its own seeded stream
(case mix, completeness, follow-up habits, coding transitions), while the site figures are
fixed. Centre 0 is always the comprehensive cancer centre so small runs still contain one.
"""

from __future__ import annotations

from dataclasses import dataclass
from random import Random

from oncofed.synth.model import SITES


@dataclass(frozen=True)
class CentreProfile:
    """What makes one centre's data different from another's (case mix, follow-up, coding)."""

    index: int
    letter: str
    kind: str                                  # "comprehensive" or "district"
    site_weights: tuple[float, ...]            # aligned with SITES
    stage_mult: tuple[float, float, float, float]
    p_referred: float
    p_followup_only: float
    vs_weights: tuple[float, float, float]     # active, passive, both
    linkage_lag_days: int
    followup_mean_years: float
    p_treatment_unknown: float
    hazard_mult: float
    age_shift: float
    p_dco: float
    p_second_primary: float
    encr2022_from: int
    icdo32_from: int
    icdo30_share: float
    tnm8_from: int
    tnm9_lung_from: int


def centre_letter(index: int) -> str:
    """Centre 0 is A, 1 is B, ... (at most 26 centres)."""
    return chr(ord("A") + index)


def centre_profile(index: int, rng: Random) -> CentreProfile:
    """Centre 0 is a comprehensive cancer centre; every other one a district hospital whose
    case mix, completeness and follow-up vary with its own seeded draws."""
    u = rng.uniform
    if index == 0:
        mult = {"breast": 0.9, "colorectal": 0.85, "prostate": 0.8, "lung": 1.3, "melanoma": 1.2,
                "pancreas": 1.6, "kidney": 1.3, "bladder": 0.9, "stomach": 1.5, "ovary": 1.8,
                "sarcoma": 5.0}
        weights = tuple(s.share * mult[s.key] for s in SITES)
        return CentreProfile(
            index=index, letter=centre_letter(index), kind="comprehensive",
            site_weights=weights, stage_mult=(0.85, 1.15, 1.5, 0.5),
            p_referred=0.20, p_followup_only=0.01, vs_weights=(0.35, 0.10, 0.55),
            linkage_lag_days=int(u(60, 120)), followup_mean_years=10.0,
            p_treatment_unknown=0.01, hazard_mult=0.95, age_shift=-3.0, p_dco=0.004,
            p_second_primary=0.075, encr2022_from=2022, icdo32_from=2020, icdo30_share=0.2,
            tnm8_from=2018, tnm9_lung_from=2025,
        )
    weights = tuple(s.share * u(0.8, 1.25) * (0.6 if s.rare else 1.0) for s in SITES)
    passive = u(0.45, 0.75)
    active = u(0.05, 0.25)
    return CentreProfile(
        index=index, letter=centre_letter(index), kind="district",
        site_weights=weights, stage_mult=(1.0, u(0.9, 1.05), u(0.8, 1.05), u(0.8, 2.2)),
        p_referred=u(0.08, 0.14), p_followup_only=u(0.01, 0.03),
        vs_weights=(active, passive, max(0.0, 1.0 - active - passive)),
        linkage_lag_days=int(u(120, 400)), followup_mean_years=u(3.0, 5.0),
        p_treatment_unknown=u(0.02, 0.06), hazard_mult=u(0.97, 1.1), age_shift=u(0.0, 2.0),
        p_dco=u(0.008, 0.016), p_second_primary=u(0.06, 0.075),
        encr2022_from=2022 + int(u(1, 4)), icdo32_from=2021 + int(u(0, 3)),
        icdo30_share=u(0.3, 0.7), tnm8_from=2018 + int(u(0, 2)), tnm9_lung_from=9999,
    )
