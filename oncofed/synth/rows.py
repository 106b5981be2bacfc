"""The row assembler: the per-patient loop that draws follow-up and writes one row per primary.

A layer of `CentreGenerator` (see `state`) on top of the tumour and extension layers. This is the
hot loop: attributes are bound to locals once per chunk and the work per row is table look-ups,
so survival, vital status, recurrence and the last assessment are drawn inline, not in calls.
"""

from __future__ import annotations

import math
from bisect import bisect
from collections.abc import Iterator
from random import Random

from oncofed.synth.days import YEAR_DAYS
from oncofed.synth.draws import Z_STEPS, Z_TABLE, derive_seed
from oncofed.synth.extension import ExtensionDraws
from oncofed.synth.sitetables import SiteTables
from oncofed.synth.state import EXT_COLUMNS, NO, UNKNOWN, UNKNOWN3, YES
from oncofed.synth.treatment import NO_TNM
from oncofed.synth.tumour import TumourDraws


class RowAssembler(TumourDraws, ExtensionDraws):
    """Turns a chunk's patient numbers into rows in the core (+ extension) column layout."""

    def _rows(self, first: int, last: int, rng: Random) -> Iterator[list[str]]:
        """Rows of patients `first`..`last` (one per primary) from the chunk's own stream."""
        self.r = r = rng.random
        # receptor content draws from a stream of their own: the other columns stay as they were
        self.fr = Random(derive_seed(self.seed, self.centre_index, f"extension-fmol/{first}")).random
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

    def _death_only_row(self, st: SiteTables, pn: int, sex: str, birth: int, inc: int,
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
