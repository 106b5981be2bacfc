"""TOML settings files with every setting shown and checked: one small loader for the hub's and
the researcher's files (the node has its own, older node.toml reader).

A schema is {section: {key: default}}; a value must have its default's type, unknown sections and
keys are refused by name, and keys listed as paths are resolved against the file's folder.
"""

from __future__ import annotations

import tomllib
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

from oncofed.errors import UsageError

Schema = Mapping[str, Mapping[str, Any]]


def render(schema: Schema, title: str, values: Mapping[str, Mapping[str, Any]] | None = None) -> str:
    """A settings file showing every setting (defaults where `values` gives none)."""
    out = [f"# {title} (every setting is shown)"]
    for section, keys in schema.items():
        out.append(f"\n[{section}]")
        for key, default in keys.items():
            out.append(f"{key} = {_toml((values or {}).get(section, {}).get(key, default))}")
    return "\n".join(out) + "\n"


def _toml(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'


def load(path: Path, schema: Schema, *, paths: Collection[tuple[str, str]] = (),
         required: Collection[tuple[str, str]] = (), what: str = "settings") -> dict[str, dict[str, Any]]:
    """Read and check a settings file; UsageError names the file, the key and what is wrong."""
    try:
        raw = tomllib.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        raise UsageError(f"{path}: no such {what} file") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise UsageError(f"{path}: not a readable TOML file: {exc}") from None
    values: dict[str, dict[str, Any]] = {}
    for section, keys in schema.items():
        given = raw.pop(section, {})
        if not isinstance(given, dict):
            raise UsageError(f"{path}: [{section}] must be a table")
        extra = sorted(set(given) - set(keys))
        if extra:
            raise UsageError(f"{path}: unknown setting(s) in [{section}]: {', '.join(extra)}")
        values[section] = {}
        for key, default in keys.items():
            value = given.get(key, default)
            if type(value) is not type(default):
                raise UsageError(f"{path}: [{section}] {key} must be {_kind(default)}, not {_kind(value)}")
            if (section, key) in required and not value:
                raise UsageError(f"{path}: [{section}] {key} is required")
            if (section, key) in paths and value:
                value = (path.parent / value).resolve()
            values[section][key] = value
    if raw:
        raise UsageError(f"{path}: unknown section(s): {', '.join(sorted(raw))}")
    return values


def _kind(v: Any) -> str:
    return {bool: "true or false", int: "a whole number", str: "text"}.get(type(v), type(v).__name__)


def host_port(text: str, where: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise UsageError(f"{where} must be host:port, not {text!r}")
    return host, int(port)


def fingerprint(text: str, where: str) -> str:
    fp = text.lower()
    if len(fp) != 64 or any(ch not in "0123456789abcdef" for ch in fp):
        raise UsageError(f"{where} must be 64 hex digits (the root's SHA-256 fingerprint)")
    return fp
