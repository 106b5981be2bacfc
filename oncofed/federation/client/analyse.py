"""Federated models over the query plane: the researcher's client is the coordinator.

    request = load_request(Path("model.toml").read_bytes(), dictionary=d)
    with FederationClient.connect(creds, "hub:7800") as client:
        result = run_model(client, request, dictionary=d)       # a ModelResult
    print(result.summary()); result.to_pandas()

Each round is one federated query (oncofed.federation.client.client): signed, sealed to each
centre, secure-aggregated, verified. It carries the current coefficients; the summed round goes
into the coordinator's Newton update (oncofed.analyses.fitting), which proposes the next. The
hub relays sealed bytes only: it never sees the model, the coefficients or a sum. Every round
must be answered by the same participant set (the sums of different sets do not belong to one
likelihood), else the fit stops.

A model file (TOML or JSON):

    model = { cox = { outcome = "OS", cutoff = "2025-12-31", covariates = ["age_at_incidence", "er"] } }
    targets = ["centre-a", "centre-b", "centre-c"]      # or --to
    permit = "study.permit"                             # a permit file or its SHA-256; or --permit
    min_participants = 3                                # optional
    cohort = { field = "topography", prefix = "C50" }   # optional, the query text form
    [fit]                                               # optional: the coordinator's options
    l2 = 0.0
    standardise = false
    max_rounds = 25
    allow_withheld = false
"""

from __future__ import annotations

import json
import time
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from oncofed.analyses.fitting import MODELS, ModelFit
from oncofed.analyses.model_result import ModelResult
from oncofed.analyses.newton import FitError, FitOptions, Step
from oncofed.dictionary import Dictionary
from oncofed.federation.client.client import DEFAULT_TIMEOUT, FederationClient, Progress
from oncofed.query.textform import analysis_from, cohort_from, dictionary_ref
from oncofed.v1 import query_pb2 as pb

_KEYS = {"model", "targets", "permit", "min_participants", "cohort", "fit", "epsilon"}
#: Trained on Flower only (oncofed analyse flower): FedAvg's rounds are many, each a ClientApp step.
FLOWER_ONLY = ("fedavg",)


@dataclass(frozen=True)
class ModelRequest:
    """A model to fit: the analysis (without coefficients), where, under which permit, and how."""

    analysis: pb.Analysis
    targets: tuple[str, ...]
    permit_hash: bytes
    min_participants: int = 0
    cohort: pb.Cohort | None = None
    options: FitOptions = field(default_factory=FitOptions)
    #: ε per round under a differentially private permit (signed in the body; FedAvg only).
    epsilon: float = 0.0


@dataclass(frozen=True)
class RoundDone:
    """One round as the progress display shows it."""

    step: Step
    seconds: float
    participants: tuple[str, ...]


def permit_hash_of(value: str, base: Path | None = None) -> bytes:
    """A permit file (its SHA-256) or the permit's SHA-256 in hex."""
    path = Path(value) if base is None or Path(value).is_absolute() else base / value
    if path.is_file():
        from oncofed.keys.permits import permit_sha256

        return bytes.fromhex(permit_sha256(path.read_bytes()))
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        raw = b""
    if len(raw) != 32:
        raise FitError(f"permit: {value!r} is neither a permit file nor a SHA-256 in hex")
    return raw


def load_request(text: bytes, *, base: Path | None = None, permit: str | None = None,
                 targets: list[str] | None = None, min_participants: int | None = None) -> ModelRequest:
    """Read a model file (see the module docstring); arguments given here override the file."""
    try:
        raw = text.decode("utf-8")
        doc = json.loads(raw) if raw.lstrip().startswith("{") else tomllib.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        raise FitError(f"the model file is not valid TOML or JSON: {exc}") from None
    if not isinstance(doc, Mapping):
        raise FitError("the model file is a mapping with 'model' and 'targets'")
    unknown = sorted(set(doc) - _KEYS)
    if unknown:
        raise FitError(f"unknown key {unknown[0]!r} in the model file (known: {', '.join(sorted(_KEYS))})")
    if "model" not in doc:
        raise FitError("the model file needs 'model', e.g. model = { logistic = { outcome = … } }")
    analysis = analysis_from(doc["model"], "model")
    kind = analysis.WhichOneof("kind")
    if kind not in (*MODELS, *FLOWER_ONLY):
        raise FitError(f"model: {kind} is not a model ({', '.join((*MODELS, *FLOWER_ONLY))})")
    chosen = targets if targets is not None else doc.get("targets", [])
    if not isinstance(chosen, list) or not chosen or not all(isinstance(t, str) and t for t in chosen):
        raise FitError("name the target centres (targets = [...] or --to)")
    permit_value = permit if permit is not None else doc.get("permit")
    if not isinstance(permit_value, str):
        raise FitError("name the permit (permit = \"study.permit\" or --permit)")
    mp = min_participants if min_participants is not None else doc.get("min_participants", 0)
    if isinstance(mp, bool) or not isinstance(mp, int) or mp < 0:
        raise FitError("min_participants is a whole number")
    cohort = cohort_from(doc["cohort"], "cohort") if doc.get("cohort") is not None else None
    epsilon = doc.get("epsilon", 0.0)
    if isinstance(epsilon, bool) or not isinstance(epsilon, int | float) or not 0 <= epsilon <= 10:
        raise FitError("epsilon (per round, under a differentially private permit) is a number from 0 to 10")
    if epsilon and kind not in FLOWER_ONLY:
        raise FitError(f"epsilon: {kind} is not offered under a differentially private permit (fedavg is)")
    return ModelRequest(analysis, tuple(chosen), permit_hash_of(permit_value, base), mp, cohort,
                        fit_options(doc.get("fit", {})), float(epsilon))


def fit_options(raw: Any) -> FitOptions:
    """The `[fit]` table: the coordinator's options (unknown keys are refused, not ignored)."""
    if not isinstance(raw, Mapping):
        raise FitError("[fit] is a table of options")
    known = {f.name: f for f in fields(FitOptions)}
    extra = sorted(set(raw) - set(known))
    if extra:
        raise FitError(f"unknown [fit] option {extra[0]!r} (known: {', '.join(sorted(known))})")
    kw: dict[str, Any] = {}
    for key, value in raw.items():
        default = getattr(FitOptions(), key)
        if isinstance(default, bool) != isinstance(value, bool) or not isinstance(value, type(default) | int):
            raise FitError(f"[fit] {key}: expected {type(default).__name__}")
        kw[key] = type(default)(value)
    return FitOptions(**kw)


def round_body(request: ModelRequest, analysis: pb.Analysis, dictionary: Dictionary) -> pb.QueryBody:
    """The query of one round (the client fills in nonce, times and the researcher's key)."""
    body = pb.QueryBody(permit_hash=request.permit_hash, target_centres=list(request.targets),
                        min_participants=request.min_participants or min(3, len(request.targets)),
                        dictionary=dictionary_ref(dictionary))
    body.analysis.CopyFrom(analysis)
    if request.cohort is not None:
        body.cohort.CopyFrom(request.cohort)
    return body


def run_model(client: FederationClient, request: ModelRequest, *, dictionary: Dictionary,
              timeout: float = DEFAULT_TIMEOUT, on_round: Callable[[RoundDone], None] | None = None,
              on_progress: Callable[[list[Progress]], None] | None = None) -> ModelResult:
    """Fit the model: one federated query per round until the Newton update stops."""
    started = time.monotonic()
    if request.analysis.WhichOneof("kind") in FLOWER_ONLY:
        raise FitError("fedavg trains on Flower only: oncofed analyse flower")
    fit = ModelFit(request.analysis, dictionary, request.options)
    participants: tuple[str, ...] | None = None
    while (analysis := fit.next_analysis()) is not None:
        t = time.monotonic()
        answer = client.run(round_body(request, analysis, dictionary), dictionary=dictionary, timeout=timeout,
                            on_progress=on_progress)
        if participants is None:
            participants = answer.participants
        elif answer.participants != participants:
            raise FitError(f"round {fit.round}: the participating centres changed ({', '.join(answer.participants)} "
                           f"instead of {', '.join(participants)}); a fit needs the same centres in every round")
        step = fit.observe(answer.result)
        if on_round is not None:
            on_round(RoundDone(step, time.monotonic() - t, answer.participants))
    return fit.result(participants=list(participants or ()), seconds=time.monotonic() - started)
