"""Imports go downward only (DESIGN §9; docs/architecture.md): a module may import its own
package and packages on lower floors, never a package on its own floor or above. Every import
counts — at module level, inside functions (lazy) and under TYPE_CHECKING — and every package
of oncofed must be given a floor here, so a new one cannot slip in unplaced."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "oncofed"

#: The floors. A unit is a top-level package or module of oncofed, or `federation.<part>`.
#: `settings` reads TOML and raises UsageError: it sits just above `errors`, below floor 1.
FLOORS: dict[str, float] = {
    "oncofed": 0, "errors": 0, "settings": 0.5, "dictionary": 0, "v1": 0,
    "keys": 1, "query": 1, "synth": 1,
    "analyses": 2, "secagg": 2, "transport": 2,
    "node": 3, "federation": 3, "federation.hub": 3, "federation.client": 3,
    "flower": 4,
    "cli": 5, "demo": 5, "demo_federation": 5, "__main__": 5, "protogen": 5,
}
TOP = 5          # the entry points may import everything, each other included


def unit_of(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "oncofed":
        return None
    if len(parts) == 1:
        return "oncofed"
    if parts[1] == "federation" and len(parts) > 2:
        return f"federation.{parts[2]}"
    return parts[1]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_module(dotted: str) -> bool:
    base = PACKAGE.parent.joinpath(*dotted.split("."))
    return base.is_dir() or base.with_suffix(".py").exists()


def imports(text: str) -> list[tuple[int, str]]:
    """(line, imported module) for every absolute import in a source text; `from oncofed import
    dictionary` imports the module oncofed.dictionary, `from oncofed import __version__` the root."""
    out = []
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.append((node.lineno, node.module))
            out.extend((node.lineno, f"{node.module}.{a.name}") for a in node.names
                       if _is_module(f"{node.module}.{a.name}"))
        elif isinstance(node, ast.Import):
            out.extend((node.lineno, a.name) for a in node.names)
    return out


def sources() -> list[Path]:
    return [p for p in PACKAGE.rglob("*.py") if "v1" not in p.relative_to(PACKAGE).parts[:1]]


def violations(modules: list[tuple[str, str]]) -> list[str]:
    """Every import of (module name, source text) that does not go to a lower floor."""
    found = []
    for name, text in modules:
        src = unit_of(name)
        assert src is not None
        for line, target in imports(text):
            dst = unit_of(target)
            # its own unit, and the federation package with its parts, are one unit
            if dst is None or dst == src or ({src, dst} <= {"federation", "federation.hub", "federation.client"} \
                    and "federation" in (src, dst)):
                continue
            if FLOORS[src] < TOP and FLOORS[dst] >= FLOORS[src]:
                found.append(f"{name}:{line}: {src} (floor {FLOORS[src]}) imports {target} (floor {FLOORS[dst]})")
    return found


def package_modules() -> list[tuple[str, str]]:
    return [(module_name(p), p.read_text("utf-8")) for p in sources()]


def test_every_package_has_a_floor() -> None:
    units = {unit_of(module_name(p)) for p in sources()}
    assert units <= set(FLOORS), f"give these a floor in FLOORS: {sorted(u for u in units if u not in FLOORS)}"


def test_imports_go_downward_only() -> None:
    found = violations(package_modules())
    assert not found, "imports must go to lower floors only:\n" + "\n".join(found)


@pytest.mark.parametrize(("module", "text"), [
    ("oncofed.query.planted", "from oncofed.keys import sign\n"),                  # same floor
    ("oncofed.analyses.planted", "def f():\n    from oncofed.node import node\n"),  # upward, lazily
    ("oncofed.federation.client.planted", "import oncofed.node.verify\n"),         # client → node
    ("oncofed.keys.planted", "from oncofed import query\n"),                       # same floor, by name
])
def test_a_planted_violation_is_found(module: str, text: str) -> None:
    assert violations([(module, text)]), f"{module} should violate the layering"


def test_downward_imports_pass() -> None:
    assert not violations([("oncofed.node.planted", "from oncofed.analyses import release\n"
                                                    "from oncofed import __version__\n")])
