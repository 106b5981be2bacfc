"""One model fit, independent of how its rounds travel: each round's `Analysis` message out, each
summed and finalised round in, a `ModelResult` at the end.

    fit = ModelFit(template, dictionary, FitOptions())
    while (analysis := fit.next_analysis()) is not None:
        summed = <run one federated round of `analysis`>      # query plane, or Flower
        fit.observe(summed)                                   # the finalised round (a Result)
    result = fit.result(participants=…)

The query plane's client (oncofed.federation.client.analyse) drives it; a Flower ServerApp can
drive the very same object, so both transports take the same steps to the same numbers.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from oncofed.analyses.catalogue import CATALOGUE, parse_analysis
from oncofed.analyses.model_result import ModelResult
from oncofed.analyses.newton import FitError, FitOptions, Newton, RoundSums, Step
from oncofed.analyses.regression import ModelAnalysis, ModelSpec
from oncofed.dictionary import Dictionary
from oncofed.v1 import query_pb2 as pb

MODELS = ("logistic", "cox", "poisson", "cox_pooled")


class ModelFit:
    """A fit in progress (see the module docstring)."""

    def __init__(self, template: pb.Analysis, dictionary: Dictionary, options: FitOptions | None = None) -> None:
        kind = template.WhichOneof("kind")
        if kind not in MODELS:
            raise FitError(f"a model fit needs a model ({', '.join(MODELS)}), not {kind or 'none'}")
        self.kind = kind
        self.template = pb.Analysis()
        self.template.CopyFrom(template)
        msg = getattr(self.template, kind)
        msg.ClearField("beta")
        msg.ClearField("round")
        self.spec: ModelSpec = parse_analysis(self.template, dictionary)
        self.options = options or FitOptions()
        self.beta_bits = self.spec.beta_scale_bits
        msg.beta_scale_bits = self.beta_bits
        the = CATALOGUE[kind]
        assert isinstance(the, ModelAnalysis)
        self.analysis: ModelAnalysis = the
        spec = self.spec
        self.newton = Newton(spec.coefficient_names(), intercept=spec.intercept,
                             dummies=[c.dummy for c in spec.design.columns], options=self.options,
                             beta_scale_bits=self.beta_bits, stratified=kind == "cox", baselines=spec.intervals,
                             warm_start=lambda sums: self.analysis.warm_start(spec, sums),
                             spread=lambda beta: self.analysis.predictor_spread(spec, beta.tolist()))
        self.steps: list[Step] = []
        self.last: dict[str, Any] = {}
        self.centres = 0

    @property
    def round(self) -> int:
        return len(self.steps) + 1

    def next_analysis(self) -> pb.Analysis | None:
        """The next round's analysis (its β and round set), or None when the fit is done."""
        beta = self.newton.propose()
        if beta is None:
            return None
        out = pb.Analysis()
        out.CopyFrom(self.template)
        msg = getattr(out, self.kind)
        msg.beta[:] = beta
        msg.round = self.round
        self.analysis.round_message(msg, self.newton)
        return out

    def observe(self, result: dict[str, Any]) -> Step:
        """One round's finalised, summed result (oncofed.analyses.finalise of the summed vector)."""
        sums = RoundSums.from_result(result)
        self.last = result
        self.centres = sums.centres
        step = self.newton.observe(sums)
        self.steps.append(step)
        return step

    def result(self, *, participants: list[str] | None = None, seconds: float = 0.0) -> ModelResult:
        """The fitted model (after `next_analysis()` returned None)."""
        f = self.newton.fitted()
        keep = [i for i in range(self.spec.p) if f.free is None or f.free[i]]
        se = [math.sqrt(v) if v > 0 else math.nan for v in np.diag(f.covariance)[keep]]
        names = [self.spec.coefficient_names()[i] for i in keep]
        spec, s = self.spec, f.sums
        if spec.intercept:
            ones, zeros = s.events, s.n - s.events
            null = sum(k * math.log(k / s.n) for k in (ones, zeros) if k > 0)
            df = len(keep) - 1
        else:
            assert self.newton.first is not None
            closed = self.analysis.null_loglik(spec, self.newton.first)
            null = f.loglik_zero if closed is None else closed
            df = len(keep) - spec.intervals
        notes = list(f.notes)
        if s.withheld:
            notes.append(f"{s.withheld} centre(s) withheld their sums (disclosure gates): the model is fitted "
                         "over the others")
        if self.options.l2:
            notes.append("standard errors of a penalised fit come from the penalised information")
        more, tolerance = self.analysis.fit_notes(spec, self.last)
        notes.extend(more)
        ratio = "odds ratio" if self.kind == "logistic" else "hazard ratio"
        name = self.analysis.title(spec)
        return ModelResult(model=name, outcome=spec.outcome_label, coefficients=names,
                           beta=[float(f.beta[i]) for i in keep], se=se, ratio_name=ratio, loglik=f.loglik,
                           loglik_null=null, lr_df=df, n=s.n, events=s.events, centres=s.centres - s.withheld,
                           iterations=f.iterations, rounds=f.rounds, converged=f.converged,
                           participants=list(participants or []), withheld_centres=s.withheld,
                           ties=spec.ties, l2=self.options.l2, standardised=self.options.standardise, notes=notes,
                           seconds=seconds, tolerance_se=tolerance)
