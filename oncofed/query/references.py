"""What a query names, found by reflection over the message so it follows the contract as it
grows: the dictionary fields (cohort predicates, analysis fields) a permit must list, and the
survival outcomes (a survival analysis', a derived status field's) it must allow. The verifier
checks both before the engine runs; nothing here reads data.
"""

from __future__ import annotations

from google.protobuf.message import Message

from oncofed.dictionary import Dictionary

#: Names of string fields that hold dictionary field names, wherever they sit in a QueryBody.
FIELD_NAME_KEYS = frozenset({"field", "fields", "group_by", "is_null", "not_null", "outcome", "covariates"})
OUTCOME_ENUM = "oncofed.v1.Outcome"


def referenced_fields(msg: Message) -> set[str]:
    """Every dictionary field name a message tree names (cohort predicates, analysis fields),
    found by field name so it follows the query contract as it grows."""
    found: set[str] = set()
    for fd, value in msg.ListFields():
        items = list(value) if fd.is_repeated else [value]
        if fd.message_type is not None:
            for item in items:
                found |= referenced_fields(item)
        elif fd.name in FIELD_NAME_KEYS and fd.type == fd.TYPE_STRING:
            found.update(v for v in items if v)
    return found


def referenced_outcomes(msg: Message, d: Dictionary) -> set[str]:
    """Every survival outcome a query follows, lower-cased as permits name them ("os", "rfs"):
    the value of each Outcome enum in the message tree (found by type, so it follows the contract
    as it grows) and the outcome of each derived status field it names."""
    found = {d.fields[f].at_query for f in referenced_fields(msg) if f in d.fields and d.fields[f].at_query}
    stack = [msg]
    while stack:
        m = stack.pop()
        for fd, value in m.ListFields():
            items = list(value) if fd.is_repeated else [value]
            if fd.message_type is not None:
                stack.extend(items)
            elif fd.enum_type is not None and fd.enum_type.full_name == OUTCOME_ENUM:
                found.update(fd.enum_type.values_by_number[v].name.removeprefix("OUTCOME_").lower()
                             for v in items if v and v in fd.enum_type.values_by_number)
    return found
