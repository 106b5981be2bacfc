"""The data dictionary: what every centre's store may hold, loaded from versioned TOML data.

The dictionary is data, not code, so that a federation can agree on one file (plus an extension)
and every validator, query check and `dictionary show` listing is derived from it. Nodes record
the version and extension hash they were created with and refuse data for any other.
"""

from __future__ import annotations

import hashlib
import re
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

CORE_FILE = "core-1.0.0.toml"
# Names become SQL identifiers and codes appear in the labelled view: both must be plain tokens.
NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,62}$")
CODE_RE = re.compile(r"^[A-Za-z0-9().+_-]{1,32}$")
TYPES = frozenset(
    {"id", "code", "integer", "decimal", "date", "boolean", "topography", "morphology", "icd10"}
)


class DictionaryError(ValueError):
    """A dictionary or extension file is malformed, or does not fit the core it extends."""


@dataclass(frozen=True)
class Field:
    """One column of the store, as the federation agreed to define it."""

    name: str
    type: str
    description: str
    required: bool = False
    input: bool = True
    store: bool = True
    indexed: bool = False
    unit: str = ""
    codes: dict[str, str] = field(default_factory=dict)
    code_set: str = ""
    minimum: int | float | str | None = None
    maximum: int | float | str | None = None
    edition_field: str = ""
    bins: tuple[int | float, ...] = ()
    source: str = ""
    extension: bool = False
    at_query: str = ""          # "os" / "rfs": derived per query from that outcome's fields, never stored

    @property
    def column(self) -> str:
        """The CSV column this field is read from (its own name unless renamed by `source`)."""
        return self.source or self.name

    @property
    def is_categorical(self) -> bool:
        return self.type in {"code", "boolean"}

    @property
    def queryable(self) -> bool:
        """Stored, or derived when a query asks (a status at the query's cutoff)."""
        return self.store or bool(self.at_query)


@dataclass(frozen=True)
class Dictionary:
    """The core dictionary plus an optional federation extension, with their identity."""

    name: str
    version: str
    fields: dict[str, Field]
    earliest_date: str
    tnm_since: dict[str, int]
    tnm_until: dict[str, int]
    icdo_since: dict[str, str]
    bod_schemes: dict[str, frozenset[str]]
    topography_sites: dict[str, str]
    extension_name: str = ""
    extension_version: str = ""
    extension_sha256: str = ""

    @property
    def input_fields(self) -> list[Field]:
        return [f for f in self.fields.values() if f.input]

    @property
    def stored_fields(self) -> list[Field]:
        return [f for f in self.fields.values() if f.store]

    @property
    def input_columns(self) -> list[str]:
        return [f.column for f in self.input_fields]

    def identity(self) -> dict[str, str]:
        """What a store records and compares: same identity, same meaning of every column."""
        return {
            "name": self.name,
            "version": self.version,
            "extension_name": self.extension_name,
            "extension_version": self.extension_version,
            "extension_sha256": self.extension_sha256,
        }

    def label(self) -> str:
        ext = f" + {self.extension_name} {self.extension_version}" if self.extension_name else ""
        return f"{self.name} {self.version}{ext}"

    def to_json(self) -> dict[str, Any]:
        return {
            **self.identity(),
            "fields": [_field_json(f) for f in self.fields.values()],
            "code_set_editions": {
                "tnm_since": self.tnm_since,
                "tnm_until": self.tnm_until,
                "icdo_since": self.icdo_since,
                "bod_schemes": {k: sorted(v) for k, v in self.bod_schemes.items()},
            },
        }


def _field_json(f: Field) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": f.name,
        "type": f.type,
        "description": f.description,
        "required": f.required,
        "derived": not f.input,
        "stored": f.store,
        "extension": f.extension,
    }
    for key, value in (
        ("unit", f.unit), ("code_set", f.code_set), ("min", f.minimum), ("max", f.maximum),
        ("edition_field", f.edition_field), ("source_column", f.source),
        ("derived_at_query_from_outcome", f.at_query),
    ):
        if value not in ("", None):
            out[key] = value
    if f.codes:
        out["codes"] = f.codes
    if f.bins:
        out["bins"] = list(f.bins)
    return out


def _build_field(raw: dict[str, Any], code_sets: dict[str, dict[str, str]], *, extension: bool) -> Field:
    try:
        name, ftype, desc = raw["name"], raw["type"], raw["description"]
    except KeyError as exc:
        raise DictionaryError(f"field {raw.get('name', '?')!r} lacks {exc.args[0]!r}") from None
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise DictionaryError(f"field name {name!r} must be letters, digits and '_' (starting with a letter)")
    if ftype not in TYPES:
        raise DictionaryError(f"field {name!r} has unknown type {ftype!r}")
    codes = raw.get("codes", {})
    if isinstance(codes, str):
        if codes not in code_sets:
            raise DictionaryError(f"field {name!r} names unknown code set {codes!r}")
        codes = code_sets[codes]
    if ftype == "code" and not codes:
        raise DictionaryError(f"code field {name!r} has no codes")
    bad = [str(c) for c in codes if not CODE_RE.match(str(c))]
    if bad:
        raise DictionaryError(f"field {name!r} has codes that are not plain tokens: {bad[:5]}")
    if ftype == "boolean":
        codes = {"0": "no", "1": "yes"}
    at_query = str(raw.get("at_query", ""))
    if at_query and (ftype != "code" or raw.get("store", True) or raw.get("input", True)):
        raise DictionaryError(f"field {name!r}: a field derived at query time is a code field with "
                              "input = false and store = false")
    return Field(
        name=name, type=ftype, description=desc,
        required=bool(raw.get("required", False)), input=bool(raw.get("input", True)),
        store=bool(raw.get("store", True)), indexed=bool(raw.get("indexed", False)),
        unit=raw.get("unit", ""), codes={str(k): str(v) for k, v in codes.items()},
        code_set=raw.get("code_set", ""), minimum=raw.get("min"), maximum=raw.get("max"),
        edition_field=raw.get("edition_field", ""), bins=tuple(raw.get("bins", ())),
        source=raw.get("source", ""), extension=extension, at_query=at_query,
    )


def _read_toml(data: bytes, where: str) -> dict[str, Any]:
    try:
        return tomllib.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise DictionaryError(f"{where}: not a valid TOML file ({exc})") from None


def core_bytes() -> bytes:
    """The packaged core dictionary file, byte for byte."""
    return resources.files("oncofed.dictionary").joinpath("data", CORE_FILE).read_bytes()


def bundled_extensions() -> list[Path]:
    """Extension files shipped with oncofed (a federation may also write its own)."""
    folder = resources.files("oncofed.dictionary").joinpath("data", "extensions")
    return sorted(Path(str(p)) for p in folder.iterdir() if p.name.endswith(".toml"))


def load(extension: Path | bytes | None = None) -> Dictionary:
    """Load the core dictionary and, if given, a federation extension (path or file bytes)."""
    core = _read_toml(core_bytes(), CORE_FILE)
    meta = core["dictionary"]
    code_sets = core.get("code_sets", {})
    fields: dict[str, Field] = {}
    for raw in core["field"]:
        f = _build_field(raw, code_sets, extension=False)
        fields[f.name] = f
    ext_meta: dict[str, Any] = {}
    ext_hash = ""
    if extension is not None:
        if isinstance(extension, Path):
            try:
                ext_bytes = extension.read_bytes()
            except OSError as exc:
                raise DictionaryError(f"cannot read extension {extension}: {exc.strerror}") from None
            where = str(extension)
        else:
            ext_bytes, where = extension, "extension"
        ext = _read_toml(ext_bytes, where)
        ext_meta = ext.get("extension", {})
        if "name" not in ext_meta or "version" not in ext_meta:
            raise DictionaryError(f"{where}: [extension] needs name and version")
        if ext_meta.get("requires_core", meta["version"]) != meta["version"]:
            raise DictionaryError(
                f"{where}: extension requires core {ext_meta['requires_core']}, "
                f"this oncofed ships {meta['version']}"
            )
        for raw in ext.get("field", []):
            f = _build_field(raw, code_sets, extension=True)
            if f.name in fields:
                raise DictionaryError(f"{where}: field {f.name!r} already exists in the core dictionary")
            fields[f.name] = f
        ext_hash = hashlib.sha256(ext_bytes).hexdigest()
    return Dictionary(
        name=meta["name"], version=meta["version"], fields=fields,
        earliest_date=meta.get("earliest_date", "1900-01-01"),
        tnm_since={str(k): int(v) for k, v in core.get("since", {}).get("tnm", {}).items()},
        tnm_until={str(k): int(v) for k, v in core.get("until", {}).get("tnm", {}).items()},
        icdo_since={str(k): str(v) for k, v in core.get("since", {}).get("icdo", {}).items()},
        bod_schemes={k: frozenset(v) for k, v in core.get("bod_schemes", {}).items()},
        topography_sites=dict(core.get("topography_sites", {})),
        extension_name=ext_meta.get("name", ""), extension_version=str(ext_meta.get("version", "")),
        extension_sha256=ext_hash,
    )


def valid_topographies(d: Dictionary) -> Iterable[str]:
    """Every ICD-O-3 topography code the dictionary accepts, e.g. 'C50.4'."""
    for site, digits in d.topography_sites.items():
        for digit in digits:
            yield f"{site}.{digit}"
