"""Tumour draws: one primary's site, stage, appearance, TNM, receptors, treatment and referral.

A layer of `CentreGenerator` (see `state`) over the treatment layer, which `_tumour` calls
for the tumour's treatments. The order of `random()` calls here is part of the output: moving,
adding or removing a draw changes every later value of the chunk.
"""

from __future__ import annotations

from bisect import bisect
from datetime import date

from oncofed.synth.days import DAY0
from oncofed.synth.model import SITE_INDEX
from oncofed.synth.sitetables import IN_SITU, STRATUM_STAGE, SiteTables
from oncofed.synth.state import UNKNOWN3, Tumour
from oncofed.synth.treatment import TreatmentDraws


class TumourDraws(TreatmentDraws):
    """Draws primaries: the first from the centre's case mix, a second one compatible with sex."""

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

    def _site_for_sex(self, sex: str) -> SiteTables:
        r = self.r
        items, cum = self.site_pick
        for _ in range(20):
            st = items[bisect(cum, r())]
            if sex == "1" and (st.p_male == 0.0 or (st.is_breast and r() > 0.01)):
                continue
            if sex == "2" and st.p_male == 1.0:
                continue
            return st
        return self.sites[SITE_INDEX["colorectal"]]

    def _tumour(self, st: SiteTables, inc: int, prec: str, seq: int) -> Tumour:
        r = self.r
        s = st.static
        t = Tumour()
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
