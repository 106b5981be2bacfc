"""The epidemiology behind `oncofed synth`: tumour sites, their stage mixes, survival and coding.

Kept as plain data apart from the row generator so the figures can be read and checked against
the public registry figures they approximate (shared FACTS, "Plausible synthetic data") without
wading through the hot loop. Nothing here is clinical truth: it only has to be plausible enough
that federated statistics on synthetic centres look like statistics on real ones. The staging
rules that turn these T/N/M codes into stage groups live in `staging`, the centres in `centres`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

Weighted = tuple[tuple[str, float], ...]

# Stage indices used throughout the generator.
LOCALISED, REGIONAL, DISTANT, UNKNOWN = 0, 1, 2, 3

# Treatment probabilities per stage: (surgery, chemotherapy, radiotherapy, hormone, immuno/targeted).
Treat = tuple[float, float, float, float, float]


@dataclass(frozen=True)
class Site:
    """One tumour site with the figures that make its synthetic cases look like real ones."""

    key: str
    share: float                      # relative share of new cases (EU)
    rare: bool                        # concentrated in comprehensive cancer centres
    p_male: float
    age_median: float
    age_sd: float
    stage_mix: tuple[float, float, float, float]   # localised, regional, distant, unknown
    surv5: tuple[float, float, float, float]       # 5-year relative survival by stage
    topography: Weighted
    morphology: Weighted
    grade: Weighted
    paired: bool
    family: str                       # staging rules: breast, colorectal, lung, prostate, ...
    t_codes: tuple[Weighted, Weighted, Weighted]   # T by stage (localised, regional, distant)
    n_codes: tuple[Weighted, Weighted]             # N for regional and distant stage
    m_codes: Mapping[int, Weighted]                # M for distant stage, by TNM edition
    treatment: tuple[Treat, Treat, Treat, Treat]   # by stage incl. unknown
    bod_cytology: float = 0.02        # share of cytology / clinical-investigation diagnoses
    immuno_recent: bool = False       # immuno/targeted therapy mostly after 2015


_M1: dict[int, Weighted] = {6: (("M1", 1.0),), 7: (("M1", 1.0),), 8: (("M1", 1.0),), 9: (("M1", 1.0),)}
_M1ABC: dict[int, Weighted] = {e: (("M1a", 0.25), ("M1b", 0.25), ("M1c", 0.5)) for e in (6, 7, 8, 9)}

SITES: tuple[Site, ...] = (
    Site(
        key="breast", share=13.0, rare=False, p_male=0.01, age_median=62, age_sd=13,
        stage_mix=(0.64, 0.27, 0.06, 0.03), surv5=(0.99, 0.86, 0.31, 0.70),
        topography=(("C50.0", 2), ("C50.1", 5), ("C50.2", 12), ("C50.3", 6), ("C50.4", 35),
                    ("C50.5", 8), ("C50.6", 1), ("C50.8", 20), ("C50.9", 11)),
        morphology=(("8500", 78), ("8520", 12), ("8522", 4), ("8480", 2), ("8211", 2),
                    ("8530", 2)),
        grade=(("1", 18), ("2", 45), ("3", 32), ("9", 5)), paired=True, family="breast",
        t_codes=(
            (("T1mi", 2), ("T1a", 5), ("T1b", 15), ("T1c", 40), ("T2", 33), ("T3", 5)),
            (("T1b", 4), ("T1c", 25), ("T2", 51), ("T3", 12), ("T4b", 6), ("T4d", 2)),
            (("T1c", 10), ("T2", 35), ("T3", 20), ("T4b", 20), ("T4d", 5), ("TX", 10)),
        ),
        n_codes=(
            (("N1mi", 8), ("N1", 25), ("N1a", 25), ("N2", 7), ("N2a", 15), ("N3", 5), ("N3a", 15)),
            (("N0", 30), ("N1", 35), ("N2", 20), ("N3", 15)),
        ),
        m_codes=_M1,
        treatment=((0.97, 0.30, 0.75, 0.0, 0.0), (0.92, 0.75, 0.80, 0.0, 0.0),
                   (0.15, 0.60, 0.30, 0.0, 0.0), (0.60, 0.30, 0.40, 0.0, 0.0)),
    ),
    Site(
        key="colorectal", share=13.0, rare=False, p_male=0.55, age_median=70, age_sd=11,
        stage_mix=(0.36, 0.37, 0.22, 0.05), surv5=(0.91, 0.73, 0.13, 0.50),
        topography=(("C18.0", 12), ("C18.2", 10), ("C18.3", 3), ("C18.4", 5), ("C18.5", 2),
                    ("C18.6", 3), ("C18.7", 22), ("C18.9", 3), ("C19.9", 10), ("C20.9", 30)),
        morphology=(("8140", 85), ("8480", 10), ("8490", 3), ("8263", 2)),
        grade=(("1", 10), ("2", 68), ("3", 15), ("9", 7)), paired=False, family="colorectal",
        t_codes=(
            (("T1", 20), ("T2", 30), ("T3", 42), ("T4a", 6), ("T4b", 2)),
            (("T1", 3), ("T2", 9), ("T3", 60), ("T4a", 20), ("T4b", 8)),
            (("T2", 5), ("T3", 50), ("T4a", 28), ("T4b", 12), ("TX", 5)),
        ),
        n_codes=(
            (("N1", 10), ("N1a", 25), ("N1b", 25), ("N1c", 5), ("N2", 5), ("N2a", 15),
             ("N2b", 15)),
            (("N0", 25), ("N1", 30), ("N1b", 10), ("N2", 35)),
        ),
        m_codes={6: (("M1", 1.0),), 7: (("M1a", 0.6), ("M1b", 0.4)),
                 8: (("M1a", 0.55), ("M1b", 0.25), ("M1c", 0.2)),
                 9: (("M1a", 0.55), ("M1b", 0.25), ("M1c", 0.2))},
        treatment=((0.95, 0.12, 0.02, 0.0, 0.0), (0.90, 0.72, 0.03, 0.0, 0.02),
                   (0.35, 0.75, 0.12, 0.0, 0.35), (0.60, 0.35, 0.10, 0.0, 0.05)),
    ),
    Site(
        key="prostate", share=12.0, rare=False, p_male=1.0, age_median=69, age_sd=8,
        stage_mix=(0.70, 0.13, 0.08, 0.09), surv5=(0.995, 0.995, 0.32, 0.80),
        topography=(("C61.9", 1),),
        morphology=(("8140", 98), ("8500", 1), ("8041", 1)),
        grade=(("1", 10), ("2", 35), ("3", 40), ("9", 15)), paired=False, family="prostate",
        t_codes=(
            (("T1c", 45), ("T2a", 15), ("T2b", 5), ("T2c", 20), ("T3a", 10), ("T3b", 5)),
            (("T2c", 15), ("T3a", 35), ("T3b", 40), ("T4", 10)),
            (("T2", 10), ("T3", 25), ("T3b", 20), ("T4", 20), ("TX", 25)),
        ),
        n_codes=((("N1", 1),), (("N0", 45), ("N1", 45), ("NX", 10))),
        m_codes={e: (("M1a", 0.08), ("M1b", 0.77), ("M1c", 0.15)) for e in (6, 7, 8, 9)},
        treatment=((0.40, 0.01, 0.40, 0.25, 0.0), (0.25, 0.05, 0.55, 0.75, 0.0),
                   (0.02, 0.35, 0.25, 0.95, 0.03), (0.20, 0.05, 0.30, 0.40, 0.0)),
        bod_cytology=0.03,
    ),
    Site(
        key="lung", share=12.0, rare=False, p_male=0.60, age_median=70, age_sd=9.5,
        stage_mix=(0.20, 0.22, 0.53, 0.05), surv5=(0.61, 0.33, 0.07, 0.15),
        topography=(("C34.0", 5), ("C34.1", 40), ("C34.2", 4), ("C34.3", 25), ("C34.8", 3),
                    ("C34.9", 22), ("C33.9", 1)),
        morphology=(("8140", 42), ("8070", 24), ("8041", 14), ("8046", 12), ("8012", 3),
                    ("8250", 4), ("8023", 0.5)),
        grade=(("1", 4), ("2", 25), ("3", 40), ("4", 6), ("9", 25)), paired=True, family="lung",
        t_codes=(
            (("T1a", 10), ("T1b", 18), ("T1c", 17), ("T2a", 27), ("T2b", 10), ("T3", 13),
             ("T4", 5)),
            (("T1b", 5), ("T1c", 7), ("T2a", 15), ("T2b", 8), ("T3", 30), ("T4", 35)),
            (("T1c", 5), ("T2a", 15), ("T2b", 5), ("T3", 25), ("T4", 40), ("TX", 10)),
        ),
        n_codes=((("N1", 30), ("N2", 50), ("N3", 20)),
                 (("N0", 15), ("N1", 10), ("N2", 45), ("N3", 30))),
        m_codes={6: (("M1", 1.0),), 7: (("M1a", 0.45), ("M1b", 0.55)),
                 8: (("M1a", 0.3), ("M1b", 0.25), ("M1c", 0.45)),
                 9: (("M1a", 0.3), ("M1b", 0.25), ("M1c1", 0.2), ("M1c2", 0.25))},
        treatment=((0.72, 0.30, 0.25, 0.0, 0.10), (0.30, 0.70, 0.60, 0.0, 0.30),
                   (0.03, 0.60, 0.35, 0.0, 0.50), (0.10, 0.35, 0.30, 0.0, 0.20)),
        bod_cytology=0.12, immuno_recent=True,
    ),
    Site(
        key="melanoma", share=4.0, rare=False, p_male=0.50, age_median=64, age_sd=16,
        stage_mix=(0.77, 0.09, 0.04, 0.10), surv5=(0.99, 0.71, 0.32, 0.85),
        topography=(("C44.2", 1), ("C44.3", 15), ("C44.4", 8), ("C44.5", 35), ("C44.6", 17),
                    ("C44.7", 22), ("C44.9", 2)),
        morphology=(("8720", 52), ("8721", 20), ("8743", 20), ("8742", 5), ("8744", 3)),
        grade=(("9", 1),), paired=False, family="melanoma",
        t_codes=(
            (("T1a", 42), ("T1b", 14), ("T2a", 14), ("T2b", 5), ("T3a", 8), ("T3b", 5),
             ("T4a", 5), ("T4b", 7)),
            (("T1a", 8), ("T1b", 12), ("T2a", 15), ("T2b", 10), ("T3a", 12), ("T3b", 13),
             ("T4a", 10), ("T4b", 20)),
            (("T2", 15), ("T3", 25), ("T4", 35), ("TX", 25)),
        ),
        n_codes=((("N1a", 35), ("N1b", 20), ("N1c", 5), ("N2a", 10), ("N2b", 12), ("N2c", 5),
                  ("N3", 13)),
                 (("N0", 40), ("N1", 25), ("N2", 15), ("N3", 20))),
        m_codes=_M1ABC,
        treatment=((0.98, 0.01, 0.01, 0.0, 0.03), (0.95, 0.03, 0.10, 0.0, 0.50),
                   (0.30, 0.10, 0.25, 0.0, 0.70), (0.80, 0.05, 0.05, 0.0, 0.10)),
        bod_cytology=0.005, immuno_recent=True,
    ),
    Site(
        key="pancreas", share=3.0, rare=True, p_male=0.50, age_median=71, age_sd=10,
        stage_mix=(0.12, 0.30, 0.52, 0.06), surv5=(0.44, 0.16, 0.03, 0.08),
        topography=(("C25.0", 60), ("C25.1", 15), ("C25.2", 10), ("C25.9", 15)),
        morphology=(("8500", 85), ("8140", 12), ("8240", 3)),
        grade=(("1", 10), ("2", 40), ("3", 35), ("9", 15)), paired=False, family="generic",
        t_codes=((("T1", 30), ("T2", 50), ("T3", 20)), (("T2", 30), ("T3", 50), ("T4", 20)),
                 (("T2", 20), ("T3", 40), ("T4", 30), ("TX", 10))),
        n_codes=((("N1", 70), ("N2", 30)), (("N0", 30), ("N1", 50), ("N2", 20))),
        m_codes=_M1,
        treatment=((0.60, 0.60, 0.10, 0.0, 0.0), (0.35, 0.70, 0.20, 0.0, 0.02),
                   (0.03, 0.60, 0.05, 0.0, 0.05), (0.10, 0.40, 0.05, 0.0, 0.0)),
        bod_cytology=0.15,
    ),
    Site(
        key="kidney", share=3.5, rare=False, p_male=0.62, age_median=65, age_sd=12,
        stage_mix=(0.66, 0.16, 0.15, 0.03), surv5=(0.93, 0.74, 0.17, 0.50),
        topography=(("C64.9", 1),),
        morphology=(("8312", 75), ("8260", 12), ("8317", 8), ("8310", 5)),
        grade=(("1", 10), ("2", 45), ("3", 30), ("4", 8), ("9", 7)), paired=True,
        family="generic",
        t_codes=((("T1a", 45), ("T1b", 25), ("T2a", 15), ("T2b", 5), ("T3a", 10)),
                 (("T1", 10), ("T2", 20), ("T3a", 40), ("T3b", 20), ("T4", 10)),
                 (("T1", 5), ("T2", 20), ("T3a", 40), ("T3b", 15), ("T4", 20))),
        n_codes=((("N1", 1),), (("N0", 50), ("N1", 50))),
        m_codes=_M1,
        treatment=((0.90, 0.01, 0.02, 0.0, 0.02), (0.85, 0.05, 0.05, 0.0, 0.30),
                   (0.35, 0.05, 0.20, 0.0, 0.75), (0.60, 0.02, 0.05, 0.0, 0.10)),
        immuno_recent=True,
    ),
    Site(
        key="bladder", share=4.0, rare=False, p_male=0.77, age_median=72, age_sd=10,
        stage_mix=(0.70, 0.15, 0.08, 0.07), surv5=(0.72, 0.39, 0.08, 0.40),
        topography=(("C67.0", 5), ("C67.2", 30), ("C67.4", 15), ("C67.9", 50)),
        morphology=(("8120", 90), ("8130", 8), ("8070", 2)),
        grade=(("2", 30), ("3", 50), ("9", 20)), paired=False, family="generic",
        t_codes=((("T1", 55), ("T2", 35), ("T3", 10)), (("T2", 30), ("T3", 45), ("T4", 25)),
                 (("T3", 40), ("T4", 50), ("TX", 10))),
        n_codes=((("N1", 50), ("N2", 40), ("N3", 10)), (("N0", 40), ("N1", 30), ("N2", 30))),
        m_codes=_M1,
        treatment=((0.95, 0.20, 0.05, 0.0, 0.20), (0.60, 0.60, 0.30, 0.0, 0.10),
                   (0.10, 0.60, 0.25, 0.0, 0.35), (0.50, 0.20, 0.10, 0.0, 0.05)),
    ),
    Site(
        key="stomach", share=3.0, rare=True, p_male=0.62, age_median=70, age_sd=11,
        stage_mix=(0.27, 0.30, 0.38, 0.05), surv5=(0.75, 0.35, 0.07, 0.20),
        topography=(("C16.0", 20), ("C16.1", 10), ("C16.2", 10), ("C16.3", 15), ("C16.5", 5),
                    ("C16.9", 40)),
        morphology=(("8140", 55), ("8490", 20), ("8145", 15), ("8144", 10)),
        grade=(("2", 30), ("3", 50), ("9", 20)), paired=False, family="generic",
        t_codes=((("T1a", 20), ("T1b", 20), ("T2", 30), ("T3", 25), ("T4a", 5)),
                 (("T2", 15), ("T3", 45), ("T4a", 30), ("T4b", 10)),
                 (("T3", 35), ("T4a", 35), ("T4b", 15), ("TX", 15))),
        n_codes=((("N1", 35), ("N2", 30), ("N3a", 25), ("N3b", 10)),
                 (("N0", 20), ("N1", 20), ("N2", 30), ("N3", 30))),
        m_codes=_M1,
        treatment=((0.80, 0.35, 0.02, 0.0, 0.0), (0.60, 0.70, 0.10, 0.0, 0.05),
                   (0.08, 0.65, 0.05, 0.0, 0.20), (0.30, 0.40, 0.02, 0.0, 0.02)),
        bod_cytology=0.03,
    ),
    Site(
        key="ovary", share=2.0, rare=True, p_male=0.0, age_median=63, age_sd=12,
        stage_mix=(0.17, 0.20, 0.58, 0.05), surv5=(0.93, 0.75, 0.31, 0.40),
        topography=(("C56.9", 1),),
        morphology=(("8441", 70), ("8460", 5), ("8380", 10), ("8310", 5), ("8480", 10)),
        grade=(("1", 10), ("2", 15), ("3", 60), ("9", 15)), paired=True, family="generic",
        t_codes=((("T1a", 50), ("T1b", 10), ("T1c", 40)),
                 (("T2a", 30), ("T2b", 40), ("T3a", 30)),
                 (("T3", 60), ("T3b", 20), ("TX", 20))),
        n_codes=((("N1", 1),), (("N0", 50), ("N1", 50))),
        m_codes=_M1,
        treatment=((0.97, 0.60, 0.0, 0.0, 0.0), (0.95, 0.85, 0.02, 0.0, 0.10),
                   (0.70, 0.85, 0.02, 0.0, 0.30), (0.50, 0.50, 0.0, 0.0, 0.05)),
        bod_cytology=0.05,
    ),
    Site(
        key="sarcoma", share=0.5, rare=True, p_male=0.55, age_median=60, age_sd=17,
        stage_mix=(0.55, 0.10, 0.15, 0.20), surv5=(0.81, 0.58, 0.16, 0.50),
        topography=(("C49.0", 5), ("C49.1", 10), ("C49.2", 40), ("C49.3", 10), ("C49.4", 15),
                    ("C49.5", 10), ("C49.9", 10)),
        morphology=(("8800", 10), ("8850", 20), ("8890", 25), ("8805", 10), ("8830", 15),
                    ("9040", 10), ("8815", 10)),
        grade=(("1", 20), ("2", 30), ("3", 40), ("9", 10)), paired=False, family="generic",
        t_codes=((("T1", 40), ("T2", 40), ("T3", 10), ("T4", 10)),
                 (("T2", 50), ("T3", 30), ("T4", 20)),
                 (("T2", 40), ("T3", 30), ("T4", 30))),
        n_codes=((("N1", 1),), (("N0", 85), ("N1", 15))),
        m_codes=_M1,
        treatment=((0.95, 0.15, 0.55, 0.0, 0.0), (0.80, 0.40, 0.60, 0.0, 0.05),
                   (0.35, 0.60, 0.30, 0.0, 0.20), (0.60, 0.20, 0.30, 0.0, 0.02)),
    ),
)

SITE_INDEX = {s.key: i for i, s in enumerate(SITES)}

# Morphology of in-situ breast cases (ductal carcinoma in situ, behaviour 2).
BREAST_IN_SITU_SHARE = 0.06

# Residual tumour after surgery by stage (localised, regional, distant, unknown).
RESIDUAL: tuple[Weighted, ...] = (
    (("R0", 93), ("R1", 5), ("R2", 1), ("RX", 1)),
    (("R0", 85), ("R1", 10), ("R2", 3), ("RX", 2)),
    (("R0", 40), ("R1", 20), ("R2", 35), ("RX", 5)),
    (("R0", 70), ("R1", 10), ("R2", 5), ("RX", 15)),
)

RECURRENCE_TYPE: Weighted = (("local", 20), ("regional", 15), ("distant", 65))

# Breast receptors: ER+ (pos or low) ~76 %, HER2-positive ~17 %, HER2-low common.
ER_MIX: Weighted = (("pos", 72), ("low", 4), ("neg", 21), ("unknown", 3))
PR_GIVEN_ER_POS: Weighted = (("pos", 78), ("low", 6), ("neg", 15), ("unknown", 1))
PR_GIVEN_ER_NEG: Weighted = (("pos", 3), ("low", 2), ("neg", 94), ("unknown", 1))
HER2_MIX_EARLY: Weighted = (("pos", 17), ("low", 15), ("neg", 63), ("unknown", 5))
HER2_MIX_LATE: Weighted = (("pos", 17), ("low", 45), ("neg", 36), ("unknown", 2))  # from 2020
HER2_LOW_FROM = 2020


# ---- survival ---------------------------------------------------------------------------------

def background_hazard(age: float) -> float:
    """Yearly all-cause hazard without cancer (a Gompertz curve near EU life tables)."""
    return 0.00005 * math.exp(0.09 * age)
