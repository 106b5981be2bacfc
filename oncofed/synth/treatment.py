"""Treatment draws: which treatments a tumour gets, when they start, and what survives death.

A layer of `CentreGenerator` (see `state`). The five treatments and the neoadjuvant order are one
joint draw per kind of tumour, cached on first use; start dates follow a plausible clinical
order; `_settle` trims them once the patient's death date is known and writes the TNM and
treatment segments of the row, because pathological TNM exists only for tumours operated on.
"""

from __future__ import annotations

import math
from bisect import bisect
from itertools import product

from oncofed.synth.draws import Pick, picker
from oncofed.synth.sitetables import IN_SITU, STRATUM_STAGE
from oncofed.synth.staging import coarse_n, coarse_t
from oncofed.synth.state import NO, UNKNOWN, YES, CentreState, Tumour

NO_TNM = ("",) * 9
TREATMENT_UNKNOWN = (UNKNOWN, "", "", UNKNOWN, "", UNKNOWN, "", UNKNOWN, "", UNKNOWN, "")
ED_S = ("", "", "", "", "", "", "6", "7", "8", "9")


class TreatmentDraws(CentreState):
    """Treatment patterns, their start dates, and the row segments fixed once death is known."""

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

    def _treatment_dates(self, t: Tumour, pattern: tuple[bool, ...] | None,
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

    def _settle(self, t: Tumour, lim: int) -> int:
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
            cN = "N0" if (t.stage == 1 and self.r() < 0.25) else coarse_n(N)
            pM = cM if (t.stage == 2 and self.r() < 0.3) else ""
            t.tnm = (ED_S[ed], coarse_t(T), cN, cM, T, N, pM, "1" if t.neo else "0", t.sg)
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
