"""The researcher's side of a Flower model fit: sign the run, read its result (docs/flower.md).

    config = build_run_config(credentials, request, dictionary=d, registry=registry_bytes,
                              result_path="/srv/hub/results/run-1.json")
    # flwr run … --run-config with these pairs (oncofed analyse flower does it), or
    # oncofed.flower.simulation.run_fits(node_dirs, [config]) on the simulation engine
    result = read_result("/srv/hub/results/run-1.json")          # a ModelResult

`request` is the query plane's `ModelRequest` (oncofed.federation.client.analyse.load_request
reads the same model files): the same model, cohort, targets, permit and `[fit]` options. The
envelope signs the model *without* coefficients, with `flower.max_rounds` = the fit's
`max_rounds`; the ServerApp chooses β each round and every centre caps the rounds itself. One
envelope (one nonce, consumed at each centre's prepare) covers all rounds of the run.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path

from oncofed import dictionary as dictmod
from oncofed.analyses.fedavg import KIND as FEDAVG
from oncofed.analyses.fedavg_training import FedAvgFit, FedAvgResult
from oncofed.analyses.fitting import ModelFit
from oncofed.analyses.model_result import ModelResult
from oncofed.analyses.newton import FitError, FitOptions
from oncofed.federation.client.analyse import ModelRequest, round_body
from oncofed.flower.runconfig import (
    DEFAULT_NODE_WAIT,
    DEFAULT_PREPARE_TIMEOUT,
    DEFAULT_ROUND_TIMEOUT,
    FlowerRunError,
    b64,
    read_run,
    result_of,
)
from oncofed.keys.envelope import sign
from oncofed.keys.member import MemberCredentials
from oncofed.keys.registry import verify_registry
from oncofed.query import QUERY_TAG
from oncofed.v1 import query_pb2 as pb

DEFAULT_LIFETIME = 6 * 3600          # a run's envelope is valid this long (at most 24 h)

__all__ = ["FlowerRunError", "build_run_config", "read_result", "reference_beta_of", "reference_request",
           "signed_run"]


def _extension_bytes(dictionary: dictmod.Dictionary, extension: bytes | None) -> bytes:
    """The extension file the envelope's dictionary names: given, or one shipped with oncofed."""
    if not dictionary.extension_sha256:
        if extension:
            raise FitError("an extension was given for a dictionary without one")
        return b""
    if extension is None:
        for path in dictmod.bundled_extensions():
            data = path.read_bytes()
            if hashlib.sha256(data).hexdigest() == dictionary.extension_sha256:
                return data
        raise FitError(f"the dictionary's extension {dictionary.extension_name} {dictionary.extension_version} is "
                       "not shipped with oncofed: pass its file's bytes (extension=…)")
    if hashlib.sha256(extension).hexdigest() != dictionary.extension_sha256:
        raise FitError("the extension given is not the dictionary's (SHA-256 differs)")
    return bytes(extension)


def signed_run(credentials: MemberCredentials, request: ModelRequest, *, dictionary: dictmod.Dictionary,
               lifetime: int = DEFAULT_LIFETIME, extra_rounds: int = 0) -> bytes:
    """The researcher's signed envelope of one run: the model (checked against the dictionary
    here, so a mistake fails on the researcher's machine), targets, permit, `flower` set."""
    if not 60 <= lifetime <= 24 * 3600:
        raise FitError("a run's lifetime is 60 s to 24 h")
    if not request.targets:
        raise FitError("name the target centres")
    if request.analysis.WhichOneof("kind") == FEDAVG:                   # parses the model
        template = FedAvgFit(request.analysis, dictionary, rounds=request.options.max_rounds).template
    else:
        template = ModelFit(request.analysis, dictionary, request.options).template
    body = round_body(request, template, dictionary)
    body.epsilon = request.epsilon
    now = int(time.time())
    body.nonce = os.urandom(16)
    body.issued_at, body.expires_at = now, now + lifetime
    body.researcher_key_id = credentials.identity.public.signing_fingerprint
    body.flower.CopyFrom(pb.FlowerRun(max_rounds=request.options.max_rounds + extra_rounds))
    return sign(credentials.identity, QUERY_TAG, body.SerializeToString())


def build_run_config(credentials: MemberCredentials, request: ModelRequest, *, dictionary: dictmod.Dictionary,
                     registry: bytes, result_path: str, extension: bytes | None = None,
                     lifetime: int = DEFAULT_LIFETIME, prepare_timeout: float = DEFAULT_PREPARE_TIMEOUT,
                     round_timeout: float = DEFAULT_ROUND_TIMEOUT, node_wait: float = DEFAULT_NODE_WAIT,
                     reference_beta: Sequence[float] | None = None) -> dict[str, str]:
    """The run config of one model fit on Flower (keys: oncofed.flower.runconfig): the signed
    envelope, the signed `registry` (verified here under the researcher's pinned root), the root,
    the dictionary's extension, the `[fit]` options and where the ServerApp writes the result.
    `reference_beta` (a FedAvg request without DP): the pooled exact fit's coefficients, one per
    column of the design (`reference_beta_of`), evaluated in one more signed round after training."""
    try:
        verify_registry(credentials.tls.root_cert_pem, credentials.root_fingerprint, registry)
    except Exception as exc:
        raise FitError(f"the registry does not verify under your pinned root: {exc}") from None
    if not result_path:
        raise FitError("name the result path (where the ServerApp writes the result)")
    ext = _extension_bytes(dictionary, extension)
    reference = [float(b) for b in reference_beta or ()]
    if reference and (request.analysis.WhichOneof("kind") != FEDAVG or request.epsilon):
        raise FitError("a reference is evaluated for a FedAvg run without DP only")
    envelope = signed_run(credentials, request, dictionary=dictionary, lifetime=lifetime,
                          extra_rounds=1 if reference else 0)
    return {
        "envelope": b64(envelope), "registry": b64(bytes(registry)), "root-cert": b64(credentials.tls.root_cert_pem),
        "root-fingerprint": credentials.root_fingerprint, "extension": b64(ext),
        "fit-options": json.dumps(asdict(request.options), sort_keys=True), "result-path": str(result_path),
        "prepare-timeout": repr(float(prepare_timeout)), "round-timeout": repr(float(round_timeout)),
        "node-wait": repr(float(node_wait)), "reference-beta": json.dumps(reference) if reference else "",
    }


def reference_request(request: ModelRequest) -> ModelRequest:
    """The exact model a FedAvg request trains towards: logistic regression of the same outcome,
    covariates, references, cohort, targets and permit, fitted by Newton with the default `[fit]`
    options (the permit must allow `logistic` too) — the pooled fit whose log-likelihood a FedAvg
    run's rounds are compared with."""
    f = request.analysis.fedavg
    if request.analysis.WhichOneof("kind") != FEDAVG:
        raise FitError("a reference fit is for a fedavg model")
    analysis = pb.Analysis(logistic=pb.Logistic(outcome=f.outcome, positive=list(f.positive), event=f.event,
                                                covariates=list(f.covariates), reference=list(f.reference)))
    options = FitOptions(max_linear_predictor=request.options.max_linear_predictor)
    return replace(request, analysis=analysis, options=options, epsilon=0.0)


def reference_beta_of(request: ModelRequest, pooled: ModelResult, *, dictionary: dictmod.Dictionary) -> list[float]:
    """The pooled exact fit's coefficients laid out as the FedAvg model's weights (a level no row
    has, left out of the exact fit, at 0)."""
    names = FedAvgFit(request.analysis, dictionary, rounds=1).spec.coefficient_names()
    by_name = dict(zip(pooled.coefficients, pooled.beta, strict=True))
    return [float(by_name.get(n, 0.0)) for n in names]


def read_result(path: str | Path) -> ModelResult | FedAvgResult:
    """The ModelResult the ServerApp wrote to `path`; FlowerRunError (one line) when the run
    failed — which centre refused or failed, or why it could not start — or wrote nothing."""
    return result_of(read_run(path))
