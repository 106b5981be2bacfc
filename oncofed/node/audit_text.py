"""What researcher-chosen text may become in the audit log, on screen and in a spreadsheet.

A refused query can name any string as a field (up to the 1 MiB request cap), and its refusal
message quotes it. Stored verbatim, that is 900 KB per entry, escape sequences that rewrite an
admin's terminal, and cells that a spreadsheet runs as formulas. So three layers:

- **Storage** (`clean_fields`, `clean_detail`, `clean_text`), applied by `AuditLog.append` to every
  entry before it is hashed: a field name that is not a plain identifier of at most
  `MAX_NAME` characters is stored as ``?<16 hex digits of its SHA-256>:<length>`` (the same name
  always gives the same token, so entries can still be matched); at most `MAX_FIELDS` names are
  kept, then ``(+N more)``; control and bidirectional-override characters become visible escapes;
  strings, lists, nesting and the whole detail are bounded.
- **Screen** (`printable`): what `audit show` prints is escaped again, for entries written before
  this existed or by anyone else.
- **Spreadsheet** (`csv_cell`): a CSV cell that starts with ``= + - @``, a tab or a carriage
  return gets a leading apostrophe, the OWASP recipe against formula injection.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

MAX_NAME = 64
MAX_FIELDS = 64
MAX_STRING = 500
MAX_ITEMS = 64
MAX_DEPTH = 4
MAX_DETAIL_BYTES = 16 * 1024
_IDENTIFIER = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
# C0 and C1 controls, DEL, and the Unicode bidi/format characters that reorder or hide text.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(value: str) -> str:
    """`value` with every control or bidi character shown as an escape (\\x1b, \\u202e)."""
    return _UNSAFE.sub(_escape, value)


def clean_text(value: str, limit: int = MAX_STRING) -> str:
    """Printable and at most `limit` characters (plus a note of how many were cut)."""
    value = printable(value)
    if len(value) <= limit:
        return value
    return f"{value[:limit]}…(+{len(value) - limit} chars)"


def field_token(name: str) -> str:
    """A field name as stored: itself when a plain identifier, else a stable digest token."""
    if len(name) <= MAX_NAME and _IDENTIFIER.fullmatch(name):
        return name
    digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    return f"?{digest}:{len(name)}"


def clean_fields(names: Iterable[str]) -> list[str]:
    """Sorted, distinct stored names, at most MAX_FIELDS, then "(+N more)"."""
    tokens = sorted({field_token(str(n)) for n in names})
    if len(tokens) <= MAX_FIELDS:
        return tokens
    return [*tokens[:MAX_FIELDS], f"(+{len(tokens) - MAX_FIELDS} more)"]


def _clean(value: Any, depth: int) -> Any:
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, bytes | bytearray):
        return clean_text(bytes(value).hex())
    if depth >= MAX_DEPTH:
        return "(nested too deep)"
    if isinstance(value, Mapping):
        items = sorted(((clean_text(str(k), MAX_NAME), v) for k, v in value.items()),
                       key=lambda kv: kv[0])
        out = {k: _clean(v, depth + 1) for k, v in items[:MAX_ITEMS]}
        if len(items) > MAX_ITEMS:
            out["(more keys)"] = len(items) - MAX_ITEMS
        return out
    if isinstance(value, list | tuple | set | frozenset):
        seq = sorted(value, key=str) if isinstance(value, set | frozenset) else list(value)
        out_list = [_clean(v, depth + 1) for v in seq[:MAX_ITEMS]]
        if len(seq) > MAX_ITEMS:
            out_list.append(f"(+{len(seq) - MAX_ITEMS} more)")
        return out_list
    return clean_text(str(value))


def clean_detail(detail: Mapping[str, Any] | None,
                 encode: Callable[[Any], str]) -> dict[str, Any]:
    """The detail as stored: every string printable and bounded, lists and nesting bounded, and
    the whole at most MAX_DETAIL_BYTES in `encode` (canonical JSON) or replaced by a note."""
    cleaned = _clean(dict(detail or {}), 0)
    assert isinstance(cleaned, dict)
    size = len(encode(cleaned).encode("utf-8"))
    if size <= MAX_DETAIL_BYTES:
        return cleaned
    return {"omitted": "detail too large to keep", "bytes": size,
            "sha256": hashlib.sha256(encode(cleaned).encode("utf-8")).hexdigest()}


def csv_cell(value: Any) -> Any:
    """A value as written to an exported CSV: text neutralised against formula injection."""
    if not isinstance(value, str):
        return value
    text = printable(value)
    return f"'{text}" if value.startswith(_FORMULA_START) or text.startswith(_FORMULA_START) \
        else text
