"""A fitted model as researchers read it: the coefficient table, tests, and how the fit went.

Wald statistics from the inverse (penalised) information at the final coefficients: SE, z,
two-sided p from the normal, 95% CI β ± 1.959964·SE, and exp(β) with its CI (odds ratios for
logistic, hazard ratios for Cox). The likelihood-ratio test compares with the null model — the
intercept-only logistic model (its log-likelihood in closed form from the pooled n and events) or
β = 0 for Cox (the first round's log partial likelihood); it is not reported for a penalised fit.
`summary()` prints a table in the manner of statsmodels' summary.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

Z95 = 1.959963984540054


def normal_sf2(z: float) -> float:
    """Two-sided normal p-value of z."""
    return math.erfc(abs(z) / math.sqrt(2.0))


def chi2_sf(x: float, df: int) -> float:
    """P(χ²_df > x): the regularised upper incomplete gamma Q(df/2, x/2) (Numerical Recipes)."""
    if x <= 0:
        return 1.0
    a, y = df / 2.0, x / 2.0
    if y < a + 1:                                   # series for P, then Q = 1 − P
        term = total = 1.0 / a
        k = a
        for _ in range(10_000):
            k += 1
            term *= y / k
            total += term
            if abs(term) < abs(total) * 1e-16:
                break
        return max(0.0, 1.0 - total * math.exp(-y + a * math.log(y) - math.lgamma(a)))
    b = y + 1 - a                                   # continued fraction for Q (Lentz)
    c, d = 1e300, 1.0 / b
    h = d
    for i in range(1, 10_000):
        an = -i * (i - a)
        b += 2
        d = an * d + b
        d = 1e-300 if abs(d) < 1e-300 else d
        c = b + an / c
        c = 1e-300 if abs(c) < 1e-300 else c
        d = 1.0 / d
        delta = d * c
        h *= delta
        if abs(delta - 1) < 1e-16:
            break
    return math.exp(-y + a * math.log(y) - math.lgamma(a)) * h


@dataclass
class ModelResult:
    """The fitted model (see the module docstring); `summary()`, `to_pandas()`, `to_json()`."""

    model: str
    outcome: str
    coefficients: list[str]
    beta: list[float]
    se: list[float]
    ratio_name: str                     # "odds ratio" | "hazard ratio"
    loglik: float
    loglik_null: float | None
    lr_df: int
    n: int
    events: int
    centres: int
    iterations: int
    rounds: int
    converged: bool
    participants: list[str] = field(default_factory=list)
    withheld_centres: int = 0
    ties: str = ""
    l2: float = 0.0
    standardised: bool = False
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    #: The stated tolerance against the exact pooled fit, in standard errors (the pooled-equivalent
    #: Cox model: 0 when nothing was coarsened); None where the model is exact by construction.
    tolerance_se: float | None = None

    @property
    def z(self) -> list[float]:
        return [b / s if s > 0 else math.nan for b, s in zip(self.beta, self.se, strict=True)]

    @property
    def p_values(self) -> list[float]:
        return [normal_sf2(z) if math.isfinite(z) else math.nan for z in self.z]

    @property
    def ratios(self) -> list[float]:
        """exp(β): odds ratios (logistic) or hazard ratios (Cox)."""
        return [math.exp(b) for b in self.beta]

    @property
    def lr_stat(self) -> float | None:
        if self.loglik_null is None or self.l2 > 0 or self.lr_df <= 0:
            return None
        return max(2.0 * (self.loglik - self.loglik_null), 0.0)

    @property
    def lr_p(self) -> float | None:
        s = self.lr_stat
        return None if s is None else chi2_sf(s, self.lr_df)

    def rows(self) -> list[dict[str, Any]]:
        """One row per coefficient: the table of `summary()` and `to_pandas()`."""
        out = []
        for name, b, s, z, p in zip(self.coefficients, self.beta, self.se, self.z, self.p_values, strict=True):
            lo, hi = b - Z95 * s, b + Z95 * s
            row: dict[str, Any] = {"coefficient": name, "coef": b, "se": s, "z": z, "p": p, "ci_low": lo,
                                   "ci_high": hi}
            if not name.startswith("("):              # not an intercept or a baseline
                row.update({self.ratio_name.replace(" ", "_"): math.exp(b), "ratio_ci_low": math.exp(lo),
                            "ratio_ci_high": math.exp(hi)})
            out.append(row)
        return out

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out.update({"lr_stat": self.lr_stat, "lr_p": self.lr_p, "table": self.rows()})
        return out

    def to_pandas(self) -> Any:
        """The coefficient table as a pandas DataFrame indexed by coefficient (pandas needed)."""
        try:
            import pandas as pd
        except ImportError:
            raise ImportError("to_pandas needs pandas: pip install pandas") from None
        return pd.DataFrame(self.rows()).set_index("coefficient")

    def summary(self) -> str:
        """A text table like statsmodels' summary."""
        w = 96
        status = (f"yes ({self.iterations} iterations, {self.rounds} rounds)" if self.converged
                  else f"NO ({self.rounds} rounds)")
        lr = self.lr_stat
        left = [("Outcome:", self.outcome), ("Ties:", self.ties or "–"),
                ("Centres:", f"{self.centres}" + (f" ({self.withheld_centres} withheld)" if self.withheld_centres
                                                   else "")), ("Converged:", status),
                ("Participants:", ", ".join(self.participants) or "–")]
        right = [("No. observations:", f"{self.n:,}"), ("Events:", f"{self.events:,}"),
                 ("Log-likelihood:", f"{self.loglik:.6f}"),
                 ("LL-null:", f"{self.loglik_null:.6f}" if self.loglik_null is not None else "–"),
                 (f"LR chi2 ({self.lr_df}):", f"{lr:.4f}, p = {self.lr_p:.4g}" if lr is not None else "–")]
        lines = [self.model.center(w).rstrip(), "=" * w]
        for (lk, lv), (rk, rv) in zip(left, right, strict=True):
            lv = lv if len(lv) <= 38 else lv[:37] + "…"
            lines.append(f"{lk:<14}{lv:<38}{rk:<20}{rv:>24}")
        if self.l2:
            lines.append(f"{'L2 penalty:':<12}{self.l2:g} on the " + ("standardised" if self.standardised else
                                                                       "reported") + " coefficients")
        if self.standardised:
            lines.append("Numeric covariates are standardised: per pooled SD, around the pooled mean.")
        lines.append("=" * w)
        ratio = self.ratio_name
        lines.append(f"{'':<30}{'coef':>10}{'std err':>10}{'z':>9}{'P>|z|':>8}{'[0.025':>10}{'0.975]':>10}"
                     f"{ratio:>13}")
        lines.append("-" * w)
        for r in self.rows():
            name = r["coefficient"] if len(r["coefficient"]) <= 29 else r["coefficient"][:28] + "…"
            ratio_value = r.get(ratio.replace(" ", "_"))
            lines.append(f"{name:<30}{r['coef']:>10.4f}{r['se']:>10.4f}{r['z']:>9.3f}{r['p']:>8.3f}"
                         f"{r['ci_low']:>10.4f}{r['ci_high']:>10.4f}"
                         + (f"{ratio_value:>13.4f}" if ratio_value is not None else ""))
        lines.append("=" * w)
        for note in self.notes:
            lines.append(f"Note: {note}")
        return "\n".join(lines)
