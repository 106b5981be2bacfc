"""The text form of a query: the JSON or TOML a researcher writes, to and from `QueryBody`.

    {"cohort": {"and": [{"field": "topography", "prefix": "C50"},
                        {"field": "incidence_date", "from": "2018-01"},
                        {"field": "her2", "in": ["pos"]}]},
     "analysis": {"kaplan_meier": {"outcome": "OS", "cutoff": "2025-12-31", "by": "stage_summary"}}}

A cohort node is a leaf `{"field": F, OP: …}` with OP one of `equals`, `in`, `prefix`, `null`
(true: missing, false: present) or `from`/`to` (a range, either open), or a combination
`{"and": [...]}`, `{"or": [...]}`, `{"not": {...}}`. This module checks the *shape* and reports the
path of the offending part (`cohort.and[2].in[0]`); what the values mean is checked against the
dictionary by the cohort compiler and `spec.parse_analysis`, on both sides of the wire.
"""

from __future__ import annotations

import datetime as dt
import json
import tomllib
from collections.abc import Mapping
from typing import Any

from oncofed.dictionary import Dictionary
from oncofed.federation.query.errors import invalid
from oncofed.federation.query.spec import OUTCOMES
from oncofed.v1 import common_pb2
from oncofed.v1 import query_pb2 as pb

_OUTCOME_CODES = {name: code for code, name in OUTCOMES.items()}
_LEAF_OPS = ("equals", "in", "prefix", "null", "from", "to")
_TOP_KEYS = {"cohort", "analysis", "permit_hash", "researcher_key_id", "nonce", "issued_at", "expires_at",
             "targets", "min_participants", "dictionary", "exact_dates", "epsilon"}
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


def cohort_from(node: Any, path: str) -> pb.Cohort:
    """One cohort node of the text form → a Cohort message."""
    if not isinstance(node, Mapping) or not node:
        raise invalid(path, "a cohort node is a mapping: {\"field\": …, OP: …} or and / or / not")
    combos = [k for k in ("and", "or", "not") if k in node]
    if combos:
        key = combos[0]
        if len(node) != 1:
            raise invalid(path, f"'{key}' stands alone in its mapping (found {sorted(node)})")
        if key == "not":
            return pb.Cohort(negate=cohort_from(node["not"], f"{path}.not"))
        items = node[key]
        if not isinstance(items, list) or not items:
            raise invalid(f"{path}.{key}", "a non-empty list of cohort nodes")
        lst = pb.CohortList(items=[cohort_from(x, f"{path}.{key}[{i}]") for i, x in enumerate(items)])
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
    """The text form of an analysis (`"count"` or `{"kaplan_meier": {…}}`) → an Analysis message."""
    if isinstance(node, str):
        node = {node: {}}
    if not isinstance(node, Mapping) or len(node) != 1:
        raise invalid(path, "exactly one analysis: count, crosstab, summary, histogram, kaplan_meier or logrank")
    kind, params = next(iter(node.items()))
    p = f"{path}.{kind}"
    if params is None:
        params = {}
    if not isinstance(params, Mapping):
        raise invalid(p, "the analysis' parameters are a mapping")
    if kind == "count":
        _no_unknown(params, set(), p)
        return pb.Analysis(count=pb.Count())
    if kind == "crosstab":
        _no_unknown(params, {"fields"}, p)
        fields = params.get("fields")
        if not isinstance(fields, list):
            raise invalid(f"{p}.fields", "a list of 1–3 categorical fields")
        return pb.Analysis(crosstab=pb.Crosstab(fields=[_text(f, f"{p}.fields[{i}]") for i, f in enumerate(fields)]))
    if kind == "histogram":
        _no_unknown(params, {"field"}, p)
        return pb.Analysis(histogram=pb.Histogram(field=_text(params.get("field"), f"{p}.field")))
    if kind == "summary":
        _no_unknown(params, {"field", "scale_bits", "bound", "unit_bins", "quantiles"}, p)
        qs = params.get("quantiles", [])
        if not isinstance(qs, list):
            raise invalid(f"{p}.quantiles", "a list of probabilities")
        return pb.Analysis(summary=pb.Summary(
            field=_text(params.get("field"), f"{p}.field"),
            fixed_point=pb.FixedPoint(scale_bits=_int(params.get("scale_bits", 0), f"{p}.scale_bits"),
                                      bound=_number(params.get("bound", 0), f"{p}.bound")),
            unit_bins=_bool(params.get("unit_bins", False), f"{p}.unit_bins"),
            quantiles=[_number(q, f"{p}.quantiles[{i}]") for i, q in enumerate(qs)]))
    if kind in ("kaplan_meier", "logrank"):
        return _survival_from(kind, params, p)
    raise invalid(path, f"unknown analysis {kind!r}: count, crosstab, summary, histogram, kaplan_meier or logrank")


def _survival_from(kind: str, params: Mapping[str, Any], p: str) -> pb.Analysis:
    _no_unknown(params, {"outcome", "cutoff", "step_days", "horizon_days", "by", "group_by"}, p)
    outcome = _text(params.get("outcome"), f"{p}.outcome").upper()
    if outcome not in _OUTCOME_CODES:
        raise invalid(f"{p}.outcome", f"{outcome!r} is not an outcome (OS or RFS)")
    if "by" in params and "group_by" in params:
        raise invalid(p, "give 'by' or 'group_by', not both")
    lattice = pb.Lattice(step_days=_int(params.get("step_days", 0), f"{p}.step_days"),
                         horizon_days=_int(params.get("horizon_days", 0), f"{p}.horizon_days"))
    code = _OUTCOME_CODES[outcome]
    cutoff = _value(params.get("cutoff"), f"{p}.cutoff")
    group = _text(params.get("by", params.get("group_by", "")), f"{p}.by")
    if kind == "kaplan_meier":
        return pb.Analysis(kaplan_meier=pb.KaplanMeier(outcome=code, cutoff=cutoff, lattice=lattice, group_by=group))
    return pb.Analysis(logrank=pb.LogRank(outcome=code, cutoff=cutoff, lattice=lattice, group_by=group))


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
    for key in ("researcher_key_id", "issued_at", "expires_at", "min_participants", "exact_dates", "epsilon"):
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
    kind = a.WhichOneof("kind")
    if kind == "crosstab":
        return {"crosstab": {"fields": list(a.crosstab.fields)}}
    if kind == "histogram":
        return {"histogram": {"field": a.histogram.field}}
    if kind == "summary":
        s = a.summary
        out: dict[str, Any] = {"field": s.field}
        if s.fixed_point.scale_bits:
            out["scale_bits"] = s.fixed_point.scale_bits
        if s.fixed_point.bound:
            out["bound"] = s.fixed_point.bound
        if s.unit_bins:
            out["unit_bins"] = True
        if s.quantiles:
            out["quantiles"] = list(s.quantiles)
        return {"summary": out}
    if kind in ("kaplan_meier", "logrank"):
        m = getattr(a, kind)
        sv: dict[str, Any] = {"outcome": OUTCOMES.get(m.outcome, ""), "cutoff": m.cutoff}
        if m.lattice.step_days:
            sv["step_days"] = m.lattice.step_days
        if m.lattice.horizon_days:
            sv["horizon_days"] = m.lattice.horizon_days
        if m.group_by:
            sv["by"] = m.group_by
        return {kind: sv}
    return {"count": {}} if kind == "count" else {}


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
