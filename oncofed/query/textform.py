"""The text form of a query: the JSON or TOML a researcher writes, to and from `QueryBody`.

    {"cohort": {"and": [{"field": "topography", "prefix": "C50"},
                        {"field": "incidence_date", "from": "2018-01"},
                        {"field": "her2", "in": ["pos"]}]},
     "analysis": {"kaplan_meier": {"outcome": "OS", "cutoff": "2025-12-31", "by": "stage_summary"}}}

A cohort node is a leaf `{"field": F, OP: …}` with OP one of `equals`, `in`, `prefix`, `null`
(true: missing, false: present) or `from`/`to` (a range, either open), or a combination
`{"and": [...]}`, `{"or": [...]}`, `{"not": {...}}`. This module checks the *shape* and reports the
path of the offending part (`cohort.and[2].in[0]`); what the values mean is checked against the
dictionary by the cohort compiler and the analysis' own parser (oncofed.analyses), on both sides of the wire.
"""

from __future__ import annotations

import datetime as dt
import json
import tomllib
from collections.abc import Mapping
from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from oncofed.dictionary import Dictionary
from oncofed.query.errors import invalid
from oncofed.query.nesting import MAX_COHORT_DEPTH
from oncofed.v1 import common_pb2
from oncofed.v1 import query_pb2 as pb

#: Text-form names that differ from the proto field (read → proto); _SHOWN writes them back.
_ALIASES = {"by": "group_by", "levels": "group_levels"}
_SHOWN = {"group_by": "by", "group_levels": "levels"}
#: String fields that hold a value (dates may be TOML dates, levels numbers), not a name.
_VALUE_FIELDS = frozenset({"cutoff", "group_levels"})
_LEAF_OPS = ("equals", "in", "prefix", "null", "from", "to")
_TOP_KEYS = {"cohort", "analysis", "permit_hash", "researcher_key_id", "nonce", "issued_at", "expires_at",
             "targets", "min_participants", "dictionary", "exact_dates", "epsilon", "status_cutoff"}
_MAX_TEXT = 1 << 20


def loads(text: str | bytes, fmt: str = "auto", *, dictionary: Dictionary | None = None) -> pb.QueryBody:
    """Parse a query written as JSON or TOML (`fmt` "json", "toml" or "auto": JSON when it starts
    with "{"). `dictionary` fills the dictionary reference when the text does not give one."""
    if isinstance(text, bytes):
        if len(text) > _MAX_TEXT:
            raise invalid("query", f"the query text exceeds {_MAX_TEXT} bytes")
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            raise invalid("query", "the query text is not UTF-8") from None
    if fmt == "auto":
        fmt = "json" if text.lstrip().startswith("{") else "toml"
    try:
        doc = json.loads(text) if fmt == "json" else tomllib.loads(text)
    except RecursionError:
        raise invalid("query", f"the query text is nested too deeply (a cohort has at most "
                      f"{MAX_COHORT_DEPTH} levels)") from None
    except json.JSONDecodeError as exc:
        raise invalid("query", f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except tomllib.TOMLDecodeError as exc:
        raise invalid("query", f"not valid TOML: {exc}") from None
    return from_mapping(doc, dictionary=dictionary)


def from_mapping(doc: Any, *, dictionary: Dictionary | None = None) -> pb.QueryBody:
    """Build a QueryBody from the parsed text form (see module docstring)."""
    if not isinstance(doc, Mapping):
        raise invalid("query", "a query is a mapping with 'cohort' and 'analysis'")
    _no_unknown(doc, _TOP_KEYS, "")
    body = pb.QueryBody()
    if "analysis" not in doc:
        raise invalid("analysis", "missing: say what to compute, e.g. {\"count\": {}}")
    body.analysis.CopyFrom(analysis_from(doc["analysis"], "analysis"))
    if doc.get("cohort") is not None:
        body.cohort.CopyFrom(cohort_from(doc["cohort"], "cohort"))
    if "permit_hash" in doc:
        body.permit_hash = _hex_bytes(doc["permit_hash"], "permit_hash", 32)
    if "nonce" in doc:
        body.nonce = _hex_bytes(doc["nonce"], "nonce", 16)
    body.researcher_key_id = _text(doc.get("researcher_key_id", ""), "researcher_key_id")
    body.issued_at = _int(doc.get("issued_at", 0), "issued_at", 2**62)
    body.expires_at = _int(doc.get("expires_at", 0), "expires_at", 2**62)
    targets = doc.get("targets", [])
    if not isinstance(targets, list):
        raise invalid("targets", "a list of centre ids")
    body.target_centres.extend(_text(t, f"targets[{i}]") for i, t in enumerate(targets))
    body.min_participants = _int(doc.get("min_participants", 0), "min_participants")
    body.exact_dates = _bool(doc.get("exact_dates", False), "exact_dates")
    if "status_cutoff" in doc:
        body.status_cutoff = _value(doc["status_cutoff"], "status_cutoff")
    eps = doc.get("epsilon", 0.0)
    if isinstance(eps, bool) or not isinstance(eps, int | float) or eps < 0:
        raise invalid("epsilon", "a number ≥ 0")
    body.epsilon = float(eps)
    if "dictionary" in doc:
        ref = doc["dictionary"]
        if not isinstance(ref, Mapping):
            raise invalid("dictionary", "a mapping with name and version")
        _no_unknown(ref, {"name", "version", "extension_name", "extension_sha256"}, "dictionary")
        body.dictionary.CopyFrom(common_pb2.DictionaryRef(**{k: _text(v, f"dictionary.{k}") for k, v in ref.items()}))
    elif dictionary is not None:
        body.dictionary.CopyFrom(dictionary_ref(dictionary))
    return body


def dictionary_ref(d: Dictionary) -> common_pb2.DictionaryRef:
    """The reference a query carries for dictionary `d`."""
    return common_pb2.DictionaryRef(name=d.name, version=d.version, extension_sha256=d.extension_sha256,
                                    extension_name=f"{d.extension_name} {d.extension_version}".strip())


def cohort_from(node: Any, path: str, depth: int = 1) -> pb.Cohort:
    """One cohort node of the text form (at `depth`, the root being 1) → a Cohort message.

    The depth is checked before going deeper, so a tree nested thousands of levels is refused
    with its path, never by Python's recursion limit or protobuf's."""
    if depth > MAX_COHORT_DEPTH:
        raise invalid(path, f"the cohort is nested deeper than {MAX_COHORT_DEPTH} levels")
    if not isinstance(node, Mapping) or not node:
        raise invalid(path, "a cohort node is a mapping: {\"field\": …, OP: …} or and / or / not")
    combos = [k for k in ("and", "or", "not") if k in node]
    if combos:
        key = combos[0]
        if len(node) != 1:
            raise invalid(path, f"'{key}' stands alone in its mapping (found {sorted(node)})")
        if key == "not":
            return pb.Cohort(negate=cohort_from(node["not"], f"{path}.not", depth + 1))
        items = node[key]
        if not isinstance(items, list) or not items:
            raise invalid(f"{path}.{key}", "a non-empty list of cohort nodes")
        lst = pb.CohortList(items=[cohort_from(x, f"{path}.{key}[{i}]", depth + 1)
                                   for i, x in enumerate(items)])
        return pb.Cohort(all_of=lst) if key == "and" else pb.Cohort(any_of=lst)
    if "field" not in node:
        raise invalid(path, f"a leaf needs 'field' (keys found: {sorted(node)})")
    _no_unknown(node, {"field", *_LEAF_OPS}, path)
    field = _text(node["field"], f"{path}.field")
    ops = [k for k in _LEAF_OPS if k in node]
    if not ops:
        raise invalid(path, f"no operator: give one of {', '.join(_LEAF_OPS)}")
    if set(ops) <= {"from", "to"}:
        rng = pb.Range(field=field)
        if "from" in node:
            rng.lower = _value(node["from"], f"{path}.from")
        if "to" in node:
            rng.upper = _value(node["to"], f"{path}.to")
        return pb.Cohort(range=rng)
    if len(ops) != 1:
        raise invalid(path, f"one operator per leaf (found {', '.join(ops)}); combine leaves with 'and'")
    op = ops[0]
    arg = node[op]
    if op == "equals":
        return pb.Cohort(equals=pb.Equals(field=field, value=_value(arg, f"{path}.equals")))
    if op == "in":
        if not isinstance(arg, list) or not arg:
            raise invalid(f"{path}.in", "a non-empty list of values")
        return pb.Cohort(in_set=pb.InSet(field=field, values=[_value(v, f"{path}.in[{i}]") for i, v in enumerate(arg)]))
    if op == "prefix":
        return pb.Cohort(prefix=pb.Prefix(field=field, prefix=_text(arg, f"{path}.prefix")))
    return pb.Cohort(is_null=field) if _bool(arg, f"{path}.null") else pb.Cohort(not_null=field)


def analysis_from(node: Any, path: str) -> pb.Analysis:
    """The text form of an analysis (`"count"` or `{"kaplan_meier": {…}}`) → an Analysis message.

    The text form mirrors the proto contract, read by reflection so that a new analysis needs no
    code here: the key is the `Analysis` oneof member, its parameters are the message's fields by
    name; fields of a singular sub-message may be written flat (`scale_bits` for
    `fixed_point.scale_bits`), enums by their short name (`OS` for `OUTCOME_OS`), `by` is
    `group_by` and `levels` is `group_levels`. Meanings are checked against the dictionary by the analysis' own parser.
    """
    kinds = _analysis_kinds()
    if isinstance(node, str):
        node = {node: {}}
    if not isinstance(node, Mapping) or len(node) != 1:
        raise invalid(path, f"exactly one analysis: {_either(kinds)}")
    kind, params = next(iter(node.items()))
    if kind not in kinds:
        raise invalid(path, f"unknown analysis {kind!r}: {_either(kinds)}")
    p = f"{path}.{kind}"
    if params is None:
        params = {}
    if not isinstance(params, Mapping):
        raise invalid(p, "the analysis' parameters are a mapping")
    out = pb.Analysis()
    msg = getattr(out, kind)
    msg.SetInParent()
    _fill(msg, params, p)
    return out


def _either(names: list[str]) -> str:
    return f"{', '.join(names[:-1])} or {names[-1]}" if len(names) > 1 else "".join(names)


def _analysis_kinds() -> list[str]:
    return [f.name for f in pb.Analysis.DESCRIPTOR.oneofs_by_name["kind"].fields]


def _fill(msg: Message, params: Mapping[str, Any], path: str) -> None:
    """Set `msg`'s fields from a text-form mapping (see analysis_from). Every singular sub-message
    is set, given or not, so one text has one serialisation and `to_mapping` round-trips it."""
    slots = _slots(msg.DESCRIPTOR)
    _no_unknown(params, _visible(slots), path)
    for alias, name in _ALIASES.items():
        if alias in params and name in params:
            raise invalid(path, f"give {alias!r} or {name!r}, not both")
    for fd in msg.DESCRIPTOR.fields:
        if fd.message_type is not None and not _is_repeated(fd):
            getattr(msg, fd.name).SetInParent()
    for key, value in params.items():
        outer, fd = slots[_ALIASES.get(str(key), str(key))]
        target = getattr(msg, outer.name) if outer is not None else msg
        _set(target, fd, value, f"{path}.{key}")


def _slots(desc: Descriptor) -> dict[str, tuple[FieldDescriptor | None, FieldDescriptor]]:
    """Settable names of a message: its own scalar fields, and one level into singular sub-messages."""
    out: dict[str, tuple[FieldDescriptor | None, FieldDescriptor]] = {}
    for fd in desc.fields:
        if fd.message_type is not None and not _is_repeated(fd):
            for inner in fd.message_type.fields:
                out.setdefault(inner.name, (fd, inner))
        else:
            out[fd.name] = (None, fd)
    return out


def _visible(slots: Mapping[str, Any]) -> set[str]:
    """The keys a mapping may use: the message's own names and their text-form aliases."""
    return set(slots) | {alias for alias, name in _ALIASES.items() if name in slots}


def _is_repeated(fd: FieldDescriptor) -> bool:
    return bool(fd.is_repeated)


def _set(msg: Message, fd: FieldDescriptor, value: Any, path: str) -> None:
    if _is_repeated(fd):
        if not isinstance(value, list):
            raise invalid(path, "a list of values" if fd.type != fd.TYPE_STRING else "a list of names")
        getattr(msg, fd.name).extend(_scalar(fd, v, f"{path}[{i}]") for i, v in enumerate(value))
    else:
        setattr(msg, fd.name, _scalar(fd, value, path))


def _scalar(fd: FieldDescriptor, v: Any, path: str) -> Any:
    if fd.type == fd.TYPE_STRING:
        return _value(v, path) if fd.name in _VALUE_FIELDS else _text(v, path)
    if fd.type == fd.TYPE_BOOL:
        return _bool(v, path)
    if fd.type in (fd.TYPE_DOUBLE, fd.TYPE_FLOAT):
        return _number(v, path)
    if fd.type == fd.TYPE_ENUM:
        names = _enum_names(fd)
        text = _text(v, path).upper()
        if text not in names:
            raise invalid(path, f"{text!r} is not an {fd.name} ({' or '.join(names)})")
        return names[text]
    if fd.type in _SIGNED:
        return _signed(v, path)
    return _int(v, path)


def _enum_names(fd: FieldDescriptor) -> dict[str, int]:
    """Short names of an enum's values (OUTCOME_OS → OS), the unspecified 0 left out."""
    prefix = fd.enum_type.name.upper() + "_"
    return {v.name.removeprefix(prefix): v.number for v in fd.enum_type.values if v.number != 0}


# ------------------------------------------------------------------ back to text (round trips, docs)

def to_mapping(body: pb.QueryBody) -> dict[str, Any]:
    """The text form of a QueryBody: `from_mapping(to_mapping(b)) == b`."""
    out: dict[str, Any] = {}
    if body.HasField("cohort"):
        out["cohort"] = cohort_to(body.cohort)
    out["analysis"] = analysis_to(body.analysis)
    if body.permit_hash:
        out["permit_hash"] = body.permit_hash.hex()
    if body.nonce:
        out["nonce"] = body.nonce.hex()
    for key in ("researcher_key_id", "issued_at", "expires_at", "min_participants", "exact_dates", "epsilon",
                "status_cutoff"):
        if getattr(body, key):
            out[key] = getattr(body, key)
    if body.target_centres:
        out["targets"] = list(body.target_centres)
    if body.HasField("dictionary"):
        ref = body.dictionary
        out["dictionary"] = {k: getattr(ref, k) for k in ("name", "version", "extension_name", "extension_sha256")
                             if getattr(ref, k)}
    return out


def cohort_to(c: pb.Cohort) -> dict[str, Any]:
    kind = c.WhichOneof("node")
    if kind == "all_of":
        return {"and": [cohort_to(x) for x in c.all_of.items]}
    if kind == "any_of":
        return {"or": [cohort_to(x) for x in c.any_of.items]}
    if kind == "negate":
        return {"not": cohort_to(c.negate)}
    if kind == "equals":
        return {"field": c.equals.field, "equals": c.equals.value}
    if kind == "in_set":
        return {"field": c.in_set.field, "in": list(c.in_set.values)}
    if kind == "prefix":
        return {"field": c.prefix.field, "prefix": c.prefix.prefix}
    if kind == "range":
        r = c.range
        out: dict[str, Any] = {"field": r.field}
        if r.HasField("lower"):
            out["from"] = r.lower
        if r.HasField("upper"):
            out["to"] = r.upper
        return out
    if kind == "is_null":
        return {"field": c.is_null, "null": True}
    if kind == "not_null":
        return {"field": c.not_null, "null": False}
    return {}


def analysis_to(a: pb.Analysis) -> dict[str, Any]:
    """An Analysis message → its text form (the inverse of analysis_from; defaults left out)."""
    kind = a.WhichOneof("kind")
    if kind is None:
        return {}
    return {kind: _mapping_of(getattr(a, kind))}


def _mapping_of(msg: Message) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for fd, value in msg.ListFields():
        if fd.message_type is not None and not _is_repeated(fd):
            for inner, v in value.ListFields():
                out[_SHOWN.get(inner.name, inner.name)] = _text_of(inner, v)
        else:
            out[_SHOWN.get(fd.name, fd.name)] = _text_of(fd, value)
    return out


def _text_of(fd: FieldDescriptor, value: Any) -> Any:
    if _is_repeated(fd):
        return [_text_of_one(fd, v) for v in value]
    return _text_of_one(fd, value)


def _text_of_one(fd: FieldDescriptor, value: Any) -> Any:
    if fd.type == fd.TYPE_ENUM:
        return next((k for k, n in _enum_names(fd).items() if n == value), "")
    return value


# ------------------------------------------------------------------ scalar helpers

def _no_unknown(m: Mapping[str, Any], known: set[str], path: str) -> None:
    extra = sorted(str(k) for k in m if k not in known)
    if extra:
        where = path or "query"
        hint = f" (known: {', '.join(sorted(known))})" if known else ""
        raise invalid(where, f"unknown key {extra[0]!r}{hint}")


def _value(v: Any, path: str) -> str:
    """A predicate value as dictionary text: numbers and booleans are written out, TOML dates
    become ISO text."""
    if isinstance(v, bool):
        return "1" if v else "0"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, dt.datetime):
        raise invalid(path, "a date-time is not a date; write YYYY-MM")
    if isinstance(v, dt.date):
        return v.isoformat()
    if isinstance(v, str):
        return v
    raise invalid(path, f"expected a value (text or number), got {type(v).__name__}")


def _text(v: Any, path: str) -> str:
    if isinstance(v, dt.date) and not isinstance(v, dt.datetime):
        return v.isoformat()
    if not isinstance(v, str):
        raise invalid(path, f"expected text, got {type(v).__name__}")
    return v


def _int(v: Any, path: str, limit: int = 2**31) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < limit:
        raise invalid(path, f"expected a whole number from 0 to {limit - 1}")
    return v


_SIGNED = frozenset({FieldDescriptor.TYPE_SINT64, FieldDescriptor.TYPE_INT64, FieldDescriptor.TYPE_SFIXED64})


def _signed(v: Any, path: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or not -(2**63) <= v < 2**63:
        raise invalid(path, "expected a whole number from -2^63 to 2^63 - 1")
    return v


def _number(v: Any, path: str) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise invalid(path, "expected a number")
    return float(v)


def _bool(v: Any, path: str) -> bool:
    if not isinstance(v, bool):
        raise invalid(path, "expected true or false")
    return v


def _hex_bytes(v: Any, path: str, size: int) -> bytes:
    try:
        raw = bytes.fromhex(_text(v, path))
    except ValueError:
        raise invalid(path, "expected hexadecimal text") from None
    if len(raw) != size:
        raise invalid(path, f"expected {size} bytes ({2 * size} hex digits), got {len(raw)}")
    return raw
