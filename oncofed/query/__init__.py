"""The query contract both sides share (floor 1): text form, values, the vector's shape, errors,
and the one query hash.

    from oncofed.query import loads, query_hash, QueryError
    body = loads(open("q.json").read(), dictionary=dictionary.load())

Nothing here reads data or knows a particular analysis: the analyses lay out their own vectors
(oncofed.analyses), and the node and the researcher's client both import this package.
"""

from __future__ import annotations

import hashlib

from oncofed.query.errors import QueryError, invalid
from oncofed.query.refusals import Coarse, Refusal
from oncofed.query.textform import from_mapping, loads, to_mapping
from oncofed.query.vector import MOD, decode, encode, n_total, sum_vectors

#: The type tag of a signed query envelope (oncofed.keys.envelope).
QUERY_TAG = "oncofed/query/v1"


def query_hash(exact_bytes: bytes) -> str:
    """THE query hash (hex SHA-256) of the exact bytes a query arrived in.

    For a signed query those are the signed envelope's bytes, as received — never a re-serialised
    body, since protobuf serialisation is not canonical. For a centre admin's local preview,
    which has no envelope, they are the serialised body the node then parses. Verification, the
    engine, the audit log, the privacy budget, rate limits and the admin preview all take this
    one value from the request instead of hashing anything themselves.
    """
    return hashlib.sha256(bytes(exact_bytes)).hexdigest()


__all__ = ["MOD", "QUERY_TAG", "Coarse", "QueryError", "Refusal", "decode", "encode", "from_mapping", "invalid",
           "loads", "n_total", "query_hash", "sum_vectors", "to_mapping"]
