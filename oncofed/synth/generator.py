"""The row generator: seeded streams of patients per centre, one CSV row per primary tumour.

Determinism: every value comes from `random.Random.random()` (no `randint`, `gauss`, `choices`,
whose algorithms Python has changed between versions), so output depends only on the Mersenne
Twister stream. A centre's patients are cut into fixed chunks of `CHUNK_PATIENTS`, each with its
own seed derived from (run seed, centre, chunk): chunks can be generated in parallel processes and
concatenated, and the bytes never depend on how many processes did the work.

Speed: the per-row work is kept to table look-ups. Independent categorical attributes are drawn
together from one precomputed joint table (one `random()` and one `bisect` instead of several; the
joint distribution is the exact product, not an approximation). Dates are day numbers (1 =
1900-01-01, 0 = missing) turned into ISO strings by indexing one precomputed table, so a date
outside 1900-01-01..today cannot be written: it would be an IndexError, not a wrong row.
"""

from __future__ import annotations

import hashlib
import math
from bisect import bisect
from collections.abc import Iterable, Iterator
from datetime import date, timedelta
from functools import lru_cache
from itertools import product
from random import Random
from statistics import NormalDist
from typing import Any

from oncofed.dictionary import Dictionary
from oncofed.errors import UsageError
from oncofed.synth import model as M

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
    "pr_percent", "ki67_percent",
)

BASE = date(1900, 1, 1)
DAY0 = BASE.toordinal() - 1          # day number = ordinal - DAY0; 1 is 1900-01-01, 0 is "none"
INCIDENCE_FIRST = date(2005, 1, 1)
INCIDENCE_LAST = date(2025, 12, 31)
EARLIEST_TODAY = date(1990, 1, 1)
LATEST_TODAY = date(2100, 12, 31)
MAX_CENTRES = 26
CHUNK_PATIENTS = 25_000
YEAR_DAYS = 365.25
IN_SITU = 4                          # stratum of in-situ breast cases (stage localised)
STRATUM_STAGE = (0, 1, 2, 3, 0)      # stratum -> summary stage (localised .. unknown)
YES, NO, UNKNOWN = "yes", "no", "unknown"
UNKNOWN3 = (UNKNOWN, UNKNOWN, UNKNOWN)
NO_TNM = ("",) * 9
TREATMENT_UNKNOWN = (UNKNOWN, "", "", UNKNOWN, "", UNKNOWN, "", UNKNOWN, "", UNKNOWN, "")
ED_S = ("", "", "", "", "", "", "6", "7", "8", "9")

Pick = tuple[tuple[Any, ...], tuple[float, ...]]

# Standard normal quantiles at the midpoints of Z_STEPS equal-probability bins, within +-3 SD:
# one random() per normal draw (ages need no finer resolution).
Z_STEPS = 2048
Z_TABLE = tuple(max(-3.0, min(3.0, NormalDist().inv_cdf((i + 0.5) / Z_STEPS)))
                for i in range(Z_STEPS))


def derive_seed(seed: int, centre_index: int, purpose: str) -> int:
    """A seed for one centre and purpose, so centres (and chunks) are independent yet
    reproducible, and adding a centre never changes the others."""
    text = f"oncofed-synth/v1/{seed}/{centre_index}/{purpose}".encode()
    return int.from_bytes(hashlib.sha256(text).digest(), "big")


def picker(pairs: Iterable[tuple[Any, float]]) -> Pick:
    """Items and normalised cumulative weights for `items[bisect(cum, r())]` (one C call)."""
    kept = [(k, float(w)) for k, w in pairs if w > 0]
    if not kept:
        raise ValueError("weights must not all be zero")
    total = sum(w for _, w in kept)
    cum, acc = [], 0.0
    for _, w in kept:
        acc += w / total
        cum.append(acc)
    cum[-1] = 1.0  # random() < 1.0, so the last item is always reachable and never overrun
    return tuple(k for k, _ in kept), tuple(cum)


@lru_cache(maxsize=4)
def _calendar(today: date) -> tuple[tuple[str, ...], tuple[int, ...]]:
    """ISO strings and years by day number, from "" (0) and 1900-01-01 (1) up to `today`."""
    n = today.toordinal() - DAY0
    one = timedelta(days=1)
    iso, years = [""], [0]
    d = BASE
    for _ in range(n):
        iso.append(d.isoformat())
        years.append(d.year)
        d += one
    return tuple(iso), tuple(years)


def parse_today(value: date | str) -> date:
    """The extraction date: no generated date may be after it (a fixed default keeps the
    output independent of the clock)."""
    if isinstance(value, str):
        try:
            value = date.fromisoformat(value)
        except ValueError:
            raise UsageError(f"--today must be a date YYYY-MM-DD, got {value!r}") from None
    if not EARLIEST_TODAY <= value <= LATEST_TODAY:
        raise UsageError(
            f"--today must lie between {EARLIEST_TODAY} and {LATEST_TODAY}, got {value}"
        )
    return value


# ---- per-site tables that do not depend on the centre (built once per process) -------------

def _normalised(w: M.Weighted) -> M.Weighted:
    total = sum(x for _, x in w)
    return tuple((k, x / total) for k, x in w)


class _Static:
    """A site's joint draws: appearance, basis of diagnosis, TNM per edition, receptors."""

    __slots__ = ("bod", "combos", "idx", "is_breast", "is_lung", "is_prostate", "look", "rec",
                 "site", "unknown_tnm")

    def __init__(self, idx: int, site: M.Site, since: dict[str, int],
                 until: dict[str, int]) -> None:
        self.idx = idx
        self.site = site
        self.is_breast = site.key == "breast"
        self.is_prostate = site.key == "prostate"
        self.is_lung = site.key == "lung"
        grade = (*((g, 0.98 * w) for g, w in _normalised(site.grade)), ("", 0.02))
        lat: M.Weighted = (
            (("1", 0.485), ("2", 0.485), ("9", 0.02), ("4", 0.01)) if site.paired else (("0", 1),)
        )
        invasive = _product(site.topography, site.morphology, (("3", 1),), grade, lat)
        insitu = _product(site.topography, (("8500", 1),), (("2", 1),), grade, lat)
        self.look = (invasive, insitu)
        self.bod = tuple(self._bod(stratum) for stratum in range(5))
        ok = _edition_check(since, until)
        self.combos = {
            (stratum, ed): _combos(site, stratum, ed, ok) for stratum in (0, 1, 2)
            for ed in (6, 7, 8, 9)
        }
        self.unknown_tnm = {ed: _unknown_tnm(site, ed, ok) for ed in (6, 7, 8, 9)}
        self.rec: tuple[Pick, Pick, Pick] | None = None
        if self.is_breast:
            self.rec = (_receptors(M.HER2_MIX_EARLY), _receptors(M.HER2_MIX_LATE),
                        _receptors((("unknown", 1),)))

    def _bod(self, stratum: int) -> Pick:
        """Basis of diagnosis: histology of the primary for most, the rest by site and stage."""
        if stratum == IN_SITU:
            return picker((("7", 1),))
        stage = STRATUM_STAGE[stratum]
        cyt = self.site.bod_cytology
        w = {
            "6": 0.12 if stage == 2 else 0.005,
            "5": cyt * 0.7,
            "2": cyt * 0.3 + (0.03 if stage == 3 else 0.0),
            "4": 0.05 if self.is_prostate else 0.001,
            "1": 0.002 + (0.01 if stage == 3 else 0.0),
            "9": 0.002,
        }
        w["7"] = 1.0 - sum(w.values())
        return picker(sorted(w.items()))


def _product(*parts: M.Weighted) -> Pick:
    combos = [(tuple(k for k, _ in items), math.prod(w for _, w in items))
              for items in product(*parts)]
    return picker(combos)


def _receptors(her2_mix: M.Weighted) -> Pick:
    """Breast ER, PR (conditional on ER) and HER2, with the treatment classes they imply."""
    out = []
    for er, w_er in _normalised(M.ER_MIX):
        prs = M.PR_GIVEN_ER_POS if er in ("pos", "low") else M.PR_GIVEN_ER_NEG
        for pr, w_pr in _normalised(prs):
            for her2, w_h in _normalised(her2_mix):
                hclass = 0 if "pos" in (er, pr) else 1 if er == "low" else 2
                out.append(((er, pr, her2, hclass, her2 == "pos"), w_er * w_pr * w_h))
    return picker(out)


def _edition_check(since: dict[str, int], until: dict[str, int]) -> Any:
    def ok(code: str, ed: int) -> bool:
        return since.get(code, 0) <= ed <= until.get(code, 99)
    return ok


def _combos(site: M.Site, stage: int, ed: int, ok: Any) -> Pick:
    """Every (T, N, M, stage group) of a stage, weighted, valid in TNM edition `ed`."""
    rule = M.STAGE_GROUP[site.family]
    ns: M.Weighted = (("N0", 1.0),) if stage == 0 else site.n_codes[stage - 1]
    if stage == 2:
        ms = site.m_codes[ed]
    elif site.key == "breast" and ed >= 7:
        ms = (("M0", 0.99), ("M0(i+)", 0.01))
    else:
        ms = (("M0", 1.0),)
    out = []
    for (t, wt), (n, wn), (m, wm) in product(site.t_codes[stage], ns, ms):
        if ok(t, ed) and ok(n, ed) and ok(m, ed):
            out.append(((t, n, m, rule(t, n, m, ed)), wt * wn * wm))
    return picker(out)


def _unknown_tnm(site: M.Site, ed: int, ok: Any) -> Pick:
    """Partial TNM that leaves the summary stage unknown: nodes not assessable (NX)."""
    ms = ("M0", "MX") if ok("MX", ed) else ("M0",)
    return picker(((M.coarse_t(t), "NX", m), w)
                  for t, w in site.t_codes[0] + site.t_codes[1] for m in ms)


@lru_cache(maxsize=8)
def _statics(since: tuple[tuple[str, int], ...],
             until: tuple[tuple[str, int], ...]) -> tuple[_Static, ...]:
    s, u = dict(since), dict(until)
    return tuple(_Static(i, site, s, u) for i, site in enumerate(M.SITES))


def _check_codes(statics: Iterable[_Static], d: Dictionary) -> None:
    """Fail at start-up, not mid-file, if the dictionary no longer lists a code we emit."""
    f = d.fields

    def need(field: str, codes: Iterable[str]) -> None:
        if field not in f or not f[field].codes:
            return
        bad = sorted(set(codes) - set(f[field].codes) - {""})
        if bad:
            raise UsageError(f"synth emits {field} codes the dictionary lacks: {', '.join(bad)}")

    topos = {f"{site}.{digit}" for site, digits in d.topography_sites.items() for digit in digits}
    for s in statics:
        looks = s.look[0][0] + s.look[1][0]
        missing = sorted({x[0] for x in looks} - topos)
        if missing:
            raise UsageError(f"synth emits topographies the dictionary lacks: {missing}")
        for i, name in ((2, "behaviour"), (3, "grade"), (4, "laterality")):
            need(name, {x[i] for x in looks})
        need("basis_of_diagnosis", {c for items, _ in s.bod for c in items})
        ts, ns, ms, sgs = set(), set(), set(), set()
        for items, _ in s.combos.values():
            for t, n, m, sg in items:
                ts |= {t, M.coarse_t(t)}
                ns |= {n, M.coarse_n(n)}
                ms.add(m)
                sgs.add(sg)
        for items, _ in s.unknown_tnm.values():
            for t, n, m in items:
                ts.add(t)
                ns.add(n)
                ms.add(m)
        for name, codes in (("cT", ts), ("cN", ns), ("cM", ms), ("stage_group", sgs)):
            need(name, codes)
    need("residual_tumour", {c for w in M.RESIDUAL for c, _ in w})
    need("recurrence_type", {c for c, _ in M.RECURRENCE_TYPE})
    need("er", {c for c, _ in M.ER_MIX})
    need("her2", {c for c, _ in M.HER2_MIX_LATE})


# ---- per-centre tables --------------------------------------------------------------------

class _SiteTables:
    """One site as one centre sees it: its stage mix, hazards and age distribution."""

    __slots__ = ("age_median", "age_min", "age_sd", "immuno_recent", "is_breast", "lam",
                 "p_male", "static", "strata")

    def __init__(self, static: _Static, profile: M.CentreProfile) -> None:
        site = static.site
        self.static = static
        self.is_breast = static.is_breast
        self.immuno_recent = site.immuno_recent
        self.p_male = site.p_male
        self.age_median = site.age_median + profile.age_shift
        self.age_sd = site.age_sd
        self.age_min = 22.0 if site.key in ("breast", "prostate") else 18.0
        mix = [w * m for w, m in zip(site.stage_mix, profile.stage_mult, strict=True)]
        if static.is_breast:
            loc = mix[0]
            mix[0] = loc * (1 - M.BREAST_IN_SITU_SHARE)
            mix.append(loc * M.BREAST_IN_SITU_SHARE)
        self.strata = picker(enumerate(mix))
        lam = [-math.log(s5) / 5.0 / YEAR_DAYS * profile.hazard_mult for s5 in site.surv5]
        lam.append(lam[0] * 0.1)  # in situ
        self.lam = tuple(lam)


class _Tumour:
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


class CentreGenerator:
    """Draws one centre's patients; `rows()` yields CSV rows in the dictionary's column order."""

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
        self.profile = p = M.centre_profile(
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

        statics = _statics(tuple(sorted(dictionary.tnm_since.items())),
                           tuple(sorted(dictionary.tnm_until.items())))
        _check_codes(statics, dictionary)
        self.sites = [_SiteTables(s, p) for s in statics]
        self.site_pick = picker(zip(self.sites, p.site_weights, strict=True))
        self.vs_pick = picker(zip(("active", "passive", "both"), p.vs_weights, strict=True))
        self.role_pick = picker((
            (("referred", 14, 100), p.p_referred),
            (("followup_only", 180, 1200), p.p_followup_only),
            (("diagnosed_here", 0, 0), 1.0 - p.p_referred - p.p_followup_only),
        ))
        self.residual = tuple(picker(w) for w in M.RESIDUAL)
        self.rec_type = picker(M.RECURRENCE_TYPE)
        self.treat_cache: dict[tuple[int, int, bool, int, int, bool], Pick] = {}
        self.icdo_since = dict(dictionary.icdo_since)
        self.iso, self.years = _calendar(self.today)
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
        self.bg = tuple(M.background_hazard(a) / YEAR_DAYS for a in range(131))
        self.r = Random(0).random  # replaced per chunk

    # ---- chunks -------------------------------------------------------------------------

    @property
    def n_chunks(self) -> int:
        return -(-self.n_patients // CHUNK_PATIENTS)

    def rows(self) -> Iterator[list[str]]:
        """Every row of the centre, chunk after chunk, in the dictionary's column order."""
        for k in range(self.n_chunks):
            yield from self.chunk_rows(k)

    def chunk_rows(self, k: int) -> Iterator[list[str]]:
        """The rows of patients k*CHUNK_PATIENTS+1 .. (k+1)*CHUNK_PATIENTS, from their own seed."""
        first = k * CHUNK_PATIENTS + 1
        last = min(self.n_patients, first + CHUNK_PATIENTS - 1)
        rng = Random(derive_seed(self.seed, self.centre_index, f"rows/{k}"))
        perm = self.perm
        if self.identity:
            yield from self._rows(first, last, rng)
            return
        for row in self._rows(first, last, rng):
            row.append("")
            yield [row[i] for i in perm]

    # ---- small draws --------------------------------------------------------------------

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
            era = 1 if year >= M.HER2_LOW_FROM else 0
            period = 0 if year < 2012 else 1 if year < 2016 else 2
            out.append((scheme, ed, ed_lung, icdo, era, period))
        return tuple(out)

    def _precision(self, inc: int, after: int, u: float) -> tuple[int, str]:
        """Some incidence dates are known only to the month (day 15) or the year (1 July)."""
        d = date.fromordinal(inc + DAY0)
        if u < 0.99:
            o, prec = date(d.year, d.month, 15).toordinal() - DAY0, "month"
        else:
            o, prec = date(d.year, 7, 1).toordinal() - DAY0, "year"
        if o <= after or o > self.inc_end:
            return inc, "day"
        return o, prec

    def _site_for_sex(self, sex: str) -> _SiteTables:
        r = self.r
        items, cum = self.site_pick
        for _ in range(20):
            st = items[bisect(cum, r())]
            if sex == "1" and (st.p_male == 0.0 or (st.is_breast and r() > 0.01)):
                continue
            if sex == "2" and st.p_male == 1.0:
                continue
            return st
        return self.sites[M.SITE_INDEX["colorectal"]]

    def _treat_pattern(self, key: tuple[int, int, bool, int, int, bool]) -> Pick:
        """Joint draw of the five treatments (and neoadjuvant order) for one kind of tumour."""
        idx, stratum, rectal, period, hclass, her2pos = key
        s = self.sites[idx].static
        stage = STRATUM_STAGE[stratum]
        ps, pc, pr, ph, pi = s.site.treatment[stage]
        if s.is_breast:
            ph = (0.9, 0.5, 0.02)[hclass]
            pi = 0.85 if her2pos else (0.1 if stage == 2 else 0.02)
            if stratum == IN_SITU:
                pc, pi, ph, pr = 0.0, 0.0, ph * 0.3, 0.6
        elif s.site.immuno_recent:
            pi *= (0.3, 0.6, 1.0)[period]
        if rectal and stage < 2:
            pr = (0.25, 0.65)[stage]
        items = []
        for flags in product((True, False), repeat=5):
            surg, chemo, radio = flags[:3]
            w = math.prod(q if f else 1.0 - q for f, q in zip(flags, (ps, pc, pr, ph, pi),
                                                                strict=True))
            neo_p = 0.0
            if surg and stage < 3:
                if rectal and radio:
                    neo_p = (0.4, 0.7, 0.2)[stage]
                elif chemo:
                    neo_p = ((0.1, 0.35, 0.05) if s.is_breast else (0.02, 0.1, 0.05))[stage]
            items.append(((*flags, True), w * neo_p))
            items.append(((*flags, False), w * (1.0 - neo_p)))
        p_unknown = self.profile.p_treatment_unknown
        pick = picker([(k, w * (1.0 - p_unknown)) for k, w in items] + [(None, p_unknown)])
        self.treat_cache[key] = pick
        return pick

    # ---- one tumour -----------------------------------------------------------------------

    def _tumour(self, st: _SiteTables, inc: int, prec: str, seq: int) -> _Tumour:
        r = self.r
        s = st.static
        t = _Tumour()
        t.seq, t.inc, t.prec, t.is_breast = seq, inc, prec, st.is_breast
        year = self.years[inc]
        scheme, ed_other, ed_lung, icdo, era, period = self.ytab[year - 1900]
        items, cum = st.strata
        stratum = items[bisect(cum, r())]
        t.stage = stage = STRATUM_STAGE[stratum]
        t.insitu = insitu = stratum == IN_SITU
        items, cum = s.look[insitu]
        topo, morph, beh, grade, lat = items[bisect(cum, r())]
        v = icdo[0] if r() < icdo[2] else icdo[1]
        need = self.icdo_since.get(morph)
        if need is not None and v < need:
            v = need
        items, cum = s.bod[stratum]
        t.head = (topo, v, morph, beh, grade, items[bisect(cum, r())], scheme, "0", lat)
        # TNM: one weighted (T, N, M, group) draw keeps summary stage and stage group consistent.
        if stage < 3:
            t.ed = ed = ed_lung if s.is_lung else ed_other
            if insitu:
                t.T, t.N, t.cM, t.sg = "Tis", "N0", "M0", "0"
            else:
                items, cum = s.combos[(stage, ed)]
                t.T, t.N, t.cM, t.sg = items[bisect(cum, r())]
        elif r() < 0.4:
            t.ed = ed = ed_lung if s.is_lung else ed_other
            items, cum = s.unknown_tnm[ed]
            t.T, t.N, t.cM = items[bisect(cum, r())]
            t.sg = ""
        else:
            t.ed = 0
        if s.rec is not None:
            items, cum = s.rec[2 if insitu else era]
            er, pr, her2, hclass, her2pos = items[bisect(cum, r())]
            t.er, t.pr = er, pr
            t.receptors = (er, pr, her2)
        else:
            t.receptors = UNKNOWN3
            hclass, her2pos = 0, False
        t.lam = st.lam[stratum]
        rectal = topo == "C20.9"
        key = (s.idx, stratum, rectal, period if st.immuno_recent else 2, hclass, her2pos)
        items, cum = self.treat_cache.get(key) or self._treat_pattern(key)
        self._treatment_dates(t, items[bisect(cum, r())], rectal)
        items, cum = self.role_pick
        t.role, lo, span = items[bisect(cum, r())]
        t.fc = inc + lo + int(r() * span) if lo else 0
        return t

    def _treatment_dates(self, t: _Tumour, pattern: tuple[bool, ...] | None,
                         rectal: bool) -> None:
        """Start dates in a plausible order: neoadjuvant first, else surgery then adjuvant."""
        t.residual = ""
        t.surg_d = t.chemo_d = t.radio_d = t.horm_d = t.imm_d = 0
        if pattern is None:
            t.treated = t.neo = False
            return
        r = self.r
        surg, chemo, radio, horm, imm, neo = pattern
        t.treated, t.neo = True, neo
        inc = t.inc
        if neo:
            first = inc + 14 + int(r() * 35)
            if chemo:
                t.chemo_d = first
            if rectal and radio:
                t.radio_d = first
                t.surg_d = first + 56 + int(r() * 56)
            else:
                t.surg_d = first + 120 + int(r() * 70)
                if radio:
                    t.radio_d = t.surg_d + 30 + int(r() * 40)
            if imm:
                t.imm_d = t.chemo_d or first
        elif surg:
            s = t.surg_d = inc + 7 + int(r() * 50)
            if chemo:
                t.chemo_d = s + 28 + int(r() * 35)
            if radio:
                t.radio_d = (t.chemo_d + 130 + int(r() * 60)) if chemo else s + 35 + int(r() * 50)
            if imm:
                t.imm_d = t.chemo_d or s + 30 + int(r() * 60)
        else:
            if chemo:
                t.chemo_d = inc + 14 + int(r() * 35)
            if radio:
                t.radio_d = t.chemo_d if (chemo and r() < 0.5) else inc + 14 + int(r() * 50)
            if imm:
                t.imm_d = t.chemo_d or inc + 14 + int(r() * 45)
        if horm:
            after = t.radio_d or t.surg_d
            t.horm_d = after + 21 + int(r() * 60) if after else inc + 7 + int(r() * 30)
        if surg:
            items, cum = self.residual[t.stage]
            t.residual = items[bisect(cum, r())]

    def _settle(self, t: _Tumour, lim: int) -> int:
        """Once death is known: drop treatments the patient did not live (or the extraction did
        not last) to start, add pathological TNM for those operated, build the tumour's TNM and
        treatment row segments, and return its latest event date."""
        iso = self.iso
        if t.treated:
            surg_d, chemo_d, radio_d, horm_d, imm_d = (
                t.surg_d, t.chemo_d, t.radio_d, t.horm_d, t.imm_d)
            if surg_d > lim:
                surg_d = t.surg_d = 0
                t.residual, t.neo = "", False
            if chemo_d > lim:
                chemo_d = t.chemo_d = 0
            if radio_d > lim:
                radio_d = t.radio_d = 0
            if horm_d > lim:
                horm_d = t.horm_d = 0
            if imm_d > lim:
                imm_d = t.imm_d = 0
            t.treatment = (
                YES if surg_d else NO, iso[surg_d], t.residual,
                YES if chemo_d else NO, iso[chemo_d], YES if radio_d else NO, iso[radio_d],
                YES if horm_d else NO, iso[horm_d], YES if imm_d else NO, iso[imm_d],
            )
            last = max(surg_d, chemo_d, radio_d, horm_d, imm_d)
        else:
            surg_d = last = 0
            t.treatment = TREATMENT_UNKNOWN
        ed = t.ed
        if not ed:
            t.tnm = NO_TNM
        elif surg_d and t.stage < 3:
            # Pathology after surgery: pT/pN as drawn; clinical values coarser (nodes sometimes
            # occult), so the derived summary stage (pathological wins) matches the stage group.
            T, N, cM = t.T, t.N, t.cM
            cN = "N0" if (t.stage == 1 and self.r() < 0.25) else M.coarse_n(N)
            pM = cM if (t.stage == 2 and self.r() < 0.3) else ""
            t.tnm = (ED_S[ed], M.coarse_t(T), cN, cM, T, N, pM, "1" if t.neo else "0", t.sg)
        else:
            t.tnm = (ED_S[ed], t.T, t.N, t.cM, "", "", "", "0", t.sg)
        if t.fc > lim:
            # First contact after death (or extraction): a referral happened sooner; a
            # follow-up-only contact never happened.
            if t.role == "followup_only":
                t.role, t.fc = "diagnosed_here", 0
            else:
                t.fc = lim
        return max(t.inc, t.fc, last)

    # ---- rows -----------------------------------------------------------------------------

    def _rows(self, first: int, last: int, rng: Random) -> Iterator[list[str]]:
        self.r = r = rng.random
        log = math.log
        p = self.profile
        iso = self.iso
        today = self.today_d
        closure = self.closure
        inc_start, inc_end = self.inc_start, self.inc_end
        inc_span = inc_end - inc_start
        num_fmt, pid_pre, tid_pre = self.num_fmt, self.pid_pre, self.tid_pre
        fu_days = p.followup_mean_years * YEAR_DAYS
        la_days = fu_days * 0.6
        site_items, site_cum = self.site_pick
        vs_items, vs_cum = self.vs_pick
        rt_items, rt_cum = self.rec_type
        bg = self.bg
        ext = self.ext
        p_dco, p_special = p.p_dco, p.p_dco + 0.001
        p_second = p.p_second_primary
        closure_s = iso[closure]
        seq_s = ("", "1", "2")
        tid_suffix = ("", "-1", "-2")
        rec_p = (0.06, 0.2, 0.3, 0.1)
        z_table = Z_TABLE
        for pn in range(first, last + 1):
            st = site_items[bisect(site_cum, r())]
            sex = "1" if r() < st.p_male else "2"
            # Age: median and spread of the site (normal, truncated at 3 SD, from a table).
            age = st.age_median + st.age_sd * z_table[int(r() * Z_STEPS)]
            age = 99.0 if age > 99.0 else st.age_min if age < st.age_min else age
            # Incidence: uniform-ish over the window, slowly rising (growing registries).
            inc = inc_start + int((math.sqrt(1.0 + 3.0 * r()) - 1.0) * inc_span)
            x = r()
            if x < p_special:
                kind = "dco" if x < p_dco else "autopsy"
                # Known only from death: incidence = death date, before the linkage closed.
                if inc > closure:
                    inc = inc_start + int(r() * (min(closure, inc_end) - inc_start))
                birth = max(1, inc - int((age + r()) * YEAR_DAYS))
                yield self._death_only_row(st, pn, sex, birth, inc, kind)
                continue
            u = r()
            inc, prec = (inc, "day") if u < 0.95 else self._precision(inc, 0, u)
            birth = max(1, inc - int((age + r()) * YEAR_DAYS))
            t1 = self._tumour(st, inc, prec, 1)
            tumours = [t1]
            death = inc - log(1.0 - r()) / bg[int(age)]
            cause = None
            dc = inc - log(1.0 - r()) / t1.lam
            if dc < death:
                death, cause = dc, t1
            if r() < p_second:
                inc2 = inc + 90 + int(-log(1.0 - r()) * 4.0 * YEAR_DAYS)
                if inc2 <= inc_end and inc2 < death:
                    u = r()
                    inc2, prec2 = (inc2, "day") if u < 0.95 else self._precision(inc2, inc, u)
                    if inc2 < death:
                        t2 = self._tumour(self._site_for_sex(sex), inc2, prec2, 2)
                        tumours.append(t2)
                        dc = inc2 - log(1.0 - r()) / t2.lam
                        if dc < death:
                            death, cause = dc, t2
            death_d = int(death) if death <= today else today + 1
            lim = death_d if death_d < today else today
            floor = self._settle(t1, lim)
            if len(tumours) > 1:
                floor = max(floor, self._settle(tumours[1], lim))
            # Follow-up: active contacts, passive linkage with the death registry, or both.
            src = vs_items[bisect(vs_cum, r())]
            contact = inc + int(-log(1.0 - r()) * fu_days)
            if contact > today:
                contact = today
            if src == "passive":
                if death_d <= closure:
                    vs, vs_d = "dead", death_d
                elif r() < 0.01:
                    vs, vs_d = "lost", floor + int(r() * max(0, closure - floor))
                else:
                    vs, vs_d = "alive", max(closure, floor)
            elif src == "active":
                if death_d <= contact:
                    vs, vs_d = "dead", death_d
                elif contact < today - 365 and r() < 0.6:
                    vs, vs_d = "lost", max(contact, floor)
                else:
                    vs, vs_d = "alive", max(contact, floor)
            elif death_d <= closure or death_d <= contact:
                vs, vs_d = "dead", death_d
            else:
                vs, vs_d = "alive", max(closure, contact, floor)
            dead = vs == "dead"
            vs_s = iso[vs_d]
            death_s = vs_s if dead else ""
            link_s = "" if src == "active" else closure_s
            birth_s = iso[birth]
            num = num_fmt % pn
            pid = pid_pre + num
            for t in tumours:
                # Disease-free after treatment, recurrence and the last disease assessment.
                stage = t.stage
                surg_d = t.surg_d
                if not t.treated:
                    df = UNKNOWN
                elif stage == 2:
                    df = YES if (surg_d and t.residual == "R0" and r() < 0.3) else NO
                elif stage == 3:
                    x = r()
                    df = UNKNOWN if x < 0.6 else YES if x < 0.9 else NO
                elif surg_d:
                    res = t.residual
                    x = r()
                    if res == "R0":
                        df = YES if x < 0.96 else NO if x < 0.98 else UNKNOWN
                    elif res == "R1":
                        df = YES if x < 0.7 else NO
                    elif res == "R2":
                        df = NO
                    else:
                        df = YES if x < 0.5 else UNKNOWN
                elif t.chemo_d or t.radio_d or t.horm_d or t.imm_d:
                    x = r()
                    df = YES if x < 0.6 else NO if x < 0.9 else UNKNOWN
                else:
                    df = NO if r() < 0.7 else UNKNOWN
                tinc = t.inc
                if src == "passive":
                    la = tinc + int(-log(1.0 - r()) * la_days)
                    if la > vs_d:
                        la = vs_d
                else:
                    la = vs_d - int(r() * 120)
                if la < tinc:
                    la = tinc
                t_last = max(t.fc, surg_d, t.chemo_d, t.radio_d, t.horm_d, t.imm_d)
                if la < t_last:
                    la = t_last
                rec = 0
                rec_type = ""
                if df == YES:
                    origin = surg_d or max(t.chemo_d, t.radio_d, t.horm_d, t.imm_d) or tinc
                    if dead and cause is t and death_d > origin:
                        rec = origin + int((death_d - origin) * (0.3 + 0.6 * r()))
                    elif r() < rec_p[stage]:
                        rec = origin + 60 + int(-log(1.0 - r()) * 2.5 * YEAR_DAYS)
                    if rec > la:
                        rec = 0
                    else:
                        rec_type = rt_items[bisect(rt_cum, r())]
                seq = t.seq
                row = [pid, tid_pre + num + tid_suffix[seq], birth_s, seq_s[seq], t.role,
                       iso[t.fc], sex, iso[tinc], t.prec]
                row += t.head
                row += t.tnm
                row += t.receptors
                row += t.treatment
                row += (vs, vs_s, src, link_s, death_s, df, iso[rec], rec_type, iso[la])
                if ext:
                    row += self._extension(t, sex, (tinc - birth) / YEAR_DAYS)
                yield row

    def _death_only_row(self, st: _SiteTables, pn: int, sex: str, birth: int, inc: int,
                        kind: str) -> list[str]:
        """A death-certificate-only (or autopsy) case: no treatment, stage unknown."""
        r = self.r
        s = st.static
        iso = self.iso
        scheme, _, _, icdo, _, _ = self.ytab[self.years[inc] - 1900]
        items, cum = s.look[0]
        topo, morph, _, grade, lat = items[bisect(cum, r())]
        if kind == "dco":
            morph, bod, dco, grade = "8000", "0", "1", "9"
        else:
            # Autopsy with histology has its own code only in the 2022 scheme.
            bod, dco = ("8" if scheme == "ENCR2022" else "7"), "0"
        v = icdo[0] if r() < icdo[2] else icdo[1]
        need = self.icdo_since.get(morph)
        if need is not None and v < need:
            v = need
        if lat != "0":
            lat = "9"
        d = iso[inc]
        num = self.num_fmt % pn
        row = [
            self.pid_pre + num, self.tid_pre + num + "-1", iso[birth], "1", "diagnosed_here", "",
            sex, d, "day", topo, v, morph, "3", grade, bod, scheme, dco, lat,
            *NO_TNM, *UNKNOWN3, NO, "", "", NO, "", NO, "", NO, "", NO, "",
            "dead", d, "passive", iso[self.closure], d, "", "", "", "",
        ]
        if self.ext:
            row += ("",) * len(EXT_COLUMNS)
        return row

    def _extension(self, t: _Tumour, sex: str, age: float) -> list[str]:
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
        return [size, pos, examined, meno, er_p, pr_p, ki]


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
