"""What travels in a Flower message between the ServerApp and a ClientApp: one `ConfigRecord`
named "oncofed" holding the step and its signed bytes. Both apps read and write it only here.

    prepare  → {"step": "prepare", "envelope": <the researcher's signed envelope>}
             ← {"kind": "accept" | "decline", "data": <signed accept or decline>}
    round    → {"step": "round", "query-hash": <32 bytes>, "round": r, "beta": [sint64, …],
                "offset": sint64,                           (the pooled Cox model's; else 0)
                "accepts": [<signed accept>, …]}            (the participant set S)
             ← {"kind": "answer" | "failure", "data": <signed round answer or failure>}

Everything that matters is signed by whoever made it; Flower only carries bytes, so a message is
refused when a key is missing or of the wrong type, and the signatures are checked by the party
that reads them (the node: the envelope and S; the ServerApp: accepts and answers).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from flwr.app import ConfigRecord, RecordDict

from oncofed.errors import OncofedError

RECORD = "oncofed"
PREPARE = "prepare"
ROUND = "round"
REPLY_KINDS = ("accept", "decline", "answer", "failure")


class MessageError(OncofedError):
    """A Flower message that is not one of ours, or is malformed."""


@dataclass(frozen=True)
class RoundRequest:
    query_hash: bytes
    round: int
    beta: tuple[int, ...]
    accepts: tuple[bytes, ...]
    offset: int = 0


def prepare_content(envelope: bytes) -> RecordDict:
    return RecordDict({RECORD: ConfigRecord({"step": PREPARE, "envelope": bytes(envelope)})})


def round_content(query_hash: bytes, round_: int, beta: Sequence[int], accepts: Sequence[bytes], *,
                  offset: int = 0) -> RecordDict:
    """A round: β, and the coordinator's common offset c of the pooled Cox model (0 for every
    other model), both at the signed beta_scale_bits."""
    return RecordDict({RECORD: ConfigRecord({"step": ROUND, "query-hash": bytes(query_hash), "round": int(round_),
                                             "beta": [int(b) for b in beta], "offset": int(offset),
                                             "accepts": [bytes(a) for a in accepts]})})


def reply_content(kind: str, data: bytes) -> RecordDict:
    if kind not in REPLY_KINDS:
        raise ValueError(f"unknown reply kind {kind!r}")
    return RecordDict({RECORD: ConfigRecord({"kind": kind, "data": bytes(data)})})


def _record(content: RecordDict) -> ConfigRecord:
    try:
        record = content.config_records[RECORD]
    except KeyError:
        raise MessageError(f"the message carries no {RECORD!r} config record") from None
    return record


def _bytes(record: ConfigRecord, key: str) -> bytes:
    value = record.get(key)
    if not isinstance(value, bytes):
        raise MessageError(f"the message's {key!r} is missing or not bytes")
    return value


def _str(record: ConfigRecord, key: str) -> str:
    value = record.get(key)
    if not isinstance(value, str):
        raise MessageError(f"the message's {key!r} is missing or not text")
    return value


def _int(record: ConfigRecord, key: str) -> int:
    value = record.get(key)
    if not isinstance(value, int) or isinstance(value, bool):
        raise MessageError(f"the message's {key!r} is missing or not an integer")
    return value


def step_of(content: RecordDict) -> str:
    step = _str(_record(content), "step")
    if step not in (PREPARE, ROUND):
        raise MessageError(f"unknown step {step!r}")
    return step


def read_prepare(content: RecordDict) -> bytes:
    return _bytes(_record(content), "envelope")


def read_round(content: RecordDict) -> RoundRequest:
    record = _record(content)
    beta = record.get("beta", [])
    accepts = record.get("accepts", [])
    if not isinstance(beta, list) or not all(isinstance(b, int) and not isinstance(b, bool) for b in beta):
        raise MessageError("the message's 'beta' is not a list of integers")
    if not isinstance(accepts, list) or not all(isinstance(a, bytes) for a in accepts):
        raise MessageError("the message's 'accepts' is not a list of signed accepts")
    signed = tuple(a for a in accepts if isinstance(a, bytes))
    offset = record.get("offset", 0)
    if not isinstance(offset, int) or isinstance(offset, bool):
        raise MessageError("the message's 'offset' is not an integer")
    return RoundRequest(_bytes(record, "query-hash"), _int(record, "round"), tuple(int(b) for b in beta), signed,
                        offset)


def read_reply(content: RecordDict) -> tuple[str, bytes]:
    record = _record(content)
    kind = _str(record, "kind")
    if kind not in REPLY_KINDS:
        raise MessageError(f"unknown reply kind {kind!r}")
    return kind, _bytes(record, "data")
