"""logistic — one round of a federated logistic regression (the pooled model, exactly).

Outcome: a categorical field with its stated positive level(s) (1; every other present level 0),
or a derived event status (DerivedEvent: the survival event within a horizon). Design: an
intercept, then the covariates' columns (oncofed.analyses.design); complete cases. At β each
centre returns, over its own rows,

    gradient     Σ x_i (y_i − p_i)              information  Σ x_i x_iᵀ p_i (1 − p_i)
    log-lik      Σ y_i η_i − log(1 + e^{η_i})   extreme      1 if any p_i < 1e-8 or p_i > 1 − 1e-8, else 0

with η = xᵀβ and p = 1/(1 + e^{−η}), in the layout of oncofed.analyses.regression. Their sums are
the pooled model's: the coordinator's Newton step on them is the pooled fit (statsmodels `Logit`).
An L2 penalty and standardisation are the coordinator's (added once, never per centre).
`extreme` is a flag per centre, not a count: at a steep β the count of extreme rows was an exact
count of the rows on one side of a step (D30); the coordinator needs only whether any exist.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import numpy as np
import numpy.typing as npt
from google.protobuf.message import Message

from oncofed.analyses.base import DesignQuestion, DesignRows
from oncofed.analyses.design import matrix, parse_design
from oncofed.analyses.regression import (
    ModelAnalysis,
    ModelRaw,
    ModelSpec,
    cutoff_of,
    fit_keys,
    moments_and_gates,
    parse_beta,
    upper,
)
from oncofed.analyses.survival import MAX_HORIZON_DAYS, OUTCOMES
from oncofed.dictionary import Dictionary
from oncofed.query.errors import invalid
from oncofed.query.values import categorical_field
from oncofed.v1 import query_pb2 as pb

EXTREME = 1e-8


class Logistic(ModelAnalysis):
    kind = "logistic"
    model_name = "logistic regression"

    def parse(self, msg: Message, d: Dictionary, allowed: Collection[str] | None, path: str) -> ModelSpec:
        assert isinstance(msg, pb.Logistic)
        derived = msg.event.survival != pb.OUTCOME_UNSPECIFIED
        positive: tuple[int, ...] = ()
        label = msg.outcome
        if derived:
            if msg.outcome or msg.positive:
                raise invalid(f"{path}.outcome", "give an outcome field or a derived event, not both")
            survival = OUTCOMES.get(msg.event.survival)
            if survival is None:
                raise invalid(f"{path}.survival", "the derived event is OS or RFS")
            cutoff = cutoff_of(msg.event.cutoff, f"{path}.cutoff")
            horizon = msg.event.horizon_days
            if horizon > MAX_HORIZON_DAYS:
                raise invalid(f"{path}.horizon_days", f"at most {MAX_HORIZON_DAYS} days")
            label = f"{survival} event" + (f" within {horizon} days" if horizon else "")
        else:
            if not msg.outcome:
                raise invalid(f"{path}.outcome", "name the outcome field (or a derived event: survival, cutoff)")
            f = categorical_field(d, msg.outcome, f"{path}.outcome", allowed)
            if f.at_query:
                raise invalid(f"{path}.outcome", f"{f.name!r} is a status derived per query: state the derived "
                              "event instead (survival, cutoff, horizon_days)")
            codes = list(f.codes)
            wanted = list(msg.positive) or (["1"] if f.type == "boolean" else [])
            if not wanted:
                raise invalid(f"{path}.positive", f"state the level(s) of {f.name} counted as 1 ({', '.join(codes)})")
            for i, code in enumerate(wanted):
                if code not in f.codes:
                    raise invalid(f"{path}.positive[{i}]", f"{code!r} is not a code of {f.name}")
            positive = tuple(sorted({codes.index(c) for c in wanted}))
            if len(positive) == len(codes):
                raise invalid(f"{path}.positive", "every level is positive: nothing is left as 0")
            label = f"{f.name} in ({', '.join(codes[i] for i in positive)})"
        design = parse_design(d, msg.covariates, msg.reference, allowed, path, exclude=msg.outcome)
        p = design.q + 1
        beta, sb, s = parse_beta(msg, p, path)
        fit, beta_key = fit_keys(msg, self.kind)
        if derived:
            question = DesignQuestion(design.fields, survival=OUTCOMES[msg.event.survival], cutoff=cutoff,
                                      horizon_days=msg.event.horizon_days)
        else:
            question = DesignQuestion((*design.fields, msg.outcome))
        return ModelSpec(kind=self.kind, design=design, intercept=True, question=question,
                         outcome_field=msg.outcome, positive=positive, ties="", beta=beta, beta_scale_bits=sb,
                         scale_bits=s, round=msg.round, fit_key=fit, beta_key=beta_key, outcome_label=label)

    def evaluate(self, spec: ModelSpec, rows: DesignRows) -> ModelRaw:
        key = ("logistic", spec.design, spec.question, spec.positive)
        prepared = rows.prepared.get(key)
        if prepared is None:                          # β-free: once for every round over these rows
            values = rows.values
            k = len(spec.design.fields)
            y = outcome(spec, rows)
            xc = matrix(spec.design, values[:, :k])
            sx, sxx, counts = moments_and_gates(spec.design, values, xc, y, "outcome")
            prepared = rows.prepared[key] = (*patterns(np.hstack([np.ones((rows.n, 1)), xc]), y), sx, sxx, counts)
        x, y, m, sx, sxx, counts = prepared
        eta = x @ np.asarray(spec.beta, dtype=np.float64)
        e = np.exp(-np.abs(eta))                      # stable in both tails
        prob = np.where(eta >= 0, 1.0 / (1.0 + e), e / (1.0 + e))
        w = m * e / (1.0 + e) ** 2                    # p(1 − p), without cancellation
        gradient = x.T @ (m * (y - prob))
        info = x.T @ (x * w[:, None])
        loglik = float(np.sum(m * (y * eta - (np.maximum(eta, 0.0) + np.log1p(e)))))
        extreme = int(bool(np.any((prob < EXTREME) | (prob > 1.0 - EXTREME))))   # a flag (D30)
        return ModelRaw(n=rows.n, events=int(y @ m), sum_x=sx, sum_xx=sxx, gradient=gradient,
                        information=upper(info), loglik=loglik, extreme=extreme, counts=dict(counts))


def outcome(spec: ModelSpec, rows: DesignRows) -> npt.NDArray[np.float64]:
    """The 0/1 outcome of each row: a field's positive levels, or an event by the horizon — one
    rule for every model trained on the logistic design (the exact fit and FedAvg)."""
    if spec.question.survival is None:
        return np.isin(rows.values[:, len(spec.design.fields)], spec.positive).astype(np.float64)
    assert rows.event is not None and rows.time is not None
    horizon = spec.question.horizon_days
    return rows.event * (rows.time <= horizon) if horizon else rows.event.copy()


def patterns(x: npt.NDArray[np.float64], y: npt.NDArray[np.float64]) -> tuple[Any, ...]:
    """Rows that share every column and the outcome add the same term: keep each pattern once
    with its multiplicity when that halves the rows (integer ages and dummies usually do)."""
    both = np.column_stack([x, y])
    if len(both) < 64:
        return x, y, np.ones(len(y))
    order = np.lexsort(both.T[::-1])
    ranked = both[order]
    new = np.concatenate([[True], (ranked[1:] != ranked[:-1]).any(axis=1)])
    if 2 * int(new.sum()) > len(both):
        return x, y, np.ones(len(y))
    first = np.flatnonzero(new)
    counts = np.diff(np.append(first, len(both))).astype(np.float64)
    unique = ranked[first]
    return np.ascontiguousarray(unique[:, :-1]), unique[:, -1].copy(), counts


ANALYSIS = Logistic()
