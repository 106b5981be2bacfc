"""One survival group's release: consistent lattice counts from perturbed (or rounded) cells.

Why not perturb the three cumulative series (entries A, events D, censorings C) and let the
client take n_j = A_j − D_{j−1} − C_{j−1}: every number at risk is then the sum of three
perturbations; A's noise is the *same* at every edge (its rows rarely change) and the running
maximum that keeps D and C monotone drifts upward, so the error of n is persistent, the
log-rank's expected counts move with it (χ² SD 0.73 over 30 perturbation keys on GBSG2, 686
patients; bench/survival_noise.py), and after tail censoring A − D − C is a perturbed remainder
of 1–5 "at risk" out to the horizon.

Instead the node publishes A and D (perturbed, kept non-decreasing) and each interval's number
at risk N_j — the rows at risk in interval j, a set with its own cell key, so one perturbation —
and beyond the horizon B (rows still followed after the last edge). `consistent` then chooses
the censorings that make them agree: interval by interval, n_j is N_j clamped to what the
previous interval leaves (n_{j−1} − d_{j−1} + e_j, no negative censoring) and to at least its
entrants and events, and c_{j−1} is the difference. It reads only published values, so it adds
no disclosure; every count is ≥ 0, at risk = entered − events − censored to date exactly, and a
tail-censored group's at-risk cells are empty after its last reported edge (0 stays 0), so its
table ends where the centre stopped reporting. The same step makes a DP release consistent.
"""

from __future__ import annotations

from collections.abc import Callable

from oncofed.analyses import ptable
from oncofed.analyses.cells import EMPTY, Cell, GroupSurvival
from oncofed.analyses.disclosure import roundmid

TABLES = ("survival", "counts")


def perturb(cell: Cell, table: str) -> int:
    """A cell under the survival perturbation table, or the counts table."""
    if table == "counts":
        return ptable.perturb(cell.n, cell.key)
    return ptable.perturb_survival(cell.n, cell.key)


def publish_group(g: GroupSurvival, k: int, method: str, table: str) -> tuple[list[int], int]:
    """The group's released cumulative (entered, events, censored) series, and how many non-empty
    cells were perturbed or rounded. `g` is already tail-censored."""
    a, d, c = g.entered, g.events, g.censored
    m = len(a) - 1
    at_risk = [a[j] - (d[j - 1] + c[j - 1] if j else EMPTY) for j in range(m + 1)]
    beyond = a[m] - d[m] - c[m]
    pub: Callable[[Cell], int]
    if method == "round":
        def pub(cell: Cell) -> int:
            return roundmid(cell.n, k)
    else:
        def pub(cell: Cell) -> int:
            return perturb(cell, table)
    released = consistent(_monotone([pub(x) for x in a]), _monotone([pub(x) for x in d]),
                          [pub(x) for x in at_risk], pub(beyond))
    cells = sum(1 for x in (*a, *d, *at_risk, beyond) if x.n > 0)
    return released, cells


def consistent_from_noisy(entered: list[int], events: list[int], censored: list[int]) -> list[int]:
    """Noisy cumulative series (DP) made consistent the same way: at risk and beyond-horizon
    counts taken from the noisy series, then `consistent`."""
    m = len(entered) - 1
    at_risk = [entered[j] - (events[j - 1] + censored[j - 1] if j else 0) for j in range(m + 1)]
    beyond = entered[m] - events[m] - censored[m]
    return consistent(_monotone([max(x, 0) for x in entered]), _monotone([max(x, 0) for x in events]),
                      at_risk, beyond)


def consistent(entered: list[int], events: list[int], at_risk: list[int], beyond: int) -> list[int]:
    """Cumulative (entered, events, censored), concatenated, agreeing with each other: from
    non-decreasing A and D, the published numbers at risk N and the count beyond the horizon."""
    m = len(entered) - 1
    e = [entered[0]] + [entered[j] - entered[j - 1] for j in range(1, m + 1)]
    d_in = [events[0]] + [events[j] - events[j - 1] for j in range(1, m + 1)]
    d: list[int] = []
    c: list[int] = []
    n_prev = 0
    for j in range(m + 1):
        room = e[0] if j == 0 else n_prev - d[-1] + e[j]     # survivors of j − 1, plus entrants
        n = min(max(at_risk[j], e[j], d_in[j]), room)
        if j:
            c.append(room - n)                               # censored in interval j − 1
        d.append(min(d_in[j], n))
        n_prev = n
    left = n_prev - d[-1]
    c.append(left - min(max(beyond, 0), left))               # the last interval's censorings
    return [*entered, *_cumsum(d), *_cumsum(c)]


def _monotone(xs: list[int]) -> list[int]:
    out, top = [], 0
    for x in xs:
        top = max(top, x)
        out.append(top)
    return out


def _cumsum(xs: list[int]) -> list[int]:
    out, acc = [], 0
    for x in xs:
        acc += x
        out.append(acc)
    return out
