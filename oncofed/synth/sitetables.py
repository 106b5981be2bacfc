"""Joint draw tables per tumour site: built once, so each row costs a few table look-ups.

Independent categorical attributes are drawn together from one precomputed joint table (one
`random()` and one `bisect` instead of several; the joint distribution is the exact product, not
an approximation). The centre-independent tables (`SiteStatic`) are cached per process and per
dictionary TNM validity; `SiteTables` adds what depends on one centre's profile.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from functools import lru_cache
from itertools import product
from typing import Any

from oncofed.dictionary import Dictionary
from oncofed.errors import UsageError
from oncofed.synth.centres import CentreProfile
from oncofed.synth.days import YEAR_DAYS
from oncofed.synth.draws import Pick, picker
from oncofed.synth.model import (
    BREAST_IN_SITU_SHARE,
    ER_MIX,
    HER2_MIX_EARLY,
    HER2_MIX_LATE,
    PR_GIVEN_ER_NEG,
    PR_GIVEN_ER_POS,
    RECURRENCE_TYPE,
    RESIDUAL,
    SITES,
    Site,
    Weighted,
)
from oncofed.synth.staging import STAGE_GROUP, coarse_n, coarse_t

IN_SITU = 4                          # stratum of in-situ breast cases (stage localised)
STRATUM_STAGE = (0, 1, 2, 3, 0)      # stratum -> summary stage (localised .. unknown)


# ---- per-site tables that do not depend on the centre (built once per process) -------------

def _normalised(w: Weighted) -> Weighted:
    total = sum(x for _, x in w)
    return tuple((k, x / total) for k, x in w)


class SiteStatic:
    """A site's joint draws: appearance, basis of diagnosis, TNM per edition, receptors."""

    __slots__ = ("bod", "combos", "idx", "is_breast", "is_lung", "is_prostate", "look", "rec",
                 "site", "unknown_tnm")

    def __init__(self, idx: int, site: Site, since: dict[str, int],
                 until: dict[str, int]) -> None:
        self.idx = idx
        self.site = site
        self.is_breast = site.key == "breast"
        self.is_prostate = site.key == "prostate"
        self.is_lung = site.key == "lung"
        grade = (*((g, 0.98 * w) for g, w in _normalised(site.grade)), ("", 0.02))
        lat: Weighted = (
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
            self.rec = (_receptors(HER2_MIX_EARLY), _receptors(HER2_MIX_LATE),
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


def _product(*parts: Weighted) -> Pick:
    combos = [(tuple(k for k, _ in items), math.prod(w for _, w in items))
              for items in product(*parts)]
    return picker(combos)


def _receptors(her2_mix: Weighted) -> Pick:
    """Breast ER, PR (conditional on ER) and HER2, with the treatment classes they imply."""
    out = []
    for er, w_er in _normalised(ER_MIX):
        prs = PR_GIVEN_ER_POS if er in ("pos", "low") else PR_GIVEN_ER_NEG
        for pr, w_pr in _normalised(prs):
            for her2, w_h in _normalised(her2_mix):
                hclass = 0 if "pos" in (er, pr) else 1 if er == "low" else 2
                out.append(((er, pr, her2, hclass, her2 == "pos"), w_er * w_pr * w_h))
    return picker(out)


def _edition_check(since: dict[str, int], until: dict[str, int]) -> Any:
    def ok(code: str, ed: int) -> bool:
        return since.get(code, 0) <= ed <= until.get(code, 99)
    return ok


def _combos(site: Site, stage: int, ed: int, ok: Any) -> Pick:
    """Every (T, N, M, stage group) of a stage, weighted, valid in TNM edition `ed`."""
    rule = STAGE_GROUP[site.family]
    ns: Weighted = (("N0", 1.0),) if stage == 0 else site.n_codes[stage - 1]
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


def _unknown_tnm(site: Site, ed: int, ok: Any) -> Pick:
    """Partial TNM that leaves the summary stage unknown: nodes not assessable (NX)."""
    ms = ("M0", "MX") if ok("MX", ed) else ("M0",)
    return picker(((coarse_t(t), "NX", m), w)
                  for t, w in site.t_codes[0] + site.t_codes[1] for m in ms)


@lru_cache(maxsize=8)
def site_statics(since: tuple[tuple[str, int], ...],
                 until: tuple[tuple[str, int], ...]) -> tuple[SiteStatic, ...]:
    """Every site's static tables for one TNM validity map: cached, so the centres (and the
    chunks of a worker process) of a run share them instead of rebuilding them."""
    s, u = dict(since), dict(until)
    return tuple(SiteStatic(i, site, s, u) for i, site in enumerate(SITES))


def check_codes(statics: Iterable[SiteStatic], d: Dictionary) -> None:
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
                ts |= {t, coarse_t(t)}
                ns |= {n, coarse_n(n)}
                ms.add(m)
                sgs.add(sg)
        for items, _ in s.unknown_tnm.values():
            for t, n, m in items:
                ts.add(t)
                ns.add(n)
                ms.add(m)
        for name, codes in (("cT", ts), ("cN", ns), ("cM", ms), ("stage_group", sgs)):
            need(name, codes)
    need("residual_tumour", {c for w in RESIDUAL for c, _ in w})
    need("recurrence_type", {c for c, _ in RECURRENCE_TYPE})
    need("er", {c for c, _ in ER_MIX})
    need("her2", {c for c, _ in HER2_MIX_LATE})


# ---- per-centre tables --------------------------------------------------------------------

class SiteTables:
    """One site as one centre sees it: its stage mix, hazards and age distribution."""

    __slots__ = ("age_median", "age_min", "age_sd", "immuno_recent", "is_breast", "lam",
                 "p_male", "static", "strata")

    def __init__(self, static: SiteStatic, profile: CentreProfile) -> None:
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
            mix[0] = loc * (1 - BREAST_IN_SITU_SHARE)
            mix.append(loc * BREAST_IN_SITU_SHARE)
        self.strata = picker(enumerate(mix))
        lam = [-math.log(s5) / 5.0 / YEAR_DAYS * profile.hazard_mult for s5 in site.surv5]
        lam.append(lam[0] * 0.1)  # in situ
        self.lam = tuple(lam)
