"""How deep a query may nest, the same on every side of the wire.

Protobuf refuses to parse a message nested more than 100 deep, with the same bare `DecodeError`
as for garbage, and Python's parsers and recursive code stop at their recursion limit. So the
contract has its own limit, well inside both: a cohort tree has at most `MAX_COHORT_DEPTH`
levels (and / or / not, the root being level 1). The text form checks it before going deeper,
the node's compiler clamps any policy to it, and the node's verifier uses `message_depth` to
tell a body nested too deep from a malformed one.
"""

from __future__ import annotations

from google.protobuf.descriptor import Descriptor

#: The deepest cohort tree the contract carries; a centre's `[query] max_depth` may only lower it.
MAX_COHORT_DEPTH = 32
#: Messages a well-formed QueryBody nests: itself, two per cohort level (an `and` level is a
#: Cohort and its CohortList), and a leaf's predicate.
MAX_BODY_DEPTH = 2 * MAX_COHORT_DEPTH + 2


def message_depth(raw: bytes, desc: Descriptor, stop: int) -> int:
    """How deep the messages in `raw` nest (the top one is 1), read from the wire format without
    recursion; counting ends once past `stop`. 0 when `raw` is not a well-formed `desc`."""
    deepest, stack = 0, [(0, len(raw), desc, 1)]
    while stack:
        pos, end, d, depth = stack.pop()
        deepest = max(deepest, depth)
        if deepest > stop:
            return deepest
        while pos < end:
            tag, pos = _varint(raw, pos, end)
            wire = tag & 7
            if tag < 0 or wire in (3, 4) or wire > 5:
                return 0
            if wire == 0:
                value, pos = _varint(raw, pos, end)
                if value < 0:
                    return 0
            elif wire == 2:
                length, pos = _varint(raw, pos, end)
                if length < 0 or pos + length > end:
                    return 0
                fd = d.fields_by_number.get(tag >> 3)
                if fd is not None and fd.message_type is not None:
                    stack.append((pos, pos + length, fd.message_type, depth + 1))
                pos += length
            else:
                pos += 8 if wire == 1 else 4
        if pos != end:
            return 0
    return deepest


def _varint(raw: bytes, pos: int, end: int) -> tuple[int, int]:
    """(value, next position), or (-1, pos) when no complete varint starts at `pos`."""
    value = shift = 0
    while pos < end and shift < 64:
        byte = raw[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7
    return -1, pos
