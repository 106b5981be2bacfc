"""What every draw layer of `CentreGenerator` shares: row layout, centre tables, tumour record.

`CentreGenerator` is assembled from layers, one concern per module (treatment, tumour, extension,
row assembly); this base builds everything they read, once per centre and chunk-independent, so
each layer's hot code is only look-ups on `self`. The layers subclass it rather than receiving it
as an argument so that their methods stay plain `self._x()` calls in the per-row loop.
"""

from __future__ import annotations

from datetime import date
from random import Random
from typing import Any

from oncofed.dictionary import Dictionary
from oncofed.errors import UsageError
from oncofed.synth.centres import centre_profile
from oncofed.synth.days import (
    DAY0,
    INCIDENCE_FIRST,
    INCIDENCE_LAST,
    YEAR_DAYS,
    iso_calendar,
    parse_today,
)
from oncofed.synth.draws import Pick, derive_seed, picker
from oncofed.synth.model import HER2_LOW_FROM, RECURRENCE_TYPE, RESIDUAL, background_hazard
from oncofed.synth.sitetables import SiteTables, check_codes, site_statics

CORE_COLUMNS: tuple[str, ...] = (
    "patient_id", "tumour_id", "birth_date", "tumour_seq", "centre_role", "first_contact_date",
    "sex", "incidence_date", "incidence_date_precision", "topography", "icdo_version",
    "morphology", "behaviour", "grade", "basis_of_diagnosis", "bod_scheme", "dco", "laterality",
    "tnm_edition", "cT", "cN", "cM", "pT", "pN", "pM", "y_prefix", "stage_group", "er", "pr",
    "her2", "surgery", "surgery_start_date", "residual_tumour", "chemotherapy",
    "chemotherapy_start_date", "radiotherapy", "radiotherapy_start_date", "hormone_therapy",
    "hormone_therapy_start_date", "immunotherapy", "immunotherapy_start_date", "vital_status",
    "vital_status_date", "vs_source", "linkage_closure_date", "death_date",
    "disease_free_after_treatment", "recurrence_date", "recurrence_type",
    "last_disease_assessment_date",
)
# Breast-network extension fields this generator knows how to fill (breast rows only).
EXT_COLUMNS: tuple[str, ...] = (
    "tumour_size_mm", "positive_nodes", "nodes_examined", "menopausal_status", "er_percent",
    "pr_percent", "ki67_percent", "er_fmol", "pr_fmol",
)
MAX_CENTRES = 26
# Values of the yes/no/unknown fields (treatments, disease-free, receptors unknown).
YES, NO, UNKNOWN = "yes", "no", "unknown"
UNKNOWN3 = (UNKNOWN, UNKNOWN, UNKNOWN)


class Tumour:
    """One primary while its patient is generated (the row needs patient-level follow-up,
    known only once every primary of the patient is drawn). Day numbers: 0 = none."""

    __slots__ = (
        "N", "T", "cM", "chemo_d", "ed", "er", "fc", "head", "horm_d", "imm_d", "inc",
        "insitu", "is_breast", "lam", "neo", "pr", "prec", "radio_d", "receptors", "residual",
        "role", "seq", "sg", "stage", "surg_d", "tnm", "treated", "treatment",
    )
    seq: int
    inc: int
    prec: str
    is_breast: bool
    stage: int
    insitu: bool
    head: tuple[str, ...]        # topography .. laterality
    ed: int                      # TNM edition, 0 = no TNM given
    T: str
    N: str
    cM: str
    sg: str
    er: str
    pr: str
    receptors: tuple[str, ...]
    lam: float                   # cancer hazard per day
    treated: bool                # False: treatment unknown
    neo: bool
    surg_d: int
    chemo_d: int
    radio_d: int
    horm_d: int
    imm_d: int
    residual: str
    role: str
    fc: int                      # first contact with this centre
    tnm: tuple[str, ...]         # tnm_edition .. stage_group
    treatment: tuple[str, ...]   # surgery .. immunotherapy_start_date


class CentreState:
    """One centre's profile and tables; the draw layers below add behaviour, not state."""

    def __init__(self, centre_index: int, n_patients: int, seed: int, dictionary: Dictionary,
                 today: date | str) -> None:
        if not 0 <= centre_index < MAX_CENTRES:
            raise UsageError(f"centre index must be 0..{MAX_CENTRES - 1}, got {centre_index}")
        if n_patients < 0:
            raise UsageError(f"patients per centre must be >= 0, got {n_patients}")
        self.centre_index = centre_index
        self.seed = seed
        self.today = parse_today(today)
        self.n_patients = n_patients
        self.profile = p = centre_profile(
            centre_index, Random(derive_seed(seed, centre_index, "profile"))
        )
        self.dictionary = dictionary
        self.columns = list(dictionary.input_columns)
        known = set(CORE_COLUMNS) | set(EXT_COLUMNS)
        for f in dictionary.input_fields:
            if f.column not in known and f.required:
                raise UsageError(
                    f"the dictionary requires column {f.column!r}, which synth cannot generate"
                )
        self.ext = any(c in EXT_COLUMNS for c in self.columns)
        layout = list(CORE_COLUMNS) + (list(EXT_COLUMNS) if self.ext else [])
        blank = len(layout)  # index of an empty value appended for unknown optional columns
        index = {c: i for i, c in enumerate(layout)}
        self.perm = [index.get(c, blank) for c in self.columns]
        self.identity = self.perm == list(range(len(layout)))

        statics = site_statics(tuple(sorted(dictionary.tnm_since.items())),
                               tuple(sorted(dictionary.tnm_until.items())))
        check_codes(statics, dictionary)
        self.sites = [SiteTables(s, p) for s in statics]
        self.site_pick = picker(zip(self.sites, p.site_weights, strict=True))
        self.vs_pick = picker(zip(("active", "passive", "both"), p.vs_weights, strict=True))
        self.role_pick = picker((
            (("referred", 14, 100), p.p_referred),
            (("followup_only", 180, 1200), p.p_followup_only),
            (("diagnosed_here", 0, 0), 1.0 - p.p_referred - p.p_followup_only),
        ))
        self.residual = tuple(picker(w) for w in RESIDUAL)
        self.rec_type = picker(RECURRENCE_TYPE)
        self.treat_cache: dict[tuple[int, int, bool, int, int, bool], Pick] = {}
        self.icdo_since = dict(dictionary.icdo_since)
        self.iso, self.years = iso_calendar(self.today)
        self.today_d = self.today.toordinal() - DAY0
        inc_end = min(INCIDENCE_LAST, self.today).toordinal() - DAY0
        inc_start = INCIDENCE_FIRST.toordinal() - DAY0
        if inc_end - inc_start < 5 * 365:
            inc_start = inc_end - 20 * 365
        self.inc_start, self.inc_end = inc_start, inc_end
        self.closure = self.today_d - p.linkage_lag_days
        self.num_fmt = f"%0{max(6, len(str(n_patients)))}d"
        self.pid_pre, self.tid_pre = f"{p.letter}-P", f"{p.letter}-T"
        self.ytab = self._year_table()
        self.bg = tuple(background_hazard(a) / YEAR_DAYS for a in range(131))
        self.r = Random(0).random  # replaced per chunk
        self.fr = Random(0).random  # the extension's receptor-content stream, replaced per chunk

    def _year_table(self) -> tuple[tuple[Any, ...], ...]:
        """Coding conventions by incidence year (index year - 1900): BoD scheme, TNM edition
        for other sites and for lung, ICD-O edition choice, HER2-low era, therapy period."""
        p = self.profile
        out = []
        for year in range(1900, 2101):
            scheme = "ENCR2022" if year >= p.encr2022_from else "ENCR1999"
            ed = 6 if year < 2010 else 7 if year < p.tnm8_from else 8
            ed_lung = 9 if (ed == 8 and year >= p.tnm9_lung_from) else ed
            if year < 2011:
                icdo = ("3.0", "3.1", p.icdo30_share)
            elif year < p.icdo32_from:
                icdo = ("3.1", "3.1", 1.0)
            else:
                icdo = ("3.2", "3.1", 0.85)
            era = 1 if year >= HER2_LOW_FROM else 0
            period = 0 if year < 2012 else 1 if year < 2016 else 2
            out.append((scheme, ed, ed_lung, icdo, era, period))
        return tuple(out)
