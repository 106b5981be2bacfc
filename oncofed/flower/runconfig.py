"""The run config of a Flower model fit, and the result file the ServerApp writes (D25).

Flower hands a run its config as flat key/value pairs (`flwr run … --run-config`, or
`[tool.flwr.app.config]`); ours are strings, binary values base64:

    envelope          the researcher's signed query envelope (its body has `flower` set)
    registry          the federation registry (signed by the authority), to verify accepts, answers
                      and the envelope against
    root-cert         the federation root certificate (PEM), and
    root-fingerprint  its SHA-256 as the researcher pinned it: the registry must verify under it
    extension         the dictionary extension's file, when the envelope names one ("" otherwise)
    fit-options       the coordinator's options as JSON ({"l2": 0.0, "max_rounds": 25, …}; `[fit]`)
    result-path       where the ServerApp writes the result (JSON), on the ServerApp's machine
    prepare-timeout   seconds to wait for the accepts (the first message may wait for engines)
    round-timeout     seconds to wait for one round's answers
    node-wait         seconds to wait for the SuperNodes to be connected before preparing
    reference-beta    FedAvg only: the pooled exact fit's coefficients as a JSON list (intercept
                      first, every column of the design), evaluated in one round after training
                      ("" for none); the envelope's signed rounds must include that round

Only the envelope is signed by the researcher; the rest tells the coordinator how to check what
the centres sign and how to fit. A centre trusts none of it: it verifies the envelope against
its own registry and permits.

The result file: {"status": "complete", "query_hash", "result": ModelResult.to_json(), "rounds":
[{"round", "seconds"}], "prepare_seconds", "declined": {centre: code}} or {"status": "failed",
"query_hash", "error"}.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from google.protobuf.message import DecodeError

from oncofed import dictionary as dictmod
from oncofed.analyses.fedavg import KIND as FEDAVG
from oncofed.analyses.fedavg_training import FedAvgResult
from oncofed.analyses.model_result import ModelResult
from oncofed.analyses.newton import FitError, FitOptions
from oncofed.errors import OncofedError
from oncofed.federation.client.analyse import fit_options
from oncofed.keys.envelope import verify_from
from oncofed.keys.errors import InvalidMessage
from oncofed.keys.registry import Registry, verify_registry
from oncofed.keys.tls import cert_fingerprint
from oncofed.query import QUERY_TAG, query_hash
from oncofed.v1 import query_pb2 as pb

KEYS = ("envelope", "registry", "root-cert", "root-fingerprint", "extension", "fit-options", "result-path",
        "prepare-timeout", "round-timeout", "node-wait", "reference-beta")
DEFAULT_PREPARE_TIMEOUT = 300.0      # the first message of a simulation waits for Ray's workers
DEFAULT_ROUND_TIMEOUT = 120.0
DEFAULT_NODE_WAIT = 60.0


class FlowerRunError(OncofedError):
    """A Flower run that cannot start or that failed; the message says why, in one line."""


@dataclass(frozen=True)
class RunRequest:
    """A run config, checked: what the ServerApp coordinates."""

    envelope: bytes
    body: pb.QueryBody
    query_hash: bytes
    registry: Registry
    dictionary: dictmod.Dictionary
    options: FitOptions
    result_path: Path
    prepare_timeout: float = DEFAULT_PREPARE_TIMEOUT
    round_timeout: float = DEFAULT_ROUND_TIMEOUT
    node_wait: float = DEFAULT_NODE_WAIT
    reference_beta: tuple[float, ...] = ()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(config: Mapping[str, Any], key: str, *, required: bool = True) -> bytes:
    value = config.get(key, "")
    if not isinstance(value, str) or (required and not value):
        raise FlowerRunError(f"the run config needs {key!r} (base64)")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise FlowerRunError(f"the run config's {key!r} is not base64") from None


def _seconds(config: Mapping[str, Any], key: str, default: float) -> float:
    value = config.get(key, "")
    if value in ("", None):
        return default
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise FlowerRunError(f"the run config's {key!r} is a number of seconds, not {value!r}") from None
    if not math.isfinite(seconds) or seconds <= 0:
        raise FlowerRunError(f"the run config's {key!r} must be a positive number of seconds")
    return seconds


def parse_run_config(config: Mapping[str, Any]) -> RunRequest:
    """Check a run config (see the module docstring): the registry verifies under the pinned root,
    the envelope under a registry researcher's key, its body is a Flower run of a model written
    for the dictionary given. FlowerRunError says what does not fit."""
    envelope = _unb64(config, "envelope")
    root_pem = _unb64(config, "root-cert")
    pinned = str(config.get("root-fingerprint", "")).lower()
    registry_doc = _unb64(config, "registry")
    try:
        if cert_fingerprint(root_pem) != pinned:
            raise FlowerRunError("the run config's root certificate is not the pinned root (root-fingerprint)")
        registry = verify_registry(root_pem, pinned, registry_doc)
    except (OncofedError, ValueError) as exc:
        raise FlowerRunError(f"the run config's registry does not verify under its root: {exc}") from None
    try:
        signed = verify_from(envelope, tag=QUERY_TAG, keyring=registry.keyring("researcher"))
        body = pb.QueryBody.FromString(signed.body)
    except (InvalidMessage, DecodeError):
        raise FlowerRunError("the run config's envelope is not a query signed by a researcher of the registry") \
            from None
    if not body.HasField("flower"):
        raise FlowerRunError("the envelope is a query-plane query (its body has no 'flower'): it cannot run on Flower")
    extension = _unb64(config, "extension", required=False)
    try:
        dictionary = dictmod.load(extension or None)
    except OncofedError as exc:
        raise FlowerRunError(f"the run config's extension: {exc}") from None
    ref = body.dictionary
    if (ref.name, ref.version, ref.extension_sha256) != (dictionary.name, dictionary.version,
                                                        dictionary.extension_sha256):
        raise FlowerRunError(f"the envelope is written for dictionary {ref.name} {ref.version} "
                             f"{ref.extension_sha256[:12]}; the run config gives {dictionary.label()}")
    raw = config.get("fit-options", "") or "{}"
    try:
        options = fit_options(json.loads(raw) if isinstance(raw, str) else raw)
    except (json.JSONDecodeError, FitError) as exc:
        raise FlowerRunError(f"the run config's fit-options: {exc}") from None
    path = config.get("result-path", "")
    if not isinstance(path, str) or not path:
        raise FlowerRunError("the run config needs 'result-path' (where the ServerApp writes the result)")
    return RunRequest(envelope, body, bytes.fromhex(query_hash(envelope)), registry, dictionary, options, Path(path),
                      _seconds(config, "prepare-timeout", DEFAULT_PREPARE_TIMEOUT),
                      _seconds(config, "round-timeout", DEFAULT_ROUND_TIMEOUT),
                      _seconds(config, "node-wait", DEFAULT_NODE_WAIT), _reference_beta(config))


def _reference_beta(config: Mapping[str, Any]) -> tuple[float, ...]:
    raw = config.get("reference-beta", "") or ""
    try:
        values = json.loads(raw) if isinstance(raw, str) and raw else []
    except json.JSONDecodeError:
        values = None
    if not isinstance(values, list) or not all(isinstance(v, int | float) and not isinstance(v, bool)
                                               and math.isfinite(v) for v in values):
        raise FlowerRunError("the run config's 'reference-beta' is a JSON list of finite numbers")
    return tuple(float(v) for v in values)


def _write(path: Path, doc: Mapping[str, Any]) -> None:
    """Write the result atomically (a reader never sees half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(doc, indent=1, allow_nan=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def write_result(path: Path, doc: Mapping[str, Any]) -> None:
    _write(path, {"status": "complete", **doc})


def write_failure(path: Path, query_hash: bytes, error: str) -> None:
    _write(path, {"status": "failed", "query_hash": query_hash.hex(), "error": error})


def read_run(path: str | Path) -> dict[str, Any]:
    """The result file as written (the result, the rounds' times, who declined)."""
    try:
        doc = json.loads(Path(path).read_text("utf-8"))
    except FileNotFoundError:
        raise FlowerRunError(f"{path}: no result (the run has not finished, or wrote elsewhere)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FlowerRunError(f"{path}: not a result file ({exc})") from None
    if not isinstance(doc, dict) or doc.get("status") not in ("complete", "failed"):
        raise FlowerRunError(f"{path}: not a result file")
    return doc


def result_of(doc: Mapping[str, Any]) -> ModelResult | FedAvgResult:
    """The ModelResult of a result file's document; FlowerRunError with the run's error if it failed."""
    if doc.get("status") == "failed":
        raise FlowerRunError(f"the Flower run failed: {doc.get('error', 'no reason given')}")
    raw = doc.get("result")
    if not isinstance(raw, dict):
        raise FlowerRunError("the result file holds no result")
    if raw.get("kind") == FEDAVG:
        try:
            return FedAvgResult.from_json(raw)
        except TypeError as exc:
            raise FlowerRunError(f"the result file's result is incomplete: {exc}") from None
    names = {f.name for f in fields(ModelResult)}
    try:
        return ModelResult(**{k: v for k, v in raw.items() if k in names})
    except TypeError as exc:
        raise FlowerRunError(f"the result file's result is incomplete: {exc}") from None
